"""Datasets that ship inside installed packages: no download, always available.

* `load_digits`: scikit-learn's 8x8 handwritten digits (the offline demo's task).
* `load_mnist1d`: MNIST-1D, generated locally by the `mnist1d` package.
* `load_co2`: statsmodels' weekly Mauna Loa CO2 series, as multi-step forecasting windows.

The heavy imports (sklearn, statsmodels, mnist1d) happen inside the loaders so
that `import invnorm_jax.data` stays fast.
"""

from __future__ import annotations

import random

import numpy as np

from invnorm_jax.data.common import Split, standardize
from invnorm_jax.errors import ArgumentError

#: Size of the digits test split: the demo evaluates exactly 360 test images.
DIGITS_TEST_SIZE = 360
#: Default CO2 input window: 104 weeks, two seasonal cycles, so last year's change over
#: every lead of the horizon is inside the window.
CO2_WINDOW = 104
#: Default CO2 forecast horizon: the next 26 weeks, over which the series changes by about
#: a quarter of its standard deviation (one week ahead, persistence already is the forecast).
CO2_HORIZON = 26
#: Fraction of the CO2 series (chronologically first) used for training.
CO2_TRAIN_FRACTION = 0.8


def load_digits(seed: int = 0) -> Split:
    """Loads scikit-learn's 8x8 digits with a fixed stratified split.

    Pixels (0..16) are scaled to [0, 1], then standardized with the scalar
    mean/std of the training images. The split is stratified by class with
    `sklearn.model_selection.train_test_split(test_size=360, random_state=seed)`:
    1437 train / 360 test images.

    Args:
      seed: random state of the stratified split.

    Returns:
      A `Split` with `x_*` float32 `[N, 8, 8, 1]`, `y_*` int32 `[N]`,
      `num_classes=10` and the standardization `mean`/`std`.

    >>> d = load_digits()
    >>> d.x_train.shape, d.x_test.shape
    ((1437, 8, 8, 1), (360, 8, 8, 1))
    """
    from sklearn import datasets, model_selection

    digits = datasets.load_digits()
    images = (digits.images / 16.0).astype(np.float32)[..., None]
    labels = digits.target.astype(np.int32)
    x_tr, x_te, y_tr, y_te = model_selection.train_test_split(
        images, labels, test_size=DIGITS_TEST_SIZE, stratify=labels, random_state=seed
    )
    (x_tr, x_te), mean, std = standardize(x_tr, x_te)
    return Split(
        x_train=x_tr,
        y_train=y_tr,
        x_test=x_te,
        y_test=y_te,
        num_classes=10,
        class_names=tuple(str(i) for i in range(10)),
        mean=mean,
        std=std,
    )


def load_mnist1d(seed: int = 42, num_samples: int = 5000) -> Split:
    """Generates MNIST-1D locally with the `mnist1d` package (never downloads).

    Uses `mnist1d.data.make_dataset` with the package's default arguments
    (`get_dataset_args()`), overriding only `seed` and `num_samples`. The
    default `seed=42` is the package's own default (the seed of the standard
    MNIST-1D, 4000 train / 1000 test sequences). The generator
    standardizes the whole set itself (mean 0, std 1); that is kept as is.

    `make_dataset` reseeds Python's and numpy's global generators; their state
    is saved and restored so loading data does not perturb the caller.

    Args:
      seed: generation seed (42 reproduces the published dataset).
      num_samples: total number of sequences; the package's 80/20 split applies.

    Returns:
      A `Split` with `x_*` float32 `[N, 40, 1]`, `y_*` int32 `[N]`, 10 classes.

    >>> split = load_mnist1d(num_samples=200)
    >>> split.x_train.shape, split.x_test.shape, split.num_classes
    ((160, 40, 1), (40, 40, 1), 10)
    """
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.seed = seed
    args.num_samples = num_samples
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        data = make_dataset(args)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return Split(
        x_train=data["x"].astype(np.float32)[..., None],
        y_train=data["y"].astype(np.int32),
        x_test=data["x_test"].astype(np.float32)[..., None],
        y_test=data["y_test"].astype(np.int32),
        num_classes=10,
        class_names=tuple(str(i) for i in range(10)),
    )


def fill_missing_linear(values: np.ndarray) -> np.ndarray:
    """Fills NaNs by linear interpolation between the nearest known neighbours.

    The series is equally spaced (weekly), so interpolating on the integer
    position is interpolating in time. Leading/trailing gaps take the nearest
    known value (`np.interp` semantics).

    Args:
      values: 1-D float array with NaNs.

    Returns:
      A float64 copy without NaNs.

    >>> fill_missing_linear(np.array([np.nan, 1.0, np.nan, np.nan, 4.0])).tolist()
    [1.0, 1.0, 2.0, 3.0, 4.0]
    """
    values = np.asarray(values, dtype=np.float64)
    missing = np.isnan(values)
    pos = np.arange(len(values))
    filled = values.copy()
    filled[missing] = np.interp(pos[missing], pos[~missing], values[~missing])
    return filled


def make_windows(series: np.ndarray, window: int, horizon: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Cuts a 1-D series into (input window, next `horizon` values) pairs: a direct multi-step forecast.

    Window `i` is `series[i : i + window]` and its targets are the `horizon` values that
    follow it, `series[i + window : i + window + horizon]`.

    Args:
      series: 1-D array.
      window: input length L.
      horizon: how many future values each target holds (1 = the next value).

    Returns:
      `(inputs [N, L, 1], targets [N, horizon])`, float32, `N = len - L - horizon + 1`.

    Raises:
      ArgumentError: a window (plus horizon) as long as the series, or a horizon below 1.

    >>> inputs, targets = make_windows(np.arange(6.0), window=3, horizon=2)
    >>> inputs[..., 0].tolist(), targets.tolist()
    ([[0.0, 1.0, 2.0], [1.0, 2.0, 3.0]], [[3.0, 4.0], [4.0, 5.0]])
    """
    if horizon < 1 or window < 1:
        raise ArgumentError(f"window={window} and horizon={horizon} must both be >= 1.")
    n = len(series) - window - horizon + 1
    if n <= 0:
        raise ArgumentError(
            f"window={window} (horizon={horizon}) is too long for a series of length {len(series)}: "
            f"use a window below {len(series) - horizon + 1}."
        )
    starts = np.arange(n)[:, None]
    inputs = series[starts + np.arange(window)][..., None].astype(np.float32)
    targets = series[starts + window + np.arange(horizon)].astype(np.float32)
    return inputs, targets


def load_co2(
    window: int = CO2_WINDOW,
    *,
    horizon: int = CO2_HORIZON,
    train_fraction: float = CO2_TRAIN_FRACTION,
    test_stride: int = 1,
) -> Split:
    """Mauna Loa weekly CO2 (statsmodels) as a direct multi-step forecasting task.

    The 2284 weekly values (1958-03-29 .. 2001-12-29) have 59 gaps, filled by
    linear interpolation. The first `train_fraction` of the weeks is the
    training period: its mean/std standardize the whole series. Each window of
    `window` weeks is paired with the `horizon` weeks that follow it. A training
    window's targets all lie in the training period and a test window's all in
    the test period (the `horizon - 1` windows whose targets straddle the cut are
    dropped); test windows may read the last training weeks as history, as a
    deployed forecaster would. `naive_forecasts(split)` scores the trivial
    forecasts on the same test windows. Neighbouring test windows share all but
    one week, so `test_stride=2` (every other window, the same test period) halves
    the cost of a chip sweep and barely moves an RMSE.

    Args:
      window: input window length L (default 104 weeks).
      horizon: how many weeks ahead to predict, all of them (default 26).
      train_fraction: chronological fraction of weeks used for training.
      test_stride: keep every `test_stride`-th test window, from the first (1 = all).

    Returns:
      A `Split` with `x_*` float32 `[N, L, 1]`, `y_*` float32 `[N, horizon]`,
      `num_classes=None`, the `mean`/`std` in ppm (see `Split.destandardize`),
      and `extras` holding `series_ppm` (filled, unstandardized), `dates` (all
      weeks) and `target_dates_train` / `target_dates_test` (each window's first
      target week).

    >>> split = load_co2()
    >>> split.x_train.shape, split.y_test.shape, round(split.mean, 2)  # mean of the training weeks, in ppm
    ((1698, 104, 1), (432, 26), 333.46)
    >>> load_co2(test_stride=2).y_test.shape
    (216, 26)
    """
    import statsmodels.api as sm

    if isinstance(test_stride, bool) or not isinstance(test_stride, (int, np.integer)) or test_stride < 1:
        raise ArgumentError(f"test_stride={test_stride!r}: use a whole number >= 1 (1 keeps every test window).")

    frame = sm.datasets.co2.load_pandas().data
    raw = frame["co2"].to_numpy(dtype=np.float64)
    dates = frame.index.to_numpy().astype("datetime64[D]")
    series = fill_missing_linear(raw)
    cut = int(len(series) * train_fraction)
    (_,), mean, std = standardize(series[:cut])
    scaled = (series - mean) / std
    inputs, targets = make_windows(scaled, window, horizon)
    first_target = np.arange(len(targets)) + window
    train = first_target + horizon - 1 < cut
    test = (first_target >= cut) & ((first_target - cut) % test_stride == 0)
    return Split(
        x_train=inputs[train],
        y_train=targets[train],
        x_test=inputs[test],
        y_test=targets[test],
        num_classes=None,
        mean=mean,
        std=std,
        extras={
            "series_ppm": series.astype(np.float32),
            "dates": dates,
            "target_dates_train": dates[first_target[train]],
            "target_dates_test": dates[first_target[test]],
        },
    )
