"""Training: an optax loop with orbax checkpoints that resumes where it stopped.

Everything a step uses is a function of ``(seed, step)``: the minibatch is the ``step``-th of
an epoch-seeded permutation, the dropout key is ``fold_in(key, step)`` and the IR-Net EDE
temperature follows ``step / total_steps``. A run interrupted after a checkpoint and resumed
therefore continues exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax import nnx
from tqdm.auto import tqdm

from invnorm_jax._checks import check_choice
from invnorm_jax.nn.quantized import set_training_progress  # IR-Net's EDE temperature

LOSSES = ("xent", "mse", "seg_xent")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("cosine", "constant")


log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A checkpoint folder that cannot be read back."""


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
                raise ValueError(f"{name}={getattr(self, name)!r} must be >= 1.")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate={self.learning_rate!r} must be > 0.")
        if self.warmup_steps < 0 or self.weight_decay < 0:
            raise ValueError(f"warmup_steps={self.warmup_steps!r} and weight_decay={self.weight_decay!r} must be >= 0.")
        if self.optimizer == "adam" and self.weight_decay:
            raise ValueError(f"weight_decay={self.weight_decay!r} would be ignored by optimizer='adam': use "
                             "optimizer='adamw' (decoupled weight decay) or weight_decay=0.")


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


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """The optax transformation of ``config``: schedule, optimizer, weight decay."""
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


class Checkpointer:
    """Orbax checkpoints of the model and optimizer state in ``workdir/checkpoints``."""

    def __init__(self, workdir, max_to_keep: int = 2):
        self.directory = pathlib.Path(workdir).absolute() / "checkpoints"
        self.manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
        )

    @staticmethod
    def _tree(model, optimizer=None):
        tree = {"model": nnx.to_pure_dict(nnx.state(model))}
        if optimizer is not None:
            tree["optimizer"] = nnx.to_pure_dict(nnx.state(optimizer))
        return tree

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, model, optimizer=None) -> None:
        self.manager.save(step, args=ocp.args.StandardSave(self._tree(model, optimizer)), force=True)
        self.manager.wait_until_finished()

    def restore(self, model, optimizer=None, step: int | None = None) -> int:
        """Load the latest (or ``step``'s) checkpoint into ``model`` (and ``optimizer``)."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"no checkpoint in {self.directory}: train first (invnorm-jax train ...).")
        target = self._tree(model, optimizer)
        # Without an optimizer, read the model's subtree only: evaluation needs no moments.
        args = ocp.args.StandardRestore(target) if optimizer is not None else ocp.args.PyTreeRestore(
            target, restore_args=ocp.checkpoint_utils.construct_restore_args(target), partial_restore=True)
        try:
            restored = self.manager.restore(step, args=args)
        except Exception as err:  # orbax raises many types for a damaged folder
            raise CheckpointError(
                f"checkpoint {self.directory / str(step)} cannot be read ({type(err).__name__}: {err}). "
                f"It is damaged or from another model/config: delete {self.directory} to start over, "
                "or point --workdir at the right run."
            ) from err
        nnx.update(model, restored["model"])
        if optimizer is not None:
            nnx.update(optimizer, restored["optimizer"])
        return step

    def close(self) -> None:
        self.manager.close()


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
) -> dict:
    """Train ``model`` in place on ``(x, y)``; checkpoint into and resume from ``workdir``.

    Args:
      model: an NNX model with the library's call convention.
      x, y: the training set (numpy arrays; minibatches are gathered per step).
      config: the recipe.
      workdir: folder for checkpoints; if it holds one, training resumes from it.
      augment: ``augment(batch, rng) -> batch``, applied to each training minibatch.
      progress: show a progress bar.
      stop_after: stop (with a checkpoint) after this global step, as an interruption would;
        used to test resumption.

    Returns:
      ``{"losses": [...], "start_step": s, "steps": config.steps}`` (losses of the steps run here).
    """
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} examples but y has {len(y)}.")
    if len(x) < config.batch_size:
        raise ValueError(f"batch_size={config.batch_size} exceeds the {len(x)} training examples.")
    optimizer = nnx.Optimizer(model, make_optimizer(config), wrt=nnx.Param)
    ckpt = Checkpointer(workdir) if workdir is not None else None
    start = 0
    if ckpt is not None and ckpt.latest_step() is not None:
        start = ckpt.restore(model, optimizer)
        log.info("%s: resumed from the checkpoint of step %d in %s", description, start, ckpt.directory)
    key = jax.random.key(config.seed)
    end = config.steps if stop_after is None else min(config.steps, stop_after)
    metrics_log = MetricsLog(None if workdir is None else pathlib.Path(workdir) / "metrics.jsonl")
    pending, losses = [], []  # device scalars not read yet; floats read
    bar = tqdm(range(start, end), desc=description, disable=not progress, initial=start, total=config.steps, leave=False)
    try:
        for step in bar:
            idx = batch_indices(len(x), config.batch_size, config.seed, step)
            xb = x[idx] if augment is None else augment(x[idx], np.random.default_rng([config.seed, step, 7]))
            set_training_progress(model, step / max(config.steps - 1, 1))
            pending.append(_train_step(model, optimizer, jnp.asarray(xb), jnp.asarray(y[idx]),
                                       jax.random.fold_in(key, step), loss_kind=config.loss))
            if (step + 1) % config.log_every == 0 or step + 1 == end:
                losses += _read(pending, step, metrics_log, bar)
            if ckpt is not None and (step + 1) % config.checkpoint_every == 0:
                ckpt.save(step + 1, model, optimizer)
    except KeyboardInterrupt:
        if ckpt is not None:
            done = start + len(losses) + len(pending)
            ckpt.save(done, model, optimizer)
            log.warning("interrupted: checkpoint of step %d saved in %s; rerun to resume.", done, ckpt.directory)
        raise
    finally:
        bar.close()
        metrics_log.close()
    if ckpt is not None:
        if ckpt.latest_step() != end:
            ckpt.save(end, model, optimizer)
        ckpt.close()
    set_training_progress(model, 1.0)
    return {"losses": losses, "start_step": start, "steps": config.steps}


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


def _read(pending: list, step: int, metrics_log: MetricsLog, bar) -> list[float]:
    """Read the pending losses from the device (one sync per ``log_every`` steps) and log their mean."""
    values = [float(v) for v in jax.device_get(pending)]
    pending.clear()
    mean = float(np.mean(values))
    bar.set_postfix(loss=f"{values[-1]:.4f}", refresh=False)
    metrics_log.write(step=step + 1, loss=mean)
    log.debug("step %d: mean loss %.5f over the last %d steps", step + 1, mean, len(values))
    if not np.isfinite(mean):
        log.warning("step %d: the training loss is %s", step + 1, mean)
    return values
