"""Offline demo task: an 8-bit two-layer LSTM forecasting Mauna Loa CO2 (statsmodels), RMSE.

Task: from 104 weeks, forecast the next 26 weeks at once (``out_features=26``, RMSE over all of
them, standardized units). One week ahead, persistence already scores 0.040 and every model
matched it, so a fault sweep only measured how close a head stayed to zero; 26 weeks ahead the
naive forecasts score persistence 0.249, seasonal-naive 0.145, seasonal drift (last value plus
last year's change) 0.066 (``invnorm_jax.data.naive_forecasts``), and the level-free LSTM
learns 0.047 (NN) / 0.050 (proposed), two seeds each. One recipe for every method: Adam, peak
6e-3 (measured 3e-3: 0.051 / 0.057), 50 warm-up steps, cosine, batch 64, 1500 steps.

The sweeps score every other test window (``test_stride=2``: 216 of 432, the same test period;
neighbouring windows share 103 of 104 weeks). It halves the chip simulation, the demo's longest
part; the naive forecasts move by under 0.001 (persistence 0.247, seasonal-naive 0.145, seasonal
drift 0.067). The study in docs/study ran with every window (its results.json holds its config).

Run::

    invnorm-jax train --config co2 --workdir runs/co2 && invnorm-jax sweep --config co2 --workdir runs/co2

Demo: ``invnorm-jax demo --tasks co2``. (``co2_lstm`` is the paper-scale version: 64 hidden
units, 5400 steps.)
"""

from invnorm_jax.models import PRESETS
from invnorm_jax.pipeline.configs._common import base, sweep

#: Weeks forecast at once and weeks of history read (two seasonal cycles).
HORIZON, WINDOW = 26, 104


def get_config(variant: str = "full"):
    c = base("co2", variant)
    steps = {"full": 1500, "quick": 200, "smoke": 8}[variant]
    sigmas = {"full": [0.0, 0.1, 0.2, 0.3, 0.4], "quick": [0.0, 0.3], "smoke": [0.0, 0.3]}[variant]
    rates = {"full": [0.0, 0.001, 0.002, 0.005, 0.01, 0.02], "quick": [0.0, 0.01], "smoke": [0.0, 0.01]}[variant]
    c.dataset.name = "co2"
    stride = {"full": 2, "quick": 2, "smoke": 1}[variant]
    c.dataset.kwargs.update(dict(window=WINDOW, horizon=HORIZON, test_stride=stride))
    c.model.name, preset = PRESETS["co2"]  # the model is the library's preset, one home for it
    c.model.kwargs.update(preset)
    c.metric = "rmse"
    c.train.update(
        dict(
            steps=steps,
            batch_size=64,
            learning_rate=6e-3,
            optimizer="adam",
            schedule="cosine",
            warmup_steps=min(50, steps // 4),
            checkpoint_every=max(steps // 3, 1),
        )
    )
    c.eval.num_chips = {"full": 100, "quick": 20, "smoke": 4}[variant]
    c.eval.num_samples = {"full": 5, "quick": 3, "smoke": 2}[variant]
    c.eval.max_test = {"full": None, "quick": None, "smoke": 32}[variant]
    c.eval.chunk_size = 10  # the LSTM's batched matmuls pay for vmapped chips (docs/benchmarks.md)
    # The paper's LSTM experiments: bit-flips, additive, multiplicative and uniform variation.
    c.sweeps.bit_flip = sweep("bit_flip", rates)
    for kind in ("additive", "multiplicative", "uniform"):
        c.sweeps[kind] = sweep(kind, sigmas)
    return c
