"""The ``proposed`` training step against ``nn``'s, for every benchmarked model.

One jitted step each, ``invnorm_jax.train``'s own (``_train_step``: forward, loss, gradient,
optimizer update), on the same batch; the two methods take turns run by run and each time is
the median after a warm-up (the compile). Target: ``proposed / nn <= 1.10``.
"""

from __future__ import annotations

import time

import jax
from flax import nnx

from experiments.benchmarks.common import interleaved_medians
from experiments.benchmarks.models import SPECS, build, inputs, targets
from invnorm_jax.train import TrainConfig, _train_step, make_optimizer

TARGET = 1.10
BATCH = {"digits": 64, "m5": 64, "lstm": 64, "resnet18": 32}


def step_runner(key: str, method: str, batch: int):
    """``(run, compile seconds)``: one warmed-up training step of ``method`` on ``key``'s model."""
    model = build(key, method)
    optimizer = nnx.Optimizer(model, make_optimizer(TrainConfig(loss=SPECS[key].loss)), wrt=nnx.Param)
    x, y = inputs(key, batch), targets(key, batch)
    rng = jax.random.key(0)
    kind = SPECS[key].loss
    start = time.perf_counter()
    _train_step(model, optimizer, x, y, rng, loss_kind=kind).block_until_ready()
    compile_s = time.perf_counter() - start
    return (lambda: _train_step(model, optimizer, x, y, rng, loss_kind=kind).block_until_ready()), compile_s


def measure(key: str, *, batch: int, repeats: int) -> dict:
    """Median seconds per step of ``nn`` and ``proposed`` (taking turns) and their ratio."""
    runs = {m: step_runner(key, m, batch)[0] for m in ("nn", "proposed")}
    seconds = interleaved_medians(runs, repeats)
    return {
        "nn_ms": 1e3 * seconds["nn"],
        "proposed_ms": 1e3 * seconds["proposed"],
        "ratio": seconds["proposed"] / seconds["nn"],
    }


def rows(quick: bool) -> list[dict]:
    """One row per model: ms per step of both methods and ``proposed / nn``."""
    out = []
    for key, spec in SPECS.items():
        batch = 8 if quick and key == "resnet18" else BATCH[key]
        start = time.perf_counter()
        m = measure(key, batch=batch, repeats=3 if quick else 20)
        print(f"{key} {time.perf_counter() - start:.0f} s", end="; ", flush=True)
        out.append(
            {
                "name": f"train step proposed/nn: {spec.label}",
                "figures": {
                    "nn ms/step": m["nn_ms"],
                    "proposed ms/step": m["proposed_ms"],
                    "proposed / nn": m["ratio"],
                },
                "note": f"batch {batch}; target <= {TARGET:.2f}: {'met' if m['ratio'] <= TARGET else 'MISSED'}",
            }
        )
    return out


if __name__ == "__main__":
    import sys

    for key in sys.argv[1:] or list(SPECS):
        print(key, measure(key, batch=BATCH[key], repeats=10), flush=True)
