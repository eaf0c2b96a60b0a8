"""Name -> loader registry, so configs can say `dataset="digits"`."""

from __future__ import annotations

import inspect
import pathlib
from collections.abc import Callable

from invnorm_jax.data.cifar10 import load_cifar10, random_crop_flip
from invnorm_jax.data.common import Split
from invnorm_jax.data.drive import check_drive_folder, load_drive
from invnorm_jax.data.embedded import load_co2, load_digits, load_mnist1d
from invnorm_jax.data.speech_commands import default_speech_root, index_speech_folder, load_speech_commands
from invnorm_jax.data.tfds_sources import not_prepared_message, tfds_data_dir
from invnorm_jax.errors import ArgumentError, DatasetNotFoundError, did_you_mean

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
    return ArgumentError(
        f"unknown dataset {name!r}{did_you_mean(name, DATASETS)}; known datasets: {', '.join(sorted(DATASETS))}"
    )


def dataset_parameters(name: str) -> tuple[str, ...]:
    """The keyword arguments ``get_dataset(name, ...)`` accepts.

    Raises:
      ArgumentError: an unknown dataset.

    >>> dataset_parameters("co2")
    ('window', 'horizon', 'train_fraction', 'test_stride')
    """
    if name not in DATASETS:
        raise _unknown(name)
    return tuple(
        p.name
        for p in inspect.signature(DATASETS[name]).parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    )


def check_dataset_kwargs(name: str, kwargs: dict, *, allowed: tuple[str, ...] | None = None) -> None:
    """Raise unless every key of ``kwargs`` is an argument of dataset ``name``'s loader (or of ``allowed``).

    Raises:
      ArgumentError: an unknown dataset or argument; the message suggests the closest one.

    >>> try:
    ...     check_dataset_kwargs("co2", {"windows": 26})
    ... except ValueError as err:
    ...     print(err)
    dataset 'co2' takes no argument 'windows' (did you mean 'window'?); its arguments: window, horizon, train_fraction, test_stride.
    """
    allowed = dataset_parameters(name) if allowed is None else allowed
    for key in kwargs:
        if key not in allowed:
            raise ArgumentError(
                f"dataset {name!r} takes no argument {key!r}{did_you_mean(key, allowed)}; its "
                f"arguments: {', '.join(allowed)}."
            )


def check_dataset(name: str, **kwargs) -> None:
    """Check, without loading it, that ``get_dataset(name, **kwargs)`` can work.

    The arguments must be the loader's, and a dataset read from a local folder must be there
    (every file of DRIVE's layout, Speech Commands' word folders and lists, a prepared TFDS
    CIFAR-10 folder). Cheap: it lists folders and reads no image or clip.

    Args:
      name: a registered dataset name.
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
    check_dataset_kwargs(name, kwargs)
    if name == "drive":
        check_drive_folder(kwargs.get("root"))
    elif name == "speech_commands" and kwargs.get("source", "auto") in ("folder", "auto"):
        root = pathlib.Path(kwargs["root"]).expanduser() if kwargs.get("root") else default_speech_root()
        if kwargs.get("source") == "folder" or root.is_dir():  # auto without the folder: TFDS
            index_speech_folder(root)
    elif name == "cifar10" and not (tfds_data_dir(kwargs.get("data_dir")) / "cifar10").is_dir():
        raise DatasetNotFoundError(not_prepared_message("cifar10", kwargs.get("data_dir")))


def get_dataset(name: str, **kwargs) -> Split:
    """Loads a dataset by name.

    Args:
      name: one of `DATASETS` ("digits", "mnist1d", "co2", "cifar10",
        "speech_commands", "drive").
      **kwargs: forwarded to the loader (e.g. `seed=`, `root=`, `data_dir=`). Generated
        stand-ins of the downloaded datasets (smoke runs): `invnorm_jax.testing.get_synthetic`.

    Returns:
      The loader's `Split`.

    Raises:
      ArgumentError: unknown name or argument (the message lists the known ones).

    >>> get_dataset("digits").x_test.shape
    (360, 8, 8, 1)
    """
    if name not in DATASETS:
        raise _unknown(name)
    check_dataset_kwargs(name, kwargs)
    return DATASETS[name](**kwargs)
