"""Name -> loader registry, so configs can say `dataset="digits"`."""

from __future__ import annotations

import difflib
import inspect
import pathlib
from collections.abc import Callable

from invnorm_jax._checks import ArgumentError
from invnorm_jax.data.cifar10 import load_cifar10, random_crop_flip
from invnorm_jax.data.common import DatasetNotFoundError, Split
from invnorm_jax.data.drive import check_drive_folder, load_drive
from invnorm_jax.data.embedded import load_co2, load_digits, load_mnist1d
from invnorm_jax.data.speech_commands import default_speech_root, index_speech_folder, load_speech_commands
from invnorm_jax.data.tfds_sources import not_prepared_message, tfds_data_dir

#: Every dataset the library knows, by the name configs use.
DATASETS: dict[str, Callable[..., Split]] = {
    "digits": load_digits,
    "mnist1d": load_mnist1d,
    "co2": load_co2,
    "cifar10": load_cifar10,
    "speech_commands": load_speech_commands,
    "drive": load_drive,
}


#: Training-time augmentations by the name a config gives (``config.augment``):
#: ``augment(batch, rng) -> batch`` on a numpy minibatch, or None.
AUGMENTATIONS: dict[str, Callable | None] = {
    "none": None,
    "crop_flip": random_crop_flip,  # 4-pixel padded random crop and horizontal flip (CIFAR)
}


def _unknown(name: str) -> ArgumentError:
    close = difflib.get_close_matches(str(name), list(DATASETS), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ArgumentError(f"unknown dataset {name!r}{hint}; known datasets: {', '.join(sorted(DATASETS))}")


def dataset_parameters(name: str, *, synthetic: bool = False) -> tuple[str, ...]:
    """The keyword arguments ``get_dataset(name, synthetic=synthetic, ...)`` accepts.

    Raises:
      ArgumentError: an unknown dataset.

    >>> dataset_parameters("co2")
    ('window', 'horizon', 'train_fraction', 'test_stride')
    """
    if name not in DATASETS:
        raise _unknown(name)
    functions = [DATASETS[name]]
    if synthetic:
        from invnorm_jax.testing.synthetic_data import SYNTHETIC_DATASETS

        functions += [SYNTHETIC_DATASETS[name]] if name in SYNTHETIC_DATASETS else []
    return tuple(dict.fromkeys(
        p.name for f in functions for p in inspect.signature(f).parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)))


def check_dataset_kwargs(name: str, kwargs: dict, *, synthetic: bool = False) -> None:
    """Raise unless every key of ``kwargs`` is an argument of dataset ``name``'s loader.

    Raises:
      ArgumentError: an unknown dataset or argument; the message suggests the closest one.

    >>> try:
    ...     check_dataset_kwargs("co2", {"windows": 26})
    ... except ValueError as err:
    ...     print(err)
    dataset 'co2' takes no argument 'windows' (did you mean 'window'?); its arguments: window, horizon, train_fraction, test_stride.
    """
    allowed = dataset_parameters(name, synthetic=synthetic)
    for key in kwargs:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ArgumentError(f"dataset {name!r} takes no argument {key!r}{hint}; its arguments: "
                                f"{', '.join(allowed)}.")


def check_dataset(name: str, *, synthetic: bool = False, **kwargs) -> None:
    """Check, without loading it, that ``get_dataset(name, synthetic=synthetic, **kwargs)`` can work.

    The arguments must be the loader's, and a dataset read from a local folder must be there
    (every file of DRIVE's layout, Speech Commands' word folders and lists, a prepared TFDS
    CIFAR-10 folder). Cheap: it lists folders and reads no image or clip.

    Args:
      name: a registered dataset name.
      synthetic: check for the synthetic stand-in (arguments only; nothing to find on disk).
      **kwargs: the loader's arguments.

    Raises:
      ArgumentError: unknown dataset or argument.
      DatasetNotFoundError: the data is missing.

    >>> check_dataset("digits")  # embedded: always there
    >>> try:
    ...     check_dataset("drive", root="/nonexistent/DRIVE")
    ... except FileNotFoundError as err:
    ...     print(type(err).__name__)
    DatasetNotFoundError
    """
    check_dataset_kwargs(name, kwargs, synthetic=synthetic)
    if synthetic:
        return
    if name == "drive":
        check_drive_folder(kwargs.get("root"))
    elif name == "speech_commands" and kwargs.get("source", "auto") in ("folder", "auto"):
        root = pathlib.Path(kwargs["root"]).expanduser() if kwargs.get("root") else default_speech_root()
        if kwargs.get("source") == "folder" or root.is_dir():  # auto without the folder: TFDS
            index_speech_folder(root)
    elif name == "cifar10" and not (tfds_data_dir(kwargs.get("data_dir")) / "cifar10").is_dir():
        raise DatasetNotFoundError(not_prepared_message("cifar10", kwargs.get("data_dir")))


def get_dataset(name: str, *, synthetic: bool = False, **kwargs) -> Split:
    """Loads a dataset by name.

    Args:
      name: one of `DATASETS` ("digits", "mnist1d", "co2", "cifar10",
        "speech_commands", "drive").
      synthetic: load a generated stand-in with the real shapes and label space
        instead (no download; for smoke runs, the metrics are meaningless):
        "cifar10", "speech_commands" and "drive" only. See
        `invnorm_jax.testing`.
      **kwargs: forwarded to the loader (e.g. `seed=`, `root=`, `data_dir=`),
        or to the synthetic generator (e.g. `num_train=`, `clips_per_word=`).

    Returns:
      The loader's `Split`.

    Raises:
      ValueError: unknown name or argument (the message lists the known ones), or
        `synthetic=True` for a dataset without a synthetic stand-in.

    >>> get_dataset("digits").x_test.shape
    (360, 8, 8, 1)
    """
    if name not in DATASETS:
        raise _unknown(name)
    if synthetic:
        from invnorm_jax.testing import get_synthetic  # fixtures, loaded only when asked for

        return get_synthetic(name, **kwargs)
    check_dataset_kwargs(name, kwargs)
    return DATASETS[name](**kwargs)
