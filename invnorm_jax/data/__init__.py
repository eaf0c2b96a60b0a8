"""Datasets as plain numpy arrays (float32, channels last).

Embedded (ship inside installed packages, always available offline):
`load_digits`, `load_mnist1d`, `load_co2` (with `naive_forecasts`, the trivial
forecasts its models must beat). Prepared TFDS datasets read without
TensorFlow: `load_cifar10`. Local folders the user downloads:
`load_speech_commands`, `load_drive`. Synthetic stand-ins of the downloaded
ones for smoke runs: `invnorm_jax.testing.get_synthetic(name)`. See docs/datasets.md.

This package imports only numpy at import time (loaders import their heavy
dependencies lazily) and nothing from the JAX side of the library.
"""

from invnorm_jax.data.cifar10 import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    cifar10_batches,
    load_cifar10,
    normalize_cifar,
    random_crop_flip,
)
from invnorm_jax.data.common import DATA_DIR_ENV, Split, batches, default_data_root, standardize, subsample_per_class
from invnorm_jax.data.drive import (
    default_drive_root,
    load_drive,
    normalize_in_fov,
    pad_to_multiple,
    random_patches,
    read_drive_split,
)
from invnorm_jax.data.embedded import fill_missing_linear, load_co2, load_digits, load_mnist1d, make_windows
from invnorm_jax.data.forecast import naive_forecasts
from invnorm_jax.data.registry import (
    AUGMENTATIONS,
    DATASETS,
    check_dataset,
    check_dataset_kwargs,
    dataset_parameters,
    get_dataset,
)
from invnorm_jax.data.speech_commands import (
    SPEECH_COMMANDS_URL,
    default_speech_root,
    fix_length,
    index_speech_folder,
    load_speech_commands,
    read_wav,
)
from invnorm_jax.data.speech_commands import WORDS as SPEECH_COMMANDS_WORDS
from invnorm_jax.errors import DatasetNotFoundError

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "DATASETS",
    "DATA_DIR_ENV",
    "DatasetNotFoundError",
    "SPEECH_COMMANDS_URL",
    "SPEECH_COMMANDS_WORDS",
    "Split",
    "batches",
    "cifar10_batches",
    "default_data_root",
    "default_drive_root",
    "default_speech_root",
    "fill_missing_linear",
    "fix_length",
    "get_dataset",
    "index_speech_folder",
    "load_cifar10",
    "load_co2",
    "load_digits",
    "load_drive",
    "load_mnist1d",
    "load_speech_commands",
    "make_windows",
    "naive_forecasts",
    "normalize_cifar",
    "normalize_in_fov",
    "pad_to_multiple",
    "random_crop_flip",
    "random_patches",
    "read_drive_split",
    "read_wav",
    "standardize",
    "subsample_per_class",
    "AUGMENTATIONS",
    "check_dataset",
    "check_dataset_kwargs",
    "dataset_parameters",
]
