"""Training: an optax loop with orbax checkpoints that resumes where it stopped.

Everything a step uses is a function of ``(seed, step)``: the minibatch is the ``step``-th of
an epoch-seeded permutation, the dropout key is ``fold_in(key, step)`` and the IR-Net EDE
temperature follows ``step / total_steps``. A run interrupted after a checkpoint and resumed
therefore ends with the same weights, bit for bit, as the uninterrupted run
(:mod:`invnorm_jax.checkpoint`: what is saved, and the errors of a checkpoint that cannot be read).
A loss that becomes NaN or Inf stops training with :class:`TrainingDivergedError` before any
non-finite checkpoint is written.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import pathlib
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

from invnorm_jax import numerics
from invnorm_jax._checks import check_choice
from invnorm_jax.checkpoint import Checkpointer, interrupts_held
from invnorm_jax.errors import ArgumentError, TrainingDivergedError
from invnorm_jax.nn.quantized import set_training_progress  # IR-Net's EDE temperature

LOSSES = ("xent", "mse", "seg_xent")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("cosine", "constant")


log = logging.getLogger(__name__)


#: What to try when the loss stops being finite.
DIVERGED_HINT = (
    "Lower train.learning_rate (or add train.warmup_steps), or check the data for NaN/Inf "
    "(INVNORM_CHECK_FINITE=1 names the first non-finite input or parameter)."
)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """A training recipe.

    Attributes:
      steps: optimizer steps in all.
      batch_size: examples per step.
      learning_rate: peak learning rate.
      optimizer: ``"adam"``, ``"adamw"`` or ``"sgd"`` (momentum 0.9, Nesterov).
      schedule: ``"cosine"`` decay to zero over ``steps`` or ``"constant"``, after ``warmup_steps``.
      warmup_steps: linear warm-up to ``learning_rate`` (see :func:`make_schedule`).
      weight_decay: weight decay: decoupled for ``adamw``, added to the gradient for ``sgd``;
        ``adam`` has none (a non-zero value is refused: use ``adamw``).
      loss: ``"xent"`` (integer labels), ``"mse"`` (regression) or ``"seg_xent"`` (per-pixel
        labels, ``-1`` ignored).
      seed: initial seed of data order and dropout keys.
      checkpoint_every: steps between checkpoints (and one at the end).
      log_every: steps between reads of the loss from the device (progress bar, log lines and
        ``metrics.jsonl``); the steps in between never wait for the device.
    """

    steps: int = 1000
    batch_size: int = 64
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    schedule: str = "cosine"
    warmup_steps: int = 0
    weight_decay: float = 0.0
    loss: str = "xent"
    seed: int = 0
    checkpoint_every: int = 500
    log_every: int = 50

    def __post_init__(self):
        check_choice(self.loss, "loss", LOSSES)
        check_choice(self.optimizer, "optimizer", OPTIMIZERS)
        check_choice(self.schedule, "schedule", SCHEDULES)
        for name in ("steps", "batch_size", "checkpoint_every", "log_every"):
            if int(getattr(self, name)) < 1:
                raise ArgumentError(f"{name}={getattr(self, name)!r} must be >= 1.")
        if not self.learning_rate > 0:
            raise ArgumentError(f"learning_rate={self.learning_rate!r} must be > 0.")
        if self.warmup_steps < 0 or self.weight_decay < 0:
            raise ArgumentError(
                f"warmup_steps={self.warmup_steps!r} and weight_decay={self.weight_decay!r} must be >= 0."
            )
        if self.optimizer == "adam" and self.weight_decay:
            raise ArgumentError(
                f"weight_decay={self.weight_decay!r} would be ignored by optimizer='adam': use "
                "optimizer='adamw' (decoupled weight decay) or weight_decay=0."
            )


def make_schedule(config: TrainConfig) -> optax.Schedule:
    """The learning rate of every step.

    Warm-up: ``lr(s) = lr_peak * (s + 1) / (W + 1)`` for ``s < W = warmup_steps``, so the first
    step already learns; then cosine decay from ``lr_peak`` to 0 over the remaining steps, or
    a constant ``lr_peak``.
    """
    peak, warm = config.learning_rate, config.warmup_steps
    if config.schedule == "cosine":
        main = optax.cosine_decay_schedule(peak, max(config.steps - warm, 1))
    else:
        main = optax.constant_schedule(peak)
    if warm == 0:
        return main
    return optax.join_schedules([optax.linear_schedule(peak / (warm + 1), peak, warm), main], [warm])


@functools.lru_cache(maxsize=16)
def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """The optax transformation of ``config``: schedule, optimizer, weight decay.

    One object per recipe: the optimizer is static in the jitted step, so a resumed (or
    repeated) run with the same recipe reuses the step compiled for it.
    """
    lr = make_schedule(config)
    if config.optimizer == "adam":
        return optax.adam(lr)
    if config.optimizer == "adamw":
        return optax.adamw(lr, weight_decay=config.weight_decay)
    return optax.chain(optax.add_decayed_weights(config.weight_decay), optax.sgd(lr, momentum=0.9, nesterov=True))


def loss_fn(kind: str, outputs: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean training loss of one batch."""
    if kind == "mse":
        return jnp.mean(jnp.square(outputs - targets.reshape(outputs.shape)))
    labels = targets.astype(jnp.int32)
    valid = labels >= 0
    losses = optax.softmax_cross_entropy_with_integer_labels(outputs, jnp.where(valid, labels, 0))
    return jnp.sum(losses * valid) / jnp.maximum(jnp.sum(valid), 1)


def batch_indices(num_examples: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """Indices of minibatch ``step``: a slice of epoch ``step // steps_per_epoch``'s permutation."""
    per_epoch = max(num_examples // batch_size, 1)
    epoch, pos = divmod(step, per_epoch)
    perm = np.random.default_rng([seed, epoch]).permutation(num_examples)
    return perm[pos * batch_size : (pos + 1) * batch_size]


@nnx.jit(static_argnames=("loss_kind",))
def _train_step(model, optimizer, x, y, key, *, loss_kind):
    def objective(m):
        return loss_fn(loss_kind, m(x, key=key, train=True), y)

    loss, grads = nnx.value_and_grad(objective)(model)
    optimizer.update(model, grads)
    return loss


def train(
    model: nnx.Module,
    x: np.ndarray,
    y: np.ndarray,
    config: TrainConfig,
    *,
    workdir=None,
    augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
    progress: bool = True,
    description: str = "train",
    stop_after: int | None = None,
    check_finite: bool | None = None,
) -> dict:
    """Train ``model`` in place on ``(x, y)``; checkpoint into and resume from ``workdir``.

    Ctrl-C (SIGINT) is held until the step under way is complete, then the step reached is
    saved and ``KeyboardInterrupt`` raised; a harder stop (SIGKILL, a crash) loses only the
    steps since the last checkpoint. Either way the rerun ends with the same weights, bit for
    bit, as an uninterrupted run.

    Args:
      model: an NNX model with the library's call convention.
      x, y: the training set (numpy arrays; minibatches are gathered per step).
      config: the recipe.
      workdir: folder for checkpoints; if it holds one, training resumes from it.
      augment: ``augment(batch, rng) -> batch``, applied to each training minibatch.
      progress: show a progress bar.
      stop_after: stop (with a checkpoint) after this global step, as an interruption would;
        used to test resumption.
      check_finite: check inputs, every step's loss and every parameter after every step for
        NaN/Inf and name the first (slow: one device read per step); None: the
        ``INVNORM_CHECK_FINITE`` environment variable decides (default off).

    Returns:
      ``{"losses": [...], "start_step": s, "steps": config.steps}`` (losses of the steps run here).

    Raises:
      ArgumentError: ``x`` and ``y`` of different lengths, or a batch larger than the training set.
      TrainingDivergedError: the loss became NaN or Inf (always checked when the loss is read,
        every ``log_every`` steps and before each checkpoint); the last checkpoint written is
        the last good one.
      NonFiniteError: with ``check_finite``, a non-finite input or parameter.
    """
    if len(x) != len(y):
        raise ArgumentError(f"{description}: x has {len(x)} examples but y has {len(y)}: give one target per example.")
    if len(x) < config.batch_size:
        raise ArgumentError(
            f"{description}: batch_size={config.batch_size} exceeds the {len(x)} training examples: use "
            f"batch_size <= {len(x)} (--config.train.batch_size={min(64, len(x))})."
        )
    check = numerics.check_finite_enabled(check_finite)
    if check:
        numerics.check_array(x, "training inputs x")
        numerics.check_array(y, "training targets y")
    optimizer = nnx.Optimizer(model, make_optimizer(config), wrt=nnx.Param)
    if workdir is not None:
        pathlib.Path(workdir).mkdir(parents=True, exist_ok=True)  # metrics.jsonl; the checkpoints make their own
    ckpt = Checkpointer(workdir) if workdir is not None else None
    start = 0
    if ckpt is not None and ckpt.latest_step() is not None:
        start = ckpt.restore(model, optimizer)
        log.info("%s: resumed from the checkpoint of step %d in %s", description, start, ckpt.directory)
    if check:
        numerics.check_tree(
            nnx.to_pure_dict(nnx.state(model)),
            f"{description}: the parameters " + (f"restored from step {start}" if start else "at initialization"),
        )
    key = jax.random.key(config.seed)
    end = config.steps if stop_after is None else min(config.steps, stop_after)
    metrics_log = MetricsLog(None if workdir is None else pathlib.Path(workdir) / "metrics.jsonl")
    bar = tqdm(
        range(start, end), desc=description, disable=not progress, initial=start, total=config.steps, leave=False
    )
    reader = _LossReader(config, description, ckpt, metrics_log, bar)

    def save(step: int) -> None:  # every save: losses read and finite, parameters finite
        reader.read(step)
        _check_parameters(model, step, reader)
        ckpt.save(step, model, optimizer)

    try:
        for step in bar:
            with interrupts_held():
                idx = batch_indices(len(x), config.batch_size, config.seed, step)
                xb = x[idx] if augment is None else augment(x[idx], np.random.default_rng([config.seed, step, 7]))
                if check and augment is not None:
                    numerics.check_array(xb, f"{description}: the augmented training batch of step {step + 1}")
                set_training_progress(model, step / max(config.steps - 1, 1))
                reader.pending.append(
                    _train_step(
                        model,
                        optimizer,
                        jnp.asarray(xb),
                        jnp.asarray(y[idx]),
                        jax.random.fold_in(key, step),
                        loss_kind=config.loss,
                    )
                )
                if check:
                    reader.read(step + 1)  # this step's loss alone
                    numerics.check_tree(
                        nnx.to_pure_dict(nnx.state(model)),
                        f"{description}: the parameters after step {step + 1}",
                        DIVERGED_HINT,
                    )
                if (step + 1) % config.log_every == 0 or step + 1 == end:
                    reader.read(step + 1)
                if ckpt is not None and (step + 1) % config.checkpoint_every == 0:
                    save(step + 1)
        if ckpt is not None and ckpt.latest_step() != end:
            with interrupts_held():
                save(end)
    except KeyboardInterrupt:
        if ckpt is not None:
            done = start + len(reader.losses) + len(reader.pending)
            if ckpt.latest_step() != done:
                save(done)
            log.warning("interrupted: checkpoint of step %d saved in %s; rerun to resume.", done, ckpt.directory)
        raise
    finally:
        bar.close()
        metrics_log.close()
        if ckpt is not None:
            ckpt.close()
    set_training_progress(model, 1.0)
    return {"losses": reader.losses, "start_step": start, "steps": config.steps}


def _check_parameters(model, step: int, reader: _LossReader) -> None:
    """Refuse to checkpoint non-finite parameters (a NaN can reach them before any loss shows it)."""
    bad = numerics.nonfinite_leaves(nnx.to_pure_dict(nnx.state(model)))
    if bad:
        raise TrainingDivergedError(
            f"{reader.description}: training diverged: after step {step} of {reader.config.steps} the parameters "
            f"are not finite ({'; '.join(bad[:3])}), {reader.last_finite()}; {reader.kept()} {DIVERGED_HINT}"
        )


class MetricsLog:
    """Training metrics as JSON lines (``{"step", "loss", "seconds"}``), appended across resumes."""

    def __init__(self, path: pathlib.Path | None):
        self.file = None if path is None else open(path, "a")
        self.start = time.perf_counter()

    def write(self, **row) -> None:
        if self.file is not None:
            self.file.write(json.dumps({**row, "seconds": round(time.perf_counter() - self.start, 3)}) + "\n")
            self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


class _LossReader:
    """The losses of dispatched steps: read from the device in groups, logged, checked finite."""

    def __init__(self, config: TrainConfig, description: str, ckpt, metrics_log: MetricsLog, bar):
        self.config, self.description, self.ckpt, self.metrics_log, self.bar = (
            config,
            description,
            ckpt,
            metrics_log,
            bar,
        )
        self.pending: list = []  # device scalars not read yet
        self.losses: list[float] = []  # read
        self.last = None  # (step, loss) of the last finite loss

    def read(self, step: int) -> None:
        """Read the pending losses (steps ``step - len(pending) + 1 .. step``: one device sync)."""
        if not self.pending:
            return
        values = [float(v) for v in jax.device_get(self.pending)]
        self.pending.clear()
        mean = float(np.mean(values))
        self.bar.set_postfix(loss=f"{values[-1]:.4f}", refresh=False)
        self.metrics_log.write(step=step, loss=mean)
        log.debug("step %d: mean loss %.5f over the last %d steps", step, mean, len(values))
        first = step - len(values) + 1
        for i, v in enumerate(values):
            if not np.isfinite(v):
                self._diverged(first + i, v)
            self.last = (first + i, v)
        self.losses += values

    def last_finite(self) -> str:
        return (
            "no finite loss was read before"
            if self.last is None
            else f"the last finite loss was {self.last[1]:.6g} at step {self.last[0]}"
        )

    def kept(self) -> str:
        if self.ckpt is None:
            return "nothing was saved (no workdir)."
        latest = self.ckpt.latest_step()
        return (
            "no checkpoint was written."
            if latest is None
            else f"no checkpoint was written after it: the last good one is step {latest} in {self.ckpt.directory}."
        )

    def _diverged(self, step: int, value: float):
        raise TrainingDivergedError(
            f"{self.description}: training diverged: the loss of step {step} of {self.config.steps} is {value} "
            f"({self.last_finite()}, learning rate {self.config.learning_rate:g}); {self.kept()} {DIVERGED_HINT}"
        )
