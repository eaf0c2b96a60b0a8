"""Shared pieces of the data package: the `Split` container, errors, batching.

Everything here is plain numpy: the data package sits at the bottom of the
dependency graph (data -> models -> train -> faults -> metrics) and must never
import JAX models or training code.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from invnorm_jax.errors import ArgumentError

#: Environment variable naming the folder that holds manually downloaded datasets.
DATA_DIR_ENV = "INVNORM_DATA_DIR"

SeedLike = int | Sequence[int] | np.random.SeedSequence | None


@dataclasses.dataclass(frozen=True)
class Split:
    """A dataset already split into train / (validation) / test numpy arrays.

    Inputs are float32 and channels last (`[N, ..., C]`); class labels are int32
    indices (`[N]`, or `[N, H, W]` for segmentation); regression targets are
    float32 (`[N, 1]`).

    Attributes:
      x_train: training inputs.
      y_train: training labels or targets.
      x_test: test inputs.
      y_test: test labels or targets.
      num_classes: number of classes, or None for a regression task.
      class_names: human-readable class names (empty when not meaningful).
      x_val: validation inputs, when the dataset defines a validation split.
      y_val: validation labels, when the dataset defines a validation split.
      mean: statistic subtracted during standardization (from training data).
      std: statistic divided by during standardization (from training data).
      extras: dataset-specific arrays (FOV masks, dates, patch coordinates...).

    >>> split = Split(np.zeros((4, 2), np.float32), np.zeros(4, np.int32), np.zeros((2, 2), np.float32),
    ...               np.zeros(2, np.int32), num_classes=2, mean=10.0, std=2.0)
    >>> split.x_val is None, split.destandardize(np.array([1.0])).tolist()
    (True, [12.0])
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int | None
    class_names: tuple[str, ...] = ()
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    mean: Any = None
    std: Any = None
    extras: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def destandardize(self, values: np.ndarray) -> np.ndarray:
        """Maps standardized values back to the original units.

        Args:
          values: standardized array (e.g. CO2 predictions).

        Returns:
          `values * std + mean` as float32.

        Raises:
          ValueError: if the split was not standardized.
        """
        if self.mean is None or self.std is None:
            raise ArgumentError("this Split holds no standardization statistics")
        return (np.asarray(values) * self.std + self.mean).astype(np.float32)


def default_data_root() -> pathlib.Path:
    """Folder holding manually downloaded datasets (DRIVE, Speech Commands).

    Returns:
      `$INVNORM_DATA_DIR` when set, else `~/invnorm_data`.

    >>> from unittest import mock
    >>> with mock.patch.dict(os.environ, {DATA_DIR_ENV: "/data/sets"}):
    ...     print(default_data_root())
    /data/sets
    """
    env = os.environ.get(DATA_DIR_ENV)
    return pathlib.Path(env).expanduser() if env else pathlib.Path.home() / "invnorm_data"


def standardize(train: np.ndarray, *others: np.ndarray) -> tuple[list[np.ndarray], float, float]:
    """Standardizes arrays with a scalar mean/std measured on `train` only.

    A single scalar (not per-feature) statistic is used because constant
    features (e.g. the always-blank border pixels of the digits) would
    otherwise divide by zero; measuring on train alone avoids test leakage.

    Args:
      train: training array.
      *others: arrays (validation, test) standardized with the same statistics.

    Returns:
      `([train, *others] standardized as float32, mean, std)`.

    >>> (train, test), mean, std = standardize(np.array([1.0, 3.0]), np.array([5.0]))
    >>> train.tolist(), test.tolist(), mean, std
    ([-1.0, 1.0], [3.0], 2.0, 1.0)
    """
    mean = float(np.mean(train))
    std = float(np.std(train))
    out = [((a - mean) / std).astype(np.float32) for a in (train, *others)]
    return out, mean, std


def batches(
    x: np.ndarray,
    y: np.ndarray | None,
    batch_size: int,
    *,
    seed: SeedLike = None,
    shuffle: bool = True,
    drop_last: bool = False,
    transform: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Iterates once (one epoch) over `(x, y)` in mini-batches.

    The same `seed` gives the same order and the same augmentation; pass
    `seed=(base_seed, epoch)` for a different but reproducible order per epoch.

    Args:
      x: inputs, first axis is the example axis.
      y: labels with the same first axis, or None.
      batch_size: examples per batch.
      seed: anything `np.random.default_rng` accepts; None draws fresh entropy.
      shuffle: permute the examples before batching.
      drop_last: drop the final incomplete batch (keeps shapes static for jit).
      transform: optional augmentation `transform(x_batch, rng) -> x_batch`,
        called with the iterator's own generator so it is seeded too.

    Yields:
      `(x_batch, y_batch)` tuples (`y_batch` is None when `y` is None).

    Raises:
      ArgumentError: on a non-positive batch size or mismatched lengths.

    >>> x, y = np.arange(5), np.arange(5) * 10
    >>> [(xb.tolist(), yb.tolist()) for xb, yb in batches(x, y, 2, shuffle=False)]
    [([0, 1], [0, 10]), ([2, 3], [20, 30]), ([4], [40])]
    >>> sorted(np.concatenate([xb for xb, _ in batches(x, None, 2, seed=0)]).tolist())  # shuffled: every example once
    [0, 1, 2, 3, 4]
    """
    n = len(x)
    if batch_size <= 0:
        raise ArgumentError(f"batch_size={batch_size!r} must be an integer >= 1.")
    if y is not None and len(y) != n:
        raise ArgumentError(f"x has {n} examples but y has {len(y)}: they must have the same length.")
    rng = np.random.default_rng(seed)
    order = rng.permutation(n) if shuffle else np.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        idx = order[start : start + batch_size]
        xb = x[idx]
        if transform is not None:
            xb = transform(xb, rng)
        yield xb, (None if y is None else y[idx])


def subsample_per_class(labels: np.ndarray, max_per_class: int | None, seed: SeedLike) -> np.ndarray:
    """Indices keeping at most `max_per_class` examples of each class.

    Used to make laptop-sized smoke versions of large datasets while keeping
    every class represented.

    Args:
      labels: int class labels `[N]`.
      max_per_class: cap per class; None keeps everything.
      seed: seed of the random choice.

    Returns:
      Sorted int64 indices into `labels`.

    >>> labels = np.array([0, 0, 0, 1, 1, 2])
    >>> np.bincount(labels[subsample_per_class(labels, 2, seed=0)]).tolist()
    [2, 2, 1]
    """
    if max_per_class is None:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) > max_per_class:
            idx = rng.choice(idx, max_per_class, replace=False)
        keep.append(idx)
    return np.sort(np.concatenate(keep)) if keep else np.arange(0)
