"""What the command line checks before it builds or trains anything, and its usage errors.

A run that would fail late (the third task's dataset folder missing, a method name with a
typo, checkpoints trained with another config, an output folder holding someone else's files)
is refused at once, with one message. Each check is cheap: it lists folders, reads small JSON
files and builds the models abstractly (``nnx.eval_shape``: shapes only, no weights).
"""

from __future__ import annotations

import argparse
import pathlib
from collections.abc import Mapping, Sequence

from invnorm_jax.errors import UsageError, did_you_mean

#: Files that only an invnorm-jax run writes at the top of its folder.
RUN_FILES = ("config.json", "results.json", "evaluate.json", "ablation.json")


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises :class:`UsageError` (one line from the CLI), not usage text and an exit."""

    def error(self, message):
        err = UsageError(f"{message} (see {self.prog} --help)")
        err.prog = self.prog
        raise err


def count(text: str) -> int:
    """An ``argparse`` type: an integer >= 1 (a number of chips or samples)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer: expected a count >= 1, e.g. 100") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a count >= 1")
    return value


def one_line(err: BaseException) -> str:
    """The message of ``err`` on one line."""
    return " ".join(line.strip() for line in str(err).splitlines() if line.strip())


def is_run_folder(path: pathlib.Path) -> bool:
    """Whether ``path`` was written by an invnorm-jax run: its files, or a ``<method>/checkpoints`` two deep."""
    if any((path / name).is_file() for name in RUN_FILES):
        return True
    subfolders = [*path.glob("*"), *path.glob("*/*")]
    return any((p / "checkpoints").is_dir() or (p / "config.json").is_file() for p in subfolders)


def check_output_folder(path, flag: str = "--out") -> None:
    """Refuse a folder that holds other files than a previous run's (which is resumed / reused).

    Raises:
      UsageError: ``path`` is a file, or a non-empty folder that no invnorm-jax run wrote.
    """
    path = pathlib.Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {path} is a file: give a folder (a new one, or a previous run's to resume it).")
    if not path.is_dir() or not any(path.iterdir()) or is_run_folder(path):
        return
    names = sorted(p.name for p in path.iterdir())
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    raise UsageError(
        f"{flag} {path} already holds other files ({shown}) and is not an invnorm-jax run: give a new "
        "or empty folder, or the folder of a previous run to resume it."
    )


def has_checkpoint(workdir) -> bool:
    """Whether ``workdir/checkpoints`` holds a saved step (a folder named by its number)."""
    folder = pathlib.Path(workdir) / "checkpoints"
    return folder.is_dir() and any(p.name.isdigit() and p.is_dir() for p in folder.iterdir())


def _check_method_names(config, methods: Sequence[str] | None) -> None:
    from invnorm_jax.errors import ConfigError

    for method in methods or ():
        if method not in config.methods:
            hint = did_you_mean(method, config.methods)
            raise ConfigError(
                f"--method {method!r} is not a method of config {config.name!r}{hint}; pick from "
                f"{tuple(config.methods)}, or add it with --config.methods=..."
            )


def check_model(config, method: str) -> None:
    """Build ``method``'s model of ``config`` abstractly: a constructor argument it refuses is a ConfigError."""
    from flax import nnx

    from invnorm_jax.errors import ConfigError
    from invnorm_jax.pipeline.experiment import make_model

    try:
        nnx.eval_shape(lambda: make_model(config, method))
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:  # the constructor's ArgumentError, or a plain error of a model of yours
        raise ConfigError(
            f"config {config.name!r}: model {config.model.name!r} ({method}) cannot be built from model.kwargs: {err}"
        ) from None


def check_run(
    configs: Mapping,
    workdirs: Mapping,
    methods: Sequence[str] | None,
    *,
    trained: bool,
    train_hint: str = "invnorm-jax train",
    seeds: int = 1,
) -> None:
    """Everything about ``configs`` that can fail before training, for every task at once.

    Args:
      configs: task -> resolved config.
      workdirs: task -> folder of its methods' checkpoints.
      methods: the methods asked for (None: each config's).
      trained: the run only loads checkpoints (sweep, evaluate, ood --no-train): they must exist.
      train_hint: the command that would train them, for the message.
      seeds: training seeds per method (their checkpoints are checked too).

    Raises:
      ConfigError: an unknown method, a model that cannot be built, checkpoints of another config.
      DatasetNotFoundError: a dataset folder missing or incomplete. CheckpointMissingError: no checkpoint.
    """
    from invnorm_jax.errors import CheckpointMissingError
    from invnorm_jax.pipeline import config as config_lib
    from invnorm_jax.pipeline.datasets import check_dataset
    from invnorm_jax.pipeline.experiment import check_methods, check_seeds, seed_workdir, with_seed

    for task, config in configs.items():
        _check_method_names(config, methods)
        chosen = check_methods(config, methods)
        check_dataset(config.dataset.name, config.dataset.kwargs.to_dict())
        for method, s in ((m, s) for m in chosen for s in range(check_seeds(seeds))):
            workdir = seed_workdir(workdirs[task], method, s)
            config_lib.check_same_training(with_seed(config, config.seed + s), workdir)
            if trained and not has_checkpoint(workdir):
                raise CheckpointMissingError(
                    f"no checkpoint in {workdir / 'checkpoints'}: train first ({train_hint} "
                    f"--workdir {workdirs[task]}, with the same overrides), or point "
                    "--workdir at a trained run."
                )
            if s == 0:
                check_model(config, method)
