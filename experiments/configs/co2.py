"""Offline demo task: an 8-bit two-layer LSTM forecasting Mauna Loa CO2 (statsmodels), RMSE.

Full:  invnorm-jax train --config experiments/configs/co2.py && invnorm-jax sweep --config experiments/configs/co2.py
Demo:  invnorm-jax demo --tasks co2
"""

METHODS = ("nn", "spindrop", "spatial_spindrop", "proposed")


def get_config(variant: str = "full") -> dict:
    steps = {"full": 1500, "quick": 200, "smoke": 8}[variant]
    sigmas = {"full": [0.0, 0.1, 0.2, 0.3, 0.4], "quick": [0.0, 0.3], "smoke": [0.0, 0.3]}[variant]
    return dict(
        name="co2",
        dataset=dict(name="co2", kwargs=dict(window=52)),
        model=dict(name="lstm", kwargs=dict(hidden=32, num_layers=2)),
        metric="rmse",
        methods=METHODS,
        rate=0.3,
        train=dict(steps=steps, batch_size=64, learning_rate=3e-3, optimizer="adam", schedule="cosine",
                   warmup_steps=min(50, steps // 4), checkpoint_every=max(steps // 3, 1)),
        eval=dict(num_chips={"full": 100, "quick": 20, "smoke": 4}[variant],
                  num_samples={"full": 5, "quick": 3, "smoke": 2}[variant],
                  max_test={"full": None, "quick": 200, "smoke": 32}[variant],
                  # Chips in a chunk share one batched matmul per LSTM step: 1.7x faster than one by one.
                  chunk_size=10),
        sweeps={
            # The paper's LSTM experiments: additive and multiplicative variation, uniform noise.
            # --quick keeps the first only: each fault kind is one more compilation per method.
            name: dict(kind=name, site="weights", levels=sigmas)
            for name in (("additive",) if variant == "quick" else ("additive", "multiplicative", "uniform"))
        },
        seed=0,
    )
