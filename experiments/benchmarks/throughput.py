"""``simulate_chips`` throughput for every benchmarked model, beside a Python loop over chips
(one jitted single chip, the same body) and the matching float32 ceiling, taking turns.

Figures per model: chips x samples x inputs per second; GFLOP/s from the dense conv+matmul
count of the single-input forward's jaxpr (as ``chips.py``); that as a fraction of the float32
ceiling measured in turn (the conv ceiling for the CNNs, the matmul ceiling for the LSTM: the
models compute in float32; binary layers run in float32 too, their would-be ceiling is int8's,
see the ceiling rows); and ``simulate_chips / loop``.
"""

from __future__ import annotations

import time

from experiments.benchmarks.common import ceiling_op, compile_simulate, interleaved_medians, model_flops, python_loop
from experiments.benchmarks.models import SPECS, build, inputs

#: model -> (chips, samples, inputs) of the full and of the quick run.
SIZES = {
    "digits": ((100, 10, 360), (10, 2, 64)),
    "m5": ((100, 10, 360), (10, 2, 64)),
    "lstm": ((20, 5, 360), (4, 2, 64)),
    "resnet18": ((4, 2, 64), (2, 1, 8)),
}


def measure(key: str, *, chips: int, samples: int, n: int, repeats: int, quick: bool) -> dict:
    """Rates of ``simulate_chips``, the loop and the ceiling, taking turns."""
    model, x, fault = build(key), inputs(key, n), SPECS[key].fault
    flops = model_flops(model, x, xla=False)["dense"]
    sim, compile_s = compile_simulate(model, x, fault, chips=chips, samples=samples, chunk=None)
    loop = python_loop(model, x, fault, chips=chips, samples=samples)
    op = "matmul" if key == "lstm" else "conv"
    ceiling, ceiling_flops = ceiling_op(op, "float32", 0.125 if quick else 1.0)
    seconds = interleaved_medians({"simulate": sim, "loop": loop, "ceiling": ceiling}, repeats)
    total = chips * samples * n
    rate = total / seconds["simulate"]
    gflops = flops * rate / 1e9
    roof = ceiling_flops / seconds["ceiling"] / 1e9
    return {
        "rate": rate,
        "gflops": gflops,
        "fraction": gflops / roof,
        "vs_loop": seconds["loop"] / seconds["simulate"],
        "flops": flops,
        "compile_s": compile_s,
        "op": op,
    }


def rows(quick: bool) -> list[dict]:
    """One row per model."""
    out = []
    for key, spec in SPECS.items():
        chips, samples, n = SIZES[key][1 if quick else 0]
        start = time.perf_counter()
        m = measure(key, chips=chips, samples=samples, n=n, repeats=1 if quick else 3, quick=quick)
        print(f"{key} {time.perf_counter() - start:.0f} s", end="; ", flush=True)
        out.append(
            {
                "name": f"simulate_chips: {spec.label}",
                "figures": {
                    "inputs/s": m["rate"],
                    "GFLOP/s": m["gflops"],
                    f"of f32 {m['op']} ceiling": m["fraction"],
                    "vs loop": m["vs_loop"],
                },
                "note": (
                    f"{chips} chips x {samples} samples x {n} inputs, {spec.fault.kind} {spec.fault.level}, "
                    f"{m['flops'] / 1e6:.3g} MFLOP/input, compile {m['compile_s']:.0f} s"
                ),
            }
        )
    return out
