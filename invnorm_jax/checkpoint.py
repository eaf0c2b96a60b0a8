"""Orbax checkpoints of a model and its optimizer, and errors that say what went wrong.

A checkpoint is ``<workdir>/checkpoints/<step>/``. Orbax writes a save into
``<step>.orbax-checkpoint-tmp`` and renames it when it is complete, so a run killed while
saving leaves that temporary folder and the previous checkpoint intact: :meth:`Checkpointer.restore`
skips the unfinished save with a warning and loads the last complete one (the next save of
that step replaces the leftover folder).

A checkpoint that cannot be loaded raises one of three errors, each naming the cause and fix:

* :class:`CheckpointMissingError`: no complete checkpoint (train first).
* :class:`CheckpointIncompatibleError`: a complete checkpoint of another model or optimizer
  (the differing arrays and shapes are named; use the config it was trained with).
* :class:`CheckpointCorruptError`: files that cannot be read (truncated, garbage): delete the
  damaged step folder to fall back to the previous checkpoint, or the whole folder.

:func:`interrupts_held` makes Ctrl-C wait for the training step under way, so that the
checkpoint saved on an interrupt never holds a half-applied update.
"""

from __future__ import annotations

import contextlib
import logging
import pathlib
import signal
import threading

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from invnorm_jax.errors import CheckpointCorruptError, CheckpointIncompatibleError, CheckpointMissingError
from invnorm_jax.numerics import path_name

log = logging.getLogger(__name__)

#: The suffix of a save in progress (orbax renames the folder when the save is complete).
UNFINISHED_SUFFIX = ".orbax-checkpoint-tmp"
#: Differences listed in an incompatibility message before "and N more".
MAX_LISTED = 4


def _flat(tree) -> dict[str, tuple[tuple[int, ...], str]]:
    """``{"model/blocks/0/conv1/kernel": (shape, dtype)}`` of an array tree or of orbax metadata."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        out[path_name(path)] = (tuple(getattr(leaf, "shape", ())), str(getattr(leaf, "dtype", type(leaf).__name__)))
    return out


def tree_differences(saved, target) -> list[str]:
    """What differs between a checkpoint's metadata tree and the tree to restore into."""
    a, b = _flat(saved), _flat(target)
    diffs = []
    for name in sorted(set(a) | set(b)):
        if name not in a:
            diffs.append(f"{name} is not in the checkpoint")
        elif name not in b:
            diffs.append(f"{name} is in the checkpoint but not in the model built now")
        elif a[name][0] != b[name][0] or (a[name][1] != b[name][1] and "key" not in a[name][1] + b[name][1]):
            (sa, da), (sb, db) = a[name], b[name]  # typed PRNG keys are stored as their raw data
            diffs.append(f"{name} is {da}{list(sa)} in the checkpoint but {db}{list(sb)} now")
    return diffs


def _uncommitted(a):
    """``a`` as a fresh array of the default device, like the arrays of a model never saved.

    Orbax returns arrays committed to a device, which jit treats as another signature: the
    training step would compile again for them on a resume within one process.
    """
    if isinstance(a, jax.Array) and not jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
        return jnp.asarray(np.asarray(a))
    return a


#: Orbax is not safe for managers saving at once from several threads (a save's temporary
#: folder was seen made twice): every orbax call of this module holds this lock.
_ORBAX = threading.RLock()


@contextlib.contextmanager
def _orbax_log_held(pass_on: bool = True):
    """Hold orbax's log records (absl's logger) while checkpoints are read.

    Reading a damaged checkpoint makes orbax log an error before it raises (or, when it lists
    the steps, instead of raising); the :class:`CheckpointCorruptError` raised for it names the
    cause and the fix, so the held records go to this module's DEBUG log only, unless the block
    succeeds and ``pass_on`` is set: then they are passed on as they were.
    """
    absl_log = logging.getLogger("absl")
    held = []

    def hold(record):
        held.append(record)
        return False

    absl_log.addFilter(hold)
    try:
        yield
    except BaseException:
        pass_on = False
        raise
    finally:
        absl_log.removeFilter(hold)
        for record in held:
            if pass_on:
                absl_log.handle(record)
            else:
                log.debug("orbax, while reading checkpoints: %s", record.getMessage())


#: Set by the main thread when a Ctrl-C (or an error) must stop work running in other threads
#: (:func:`invnorm_jax.pipeline.experiment.run_task` trains methods side by side).
_STOP = threading.Event()


def request_stop() -> None:
    """Ask every worker thread to stop at its next step or sweep level (they raise ``KeyboardInterrupt``)."""
    _STOP.set()


def clear_stop() -> None:
    """Forget a :func:`request_stop` once the workers have stopped."""
    _STOP.clear()


def raise_if_stopped() -> None:
    """In a worker thread, ``KeyboardInterrupt`` if :func:`request_stop` was called."""
    if _STOP.is_set() and threading.current_thread() is not threading.main_thread():
        raise KeyboardInterrupt


@contextlib.contextmanager
def interrupts_held():
    """Hold Ctrl-C (SIGINT) until the block ends, then deliver it.

    An interrupt so lands between training steps (or after a save), never while the model and
    optimizer are half-updated, and the checkpoint saved on Ctrl-C is a whole step. Outside the
    main thread (where Python delivers no signals) the block runs as it is, and a stop the main
    thread requested (:func:`request_stop`) is delivered as a ``KeyboardInterrupt`` after it.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        raise_if_stopped()
        return
    received = []
    previous = signal.signal(signal.SIGINT, lambda *_: received.append(True))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        if callable(previous):
            previous(signal.SIGINT, None)
        elif previous != signal.SIG_IGN:
            raise KeyboardInterrupt


class Checkpointer:
    """Orbax checkpoints of the model and optimizer state in ``workdir/checkpoints``."""

    def __init__(self, workdir, max_to_keep: int = 2):
        self.workdir = pathlib.Path(workdir).absolute()
        self.directory = self.workdir / "checkpoints"
        # create=False: a restore (evaluate, sweep) leaves no empty folder behind; a save makes its step folder.
        # Listing the steps reads each one's metadata: a damaged one is reported by restore(), not logged here.
        with _ORBAX, _orbax_log_held(pass_on=False):
            self.manager = ocp.CheckpointManager(
                self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=False)
            )

    @staticmethod
    def _tree(model, optimizer=None):
        tree = {"model": nnx.to_pure_dict(nnx.state(model))}
        if optimizer is not None:
            tree["optimizer"] = nnx.to_pure_dict(nnx.state(optimizer))
        return tree

    def latest_step(self) -> int | None:
        """The step of the last complete checkpoint (unfinished saves do not count)."""
        with _ORBAX:
            return self.manager.latest_step()

    def unfinished_saves(self) -> list[int]:
        """Steps whose save was interrupted: a ``<step>.orbax-checkpoint-tmp`` folder is left."""
        if not self.directory.is_dir():
            return []
        steps = []
        for p in self.directory.iterdir():
            head = p.name.partition(UNFINISHED_SUFFIX)[0]
            if UNFINISHED_SUFFIX in p.name and head.isdigit():
                steps.append(int(head))
        return sorted(steps)

    def save(self, step: int, model, optimizer=None) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with _ORBAX:
            self.manager.save(step, args=ocp.args.StandardSave(self._tree(model, optimizer)), force=True)
            self.manager.wait_until_finished()

    def _pick_step(self, step: int | None) -> int:
        complete = sorted(self.manager.all_steps())
        unfinished = self.unfinished_saves()
        if step is not None:
            if step not in complete:
                raise CheckpointMissingError(
                    f"no complete checkpoint of step {step} in {self.directory} (it has "
                    f"steps {complete}): restore one of those, or the latest (step=None)."
                )
            return step
        if not complete:
            extra = (
                f" (only the unfinished save of step {unfinished[-1]}, interrupted while writing)" if unfinished else ""
            )
            raise CheckpointMissingError(
                f"no checkpoint in {self.directory}{extra}: train first (invnorm-jax "
                "train ...), or point --workdir at the folder of a trained run."
            )
        newer = [s for s in unfinished if s > complete[-1]]
        if newer:
            log.warning(
                "checkpoint of step %d in %s was not finished (the run stopped while saving it); restoring "
                "step %d, the last complete checkpoint.",
                newer[-1],
                self.directory,
                complete[-1],
            )
        return complete[-1]

    def _damaged(self, step: int, err: Exception) -> CheckpointCorruptError:
        folder = self.directory / str(step)
        older = [s for s in self.manager.all_steps() if s < step]
        fix = (
            f"delete {folder} to resume from step {max(older)}, the checkpoint before it, or delete "
            f"{self.directory} to start over"
            if older
            else f"delete {self.directory} to start over"
        )
        return CheckpointCorruptError(
            f"checkpoint {folder} cannot be read: its files are damaged (truncated or "
            f"overwritten; {type(err).__name__}: {str(err)[:300]}). {fix}."
        )

    def _check_compatible(self, step: int, target: dict) -> None:
        """Compare the checkpoint's array names, shapes and dtypes with ``target``'s."""
        try:
            saved = ocp.StandardCheckpointHandler().metadata(self.directory / str(step) / "default").tree
        except Exception as err:  # orbax / tensorstore raise many types for unreadable metadata
            raise self._damaged(step, err) from err
        saved = {k: saved[k] for k in target if k in saved}
        diffs = tree_differences(saved, target)
        if not diffs:
            return
        more = f"; and {len(diffs) - MAX_LISTED} more" if len(diffs) > MAX_LISTED else ""
        if all(d.startswith("optimizer/") for d in diffs):
            what = (
                "the optimizer state differs: the run was trained with another optimizer (train.optimizer, "
                "train.weight_decay or the schedule)"
            )
        else:
            what = (
                "the model differs: it was trained with another model config (model.kwargs such as widths or "
                "blocks, the method, or the dataset's shapes)"
            )
        saved_config = self.workdir / "config.json"
        where = (
            f"{saved_config} records the config it was trained with"
            if saved_config.is_file()
            else "use the config and method it was trained with"
        )
        raise CheckpointIncompatibleError(
            f"checkpoint {self.directory / str(step)} does not fit the model being restored: {what}. "
            + "; ".join(diffs[:MAX_LISTED])
            + more
            + f". Restore it with the config it was trained with ({where}), "
            "or train into another --workdir."
        )

    def restore(self, model, optimizer=None, step: int | None = None) -> int:
        """Load the latest complete (or ``step``'s) checkpoint into ``model`` (and ``optimizer``).

        Returns:
          The step restored.

        Raises:
          CheckpointMissingError, CheckpointIncompatibleError, CheckpointCorruptError: see the
          module docstring; each message names the folder and the fix.
        """
        with _ORBAX, _orbax_log_held():
            step = self._pick_step(step)
            target = self._tree(model, optimizer)
            self._check_compatible(step, target)
            restored = self._read(step, target, optimizer is not None)
        restored = jax.tree.map(_uncommitted, restored)
        nnx.update(model, restored["model"])
        if optimizer is not None:
            nnx.update(optimizer, restored["optimizer"])
        return step

    def _read(self, step: int, target: dict, with_optimizer: bool) -> dict:
        try:
            if with_optimizer:
                restored = self.manager.restore(step, args=ocp.args.StandardRestore(target))
            else:  # the model's subtree only (evaluation needs no moments), whatever this manager saved
                with ocp.Checkpointer(ocp.PyTreeCheckpointHandler()) as reader:
                    restored = reader.restore(
                        self.directory / str(step) / "default",
                        args=ocp.args.PyTreeRestore(
                            target,
                            restore_args=ocp.checkpoint_utils.construct_restore_args(target),
                            partial_restore=True,
                        ),
                    )
        except Exception as err:  # orbax raises many types for a damaged folder
            raise self._damaged(step, err) from err
        return restored

    def close(self) -> None:
        with _ORBAX:
            self.manager.close()
