"""Table I, row 3: 8-bit two-layer LSTM forecasting atmospheric CO2 (Mauna Loa), RMSE; Fig. 6 sweeps.

Run (paper scale; the data ship with statsmodels, nothing to download; a GPU helps the
sweeps, a CPU manages)::

    invnorm-jax train --config co2_lstm --workdir runs/co2 \\
      && invnorm-jax sweep --config co2_lstm --workdir runs/co2

Smoke (the real data, a few steps, CPU, under a minute per two methods; the numbers mean nothing)::

    invnorm-jax train --config co2_lstm --smoke --workdir /tmp/co2-smoke \\
      && invnorm-jax sweep --config co2_lstm --smoke --workdir /tmp/co2-smoke

(``co2`` is the offline demo's smaller version of this task: 32 hidden
units, 1500 steps.)

Data: weekly Mauna Loa CO2 1958-2001 (statsmodels), gaps interpolated, standardized with the
training period's statistics; windows of 104 weeks predict the next 26 weeks at once (a direct
multi-step forecast); chronological split (1698 training, 432 test windows). RMSE over the whole
horizon, in standardized units (multiply by ``split.std``, 12.95, for ppm).

Why 26 weeks: one week ahead, persistence *is* the forecast (RMSE 0.040, every model 0.038-0.045),
so a fault sweep would only measure how close each head stays to zero. Over 26 weeks the series
moves by a quarter of its standard deviation: persistence 0.249, seasonal-naive 0.145, and the
last value plus last year's change over each lead (seasonal drift) 0.066, the bar to beat
(``invnorm_jax.data.naive_forecasts``). The paper calls its model autoregressive and its Table I
RMSEs (0.12-0.15) are about three persistence levels of the one-week task.

Model: ``LSTMForecaster`` with 2 stacked LSTM layers of 64 units and 26 outputs, level-free
(``residual=True``: the window is read relative to its last value and each output is the change
from it; the test period lies above every training level), 8-bit weights and
activations in both projections of every cell and in the linear head, a normalization site
on every layer's output at every step (LayerNorm for the baselines, since the paper's LSTM
has no BatchNorm; one affine-dropout mask per sequence). Dropout rate 0.3.

Recipe. The paper does not give one; chosen here: Adam, peak learning rate 3e-3 with 100
warm-up steps then cosine decay to 0, batch 64, 200 epochs (26 steps per epoch: 5200
steps), no weight decay, MSE loss. ``quick``: 40 epochs.

Evaluation: 100 chips, T = 10 MC samples (NN: 1), all 432 test windows in one slice.

Sweeps (the paper's LSTM experiments), on the 8-bit codes of every cell and of the head:

* ``bit_flip``: each bit of the two's-complement codes flips with probability p, 0 ... 5 %.
* ``additive``: Gaussian variation, sigma in units of the layer's largest code magnitude.
* ``multiplicative``: ``w * (1 + sigma * n)``.
* ``uniform``: ``w + U(-a, a)``, a in units of the layer's largest code magnitude.
"""

from invnorm_jax.pipeline.configs._common import base, check_variant, sweep

TRAIN_EXAMPLES = 1698
#: Weeks forecast at once and weeks of history read (two seasonal cycles).
HORIZON, WINDOW = 26, 104


def get_config(variant: str = "full"):
    c = base("co2_lstm", check_variant(variant))
    batch = {"full": 64, "quick": 64, "smoke": 32}[variant]
    steps_per_epoch = TRAIN_EXAMPLES // batch
    steps = {"full": 200 * steps_per_epoch, "quick": 40 * steps_per_epoch, "smoke": 3}[variant]
    levels = {"full": [0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4], "quick": [0.0, 0.1, 0.3], "smoke": [0.0, 0.3]}[variant]
    rates = {"full": [0.0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05], "quick": [0.0, 0.005, 0.02], "smoke": [0.0, 0.01]}[
        variant
    ]
    c.dataset.name = "co2"
    c.dataset.kwargs.update(dict(window=WINDOW, horizon=HORIZON, train_fraction=0.8))
    c.model.name = "lstm"
    c.model.kwargs.update(dict(hidden=64, num_layers=2, out_features=HORIZON, bits=8, norm_placement="hidden"))
    c.metric = "rmse"
    c.train.update(
        dict(
            steps=steps,
            batch_size=batch,
            learning_rate=3e-3,
            optimizer="adam",
            schedule="cosine",
            warmup_steps={"full": 100, "quick": 50, "smoke": 1}[variant],
            checkpoint_every={"full": 20 * steps_per_epoch, "quick": 10 * steps_per_epoch, "smoke": 10}[variant],
        )
    )
    c.eval.num_chips = {"full": 100, "quick": 100, "smoke": 2}[variant]
    c.eval.num_samples = {"full": 10, "quick": 5, "smoke": 2}[variant]
    c.eval.max_test = {"full": None, "quick": None, "smoke": 16}[variant]
    c.eval.chunk_size = 10  # the LSTM's batched matmuls pay for vmapped chips (docs/benchmarks.md)
    c.sweeps.bit_flip = sweep("bit_flip", rates)  # the paper's largest LSTM claim (§IV-D)
    for kind in ("additive", "multiplicative", "uniform"):
        c.sweeps[kind] = sweep(kind, levels)
    return c
