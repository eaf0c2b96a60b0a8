"""Multi-step forecasting: the windows, the naive forecasts against a float64 reference, the
level-free LSTM head."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from invnorm_jax import data
from invnorm_jax.data.common import Split
from invnorm_jax.data.forecast import naive_forecast_values
from invnorm_jax.errors import ArgumentError
from invnorm_jax.models import LSTMForecaster


def _series(n=60, season=6, seed=0):
    """A trend, a seasonal cycle and noise: the three forecasts all differ on it."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 0.05 * t + np.sin(2 * np.pi * t / season) + 0.1 * rng.standard_normal(n)


def _reference(series, window, horizon, season):
    """Loops over every window and lead in float64, straight from the definitions."""
    out = {"persistence": [], "seasonal_naive": [], "seasonal_drift": [], "truth": []}
    for start in range(len(series) - window - horizon + 1):
        t = start + window - 1  # the last observed step
        out["persistence"].append([series[t]] * horizon)
        out["seasonal_naive"].append([series[t + k - season] for k in range(1, horizon + 1)])
        out["seasonal_drift"].append(
            [series[t] + series[t + k - season] - series[t - season] for k in range(1, horizon + 1)]
        )
        out["truth"].append([series[t + k] for k in range(1, horizon + 1)])
    return {k: np.array(v) for k, v in out.items()}


def _split(x, y):
    return Split(x_train=x[:1], y_train=y[:1], x_test=x, y_test=y, num_classes=None)


def test_make_windows_targets_are_the_next_values():
    series = np.arange(12.0) ** 2
    x, y = data.make_windows(series, window=4, horizon=3)
    assert x.shape == (6, 4, 1) and y.shape == (6, 3)
    for i in range(6):
        np.testing.assert_array_equal(x[i, :, 0], series[i : i + 4])
        np.testing.assert_array_equal(y[i], series[i + 4 : i + 7])
    with pytest.raises(ArgumentError, match="horizon=0"):
        data.make_windows(series, window=4, horizon=0)


@pytest.mark.parametrize("window, horizon, season", [(7, 1, 6), (10, 4, 6), (13, 6, 6)])
def test_naive_forecasts_match_a_float64_reference(window, horizon, season):
    series = _series(season=season)
    x, y = data.make_windows(series.astype(np.float32), window, horizon)
    ref = _reference(series.astype(np.float32).astype(np.float64), window, horizon, season)
    values = naive_forecast_values(x, horizon, season=season)
    scores = data.naive_forecasts(_split(x, y), season=season)
    for name in ("persistence", "seasonal_naive", "seasonal_drift"):
        np.testing.assert_allclose(values[name], ref[name], rtol=0, atol=1e-12)
        rmse = np.sqrt(np.mean((ref[name] - ref["truth"]) ** 2))
        assert scores[name] == pytest.approx(rmse, rel=1e-6)
    assert len(set(scores.values())) == 3  # three different forecasts, not one copied


def test_naive_forecasts_are_exact_on_a_purely_seasonal_trend():
    # Trend plus an exact period: last year's change over each lead is this year's.
    t = np.arange(40.0)
    series = 0.3 * t + np.array([0.0, 1.0, -0.5, 2.0])[t.astype(int) % 4]
    x, y = data.make_windows(series, window=9, horizon=3)
    scores = data.naive_forecasts(_split(x, y), season=4)
    assert scores["seasonal_drift"] == pytest.approx(0.0, abs=1e-5)
    assert scores["seasonal_naive"] == pytest.approx(1.2, rel=1e-5)  # each target vs one season before
    assert scores["persistence"] > 0.5


def test_naive_forecast_errors_say_what_to_change():
    x, y = data.make_windows(_series(), window=6, horizon=2)
    with pytest.raises(ArgumentError, match="window of 6 steps is too short.*at least 7"):
        data.naive_forecasts(_split(x, y), season=6)
    x, y = data.make_windows(_series(), window=10, horizon=8)
    with pytest.raises(ArgumentError, match="horizon=8 exceeds season=6"):
        data.naive_forecasts(_split(x, y), season=6)
    classes = Split(
        x_train=x, y_train=np.zeros(len(x), np.int32), x_test=x, y_test=np.zeros(len(x), np.int32), num_classes=2
    )
    with pytest.raises(ArgumentError, match="classification task"):
        data.naive_forecasts(classes, season=6)
    with pytest.raises(ArgumentError, match="targets \\[N, horizon\\]"):
        data.naive_forecasts(_split(x[..., 0], y), season=6)


def test_load_co2_multi_step_split():
    split = data.load_co2(window=60, horizon=5)
    assert split.x_train.shape[1:] == (60, 1) and split.y_train.shape[1:] == (5,)
    cut = int(0.8 * 2284)
    # Every training target precedes the cut, every test target follows it; the 4 windows
    # whose targets straddle it are in neither split.
    assert len(split.x_train) == cut - 60 - 4 and len(split.x_test) == 2284 - cut - 4
    assert split.extras["target_dates_test"][0] == split.extras["dates"][cut]
    # The targets are the weeks right after each window.
    np.testing.assert_allclose(split.y_train[:-1, 0], split.x_train[1:, -1, 0], rtol=1e-6)
    np.testing.assert_allclose(split.y_test[1:, :4], split.y_test[:-1, 1:], rtol=1e-6)
    ppm = split.destandardize(split.y_test[-1])
    np.testing.assert_allclose(ppm, split.extras["series_ppm"][-5:], rtol=1e-5)


@pytest.mark.parametrize("stride", [2, 3])
def test_load_co2_test_stride_keeps_every_kth_window_of_the_same_period(stride):
    every, strided = data.load_co2(window=60, horizon=5), data.load_co2(window=60, horizon=5, test_stride=stride)
    np.testing.assert_array_equal(strided.x_test, every.x_test[::stride])
    np.testing.assert_array_equal(strided.y_test, every.y_test[::stride])
    np.testing.assert_array_equal(strided.extras["target_dates_test"], every.extras["target_dates_test"][::stride])
    np.testing.assert_array_equal(strided.x_train, every.x_train)  # training is untouched


@pytest.mark.parametrize("stride", [0, -1, 1.5, True, "2"])
def test_load_co2_rejects_a_bad_test_stride(stride):
    with pytest.raises(ArgumentError, match="test_stride.*whole number >= 1"):
        data.load_co2(test_stride=stride)


def test_co2_default_task_naive_levels():
    scores = data.naive_forecasts(data.load_co2())
    # The levels docs/datasets.md quotes: 26 weeks ahead, the seasonal drift is the one to beat.
    assert scores == pytest.approx(
        {"persistence": 0.2489, "seasonal_naive": 0.1446, "seasonal_drift": 0.0661}, abs=5e-4
    )


def test_lstm_residual_forecast_is_level_free():
    model = LSTMForecaster("nn", in_features=2, hidden=8, out_features=4, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (3, 12, 2))
    y = model(x)
    assert y.shape == (3, 4)
    shift = jnp.array([5.0, -2.0, 0.5])[:, None, None]
    # Adding a constant to the whole window moves every step of the forecast by it.
    np.testing.assert_allclose(model(x + shift), y + shift[:, 0], atol=1e-4)
    # The head predicts the change from the last value of feature 0.
    head = LSTMForecaster("nn", in_features=2, hidden=8, out_features=4, residual=False, rngs=nnx.Rngs(0))
    centered = x - x[:, -1:, :1]
    np.testing.assert_allclose(y, head(centered) + x[:, -1, :1], atol=1e-5)
