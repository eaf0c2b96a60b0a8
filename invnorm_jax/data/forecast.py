"""Trivial forecasts of a windowed series, the yardstick a learned forecaster must beat.

A forecasting `Split` (see `load_co2`) holds windows `x [N, L, F]` whose feature 0 is the
series itself, the last step `t = L - 1` being the last observed week, and targets
`y [N, H]`, the next `H` values `series[t + 1 .. t + H]`. Three forecasts need no training:

* `persistence`: `x[t]` for every step, "nothing changes";
* `seasonal_naive`: `x[t + k - season]`, the value one season before each target;
* `seasonal_drift`: `x[t] + x[t + k - season] - x[t - season]`, the last value plus last
  season's change over the same lead `k`.

A model whose RMSE is not clearly below the best of them has learned nothing a rule of thumb
does not know; `naive_forecasts` reports them on the very windows the models are scored on.
"""

from __future__ import annotations

import numpy as np

from invnorm_jax.errors import ArgumentError

#: Weeks in a year: the CO2 series' seasonal period.
WEEKLY_SEASON = 52


def _check_forecast_split(x: np.ndarray, y: np.ndarray, num_classes) -> None:
    """Raise unless `x [N, L, F]` and `y [N, H]` are the windows and targets of a forecast."""
    if num_classes is not None:
        raise ArgumentError(
            f"the split is a classification task ({num_classes} classes): naive forecasts need a "
            "forecasting split such as load_co2()'s."
        )
    if x.ndim != 3 or y.ndim != 2 or len(x) != len(y) or len(x) == 0:
        raise ArgumentError(
            f"x_test.shape={x.shape}, y_test.shape={y.shape}: a forecasting split holds windows "
            "[N, L, features] and targets [N, horizon] with the same N > 0 (e.g. load_co2())."
        )


def naive_forecast_values(x: np.ndarray, horizon: int, *, season: int = WEEKLY_SEASON) -> dict[str, np.ndarray]:
    """The three naive forecasts `[N, horizon]` of windows `x [N, L, F]` (feature 0 is the series).

    Args:
      x: input windows; `x[:, -1, 0]` is the last observed value.
      horizon: how many future steps each forecast covers.
      season: the seasonal period in steps (52 weeks).

    Returns:
      `{"persistence", "seasonal_naive", "seasonal_drift"}` -> float64 `[N, horizon]`.

    Raises:
      ArgumentError: a window of `season` steps or fewer, or a horizon longer than the season.

    >>> x = np.arange(6.0)[None, :, None]          # one window 0..5, season 4
    >>> {k: v.tolist() for k, v in naive_forecast_values(x, 2, season=4).items()}
    {'persistence': [[5.0, 5.0]], 'seasonal_naive': [[2.0, 3.0]], 'seasonal_drift': [[6.0, 7.0]]}
    """
    if season < 1 or horizon < 1:
        raise ArgumentError(f"season={season} and horizon={horizon} must both be >= 1.")
    window = x.shape[1]
    if window <= season:
        raise ArgumentError(
            f"a window of {window} steps is too short for a seasonal forecast with season={season}: "
            f"use a window of at least {season + 1} (the drift reads the value one season before "
            "the last one)."
        )
    if horizon > season:
        raise ArgumentError(
            f"horizon={horizon} exceeds season={season}: the seasonal forecasts would read values "
            f"after the window; use a horizon of at most {season}."
        )
    series = np.asarray(x[..., 0], dtype=np.float64)
    last = series[:, -1:]
    lagged = series[:, window - 1 - season + np.arange(1, horizon + 1)]  # x[t + k - season], k = 1..H
    return {
        "persistence": np.repeat(last, horizon, axis=1),
        "seasonal_naive": lagged,
        "seasonal_drift": last + lagged - series[:, window - 1 - season][:, None],
    }


def naive_forecasts(split, *, season: int = WEEKLY_SEASON) -> dict[str, float]:
    """RMSE of the naive forecasts on a forecasting split's test windows, over the whole horizon.

    .. math:: \\mathrm{RMSE} = \\sqrt{\\tfrac{1}{NH}\\textstyle\\sum_{i,k} (\\hat y_{i,k} - y_{i,k})^2}

    in the split's units (standardized for `load_co2`), on `split.x_test` / `split.y_test`:
    the same windows and the same metric the models are scored with. See
    `naive_forecast_values` for the three forecasts.

    Args:
      split: a `Split` whose `x_test` is `[N, L, F]` (feature 0: the series) and `y_test`
        `[N, H]`, the next `H` values after each window.
      season: the seasonal period in steps (52 weeks for weekly CO2).

    Returns:
      `{"persistence": ..., "seasonal_naive": ..., "seasonal_drift": ...}`, Python floats.

    Raises:
      ArgumentError: not a forecasting split, or a window too short for the season.

    >>> from invnorm_jax.data import load_co2
    >>> {k: round(v, 3) for k, v in naive_forecasts(load_co2()).items()}
    {'persistence': 0.249, 'seasonal_naive': 0.145, 'seasonal_drift': 0.066}
    """
    x, y = np.asarray(split.x_test), np.asarray(split.y_test, dtype=np.float64)
    _check_forecast_split(x, y, split.num_classes)
    forecasts = naive_forecast_values(x, y.shape[1], season=season)
    return {name: float(np.sqrt(np.mean((pred - y) ** 2))) for name, pred in forecasts.items()}
