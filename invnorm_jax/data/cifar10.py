"""CIFAR-10 through TFDS (no TensorFlow needed to read) and its augmentation.

Images are converted to float32 and normalized per channel with the standard
CIFAR-10 training-set statistics. Training batches get the usual augmentation
(random 32x32 crop of the image zero-padded by 4, random horizontal flip),
seeded so that `(seed, epoch)` fixes every crop and flip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

from invnorm_jax.data.common import SeedLike, Split, batches
from invnorm_jax.data.tfds_sources import open_data_sources, read_records

#: Per-channel mean of the CIFAR-10 training pixels, in [0, 1] units.
CIFAR10_MEAN = np.array([0.4914, 0.4822, 0.4465], dtype=np.float32)
#: Per-channel standard deviation of the CIFAR-10 training pixels.
CIFAR10_STD = np.array([0.2470, 0.2435, 0.2616], dtype=np.float32)


def normalize_cifar(images: np.ndarray) -> np.ndarray:
    """uint8 `[N, 32, 32, 3]` -> float32 `(x / 255 - mean) / std` per channel.

    >>> x = normalize_cifar(np.full((1, 32, 32, 3), 255, np.uint8))
    >>> x.dtype, np.round(x[0, 0, 0].astype(np.float64), 2).tolist()  # (1 - mean) / std
    (dtype('float32'), [2.06, 2.13, 2.12])
    """
    return ((images.astype(np.float32) / 255.0 - CIFAR10_MEAN) / CIFAR10_STD).astype(np.float32)


def _records_to_arrays(records: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    images = np.stack([np.asarray(r["image"], dtype=np.uint8) for r in records])
    labels = np.array([int(r["label"]) for r in records], dtype=np.int32)
    return normalize_cifar(images), labels


def load_cifar10(
    data_dir: str | os.PathLike | None = None, *, train_split: str = "train", test_split: str = "test"
) -> Split:
    """Loads CIFAR-10 from a prepared TFDS folder with `tfds.data_source`.

    Args:
      data_dir: TFDS data folder; None uses `$TFDS_DATA_DIR` or
        `~/tensorflow_datasets`.
      train_split: TFDS split spec for training, e.g. "train[:5000]" for a
        smoke run.
      test_split: TFDS split spec for testing.

    Returns:
      A `Split` with `x_*` float32 `[N, 32, 32, 3]` (normalized), `y_*` int32
      `[N]`, 10 classes, and `mean`/`std` the per-channel constants.

    Raises:
      DatasetNotFoundError: CIFAR-10 is not prepared; the message gives the
        command to prepare it and the folder searched.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as empty:
    ...     try:
    ...         load_cifar10(empty)
    ...     except FileNotFoundError as err:
    ...         print(type(err).__name__, "- pip install", str(err).split("pip install ")[1].split(")")[0])
    DatasetNotFoundError - pip install "invnorm-jax[tf]"
    """
    sources = open_data_sources("cifar10", [train_split, test_split], data_dir)
    x_tr, y_tr = _records_to_arrays(read_records(sources[train_split]))
    x_te, y_te = _records_to_arrays(read_records(sources[test_split]))
    names = tuple(sources[train_split].dataset_info.features["label"].names)
    return Split(
        x_train=x_tr,
        y_train=y_tr,
        x_test=x_te,
        y_test=y_te,
        num_classes=10,
        class_names=names,
        mean=CIFAR10_MEAN,
        std=CIFAR10_STD,
    )


def random_crop_flip(
    images: np.ndarray, rng: np.random.Generator, *, padding: int = 4, flip: bool = True
) -> np.ndarray:
    """Random crop of the zero-padded images, then a random horizontal flip.

    Padding with zeros in normalized space pads with the dataset's mean colour,
    which is what padding before normalization approximately gives too.
    Everything is vectorized: one gather for the whole batch.

    Args:
      images: `[B, H, W, C]` batch.
      rng: numpy generator that decides every offset and flip.
      padding: pixels of zero padding on each side (crop offsets in
        `[0, 2 * padding]`).
      flip: flip each image left-right with probability 1/2.

    Returns:
      An array of the same shape and dtype.

    >>> images = np.ones((2, 4, 4, 1), np.float32)
    >>> out = random_crop_flip(images, np.random.default_rng(0), padding=1)
    >>> out.shape, bool(out.max() == 1.0), bool(np.isin(out, [0.0, 1.0]).all())  # pixels or zero padding
    ((2, 4, 4, 1), True, True)
    """
    b, h, w, _ = images.shape
    padded = np.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    top = rng.integers(0, 2 * padding + 1, size=b)
    left = rng.integers(0, 2 * padding + 1, size=b)
    rows = top[:, None] + np.arange(h)[None, :]
    cols = left[:, None] + np.arange(w)[None, :]
    if flip:
        flipped = rng.random(b) < 0.5
        # Reversing the column indices of a crop is the flip of that crop.
        cols = np.where(flipped[:, None], cols[:, ::-1], cols)
    batch_idx = np.arange(b)[:, None, None]
    return padded[batch_idx, rows[:, :, None], cols[:, None, :]]


def cifar10_batches(
    x: np.ndarray, y: np.ndarray, batch_size: int, *, seed: int = 0, epoch: int = 0, train: bool = True
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """One epoch of CIFAR-10 batches.

    Training batches are shuffled, augmented with `random_crop_flip` and
    incomplete final batches are dropped (static shapes for jit); evaluation
    batches are in order, unaugmented, and keep every example.

    Args:
      x: normalized images `[N, 32, 32, 3]`.
      y: labels `[N]`.
      batch_size: examples per batch.
      seed: base seed of the run.
      epoch: epoch number; `(seed, epoch)` seeds order and augmentation.
      train: training (shuffle + augment) or evaluation mode.

    Returns:
      An iterator of `(x_batch, y_batch)`.

    >>> x, y = np.zeros((10, 32, 32, 3), np.float32), np.arange(10)
    >>> [len(yb) for _, yb in cifar10_batches(x, y, 4)]  # training: the incomplete batch is dropped
    [4, 4]
    >>> [yb.tolist() for _, yb in cifar10_batches(x, y, 4, train=False)]  # evaluation: in order, all kept
    [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    """
    rng_seed: SeedLike = (seed, epoch)
    return batches(
        x, y, batch_size, seed=rng_seed, shuffle=train, drop_last=train, transform=random_crop_flip if train else None
    )
