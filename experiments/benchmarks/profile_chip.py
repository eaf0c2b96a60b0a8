"""Where a digits chip step's time goes: a ``jax.profiler`` trace of ``simulate_chips``, by kind of op.

Run::

    python -m experiments.benchmarks.profile_chip                    # 20 chips x 10 samples x 360 images
    python -m experiments.benchmarks.profile_chip --compute float32  # every binary layer as a float32 conv
    python -m experiments.benchmarks.profile_chip --top 20           # and the 20 costliest ops

How: the compiled call (the digits model, ``proposed``, 10 % weight bit-flips) runs once to warm
up, once under ``jax.profiler.trace``; the trace's per-op events of XLA's CPU runtime (one per
thunk: a fusion, a conv, a loop) are summed by op and put in a category by the op's HLO
instruction (from ``compiled.as_text()``: its root and the jax op it came from). Profiling
every op inflates small ones, and an op that runs asynchronously on the thread pool can show
less than its time: read the shares, and check a surprising one against a single-op timing.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import re
import tempfile
import time

import jax
import jax.numpy as jnp
from flax import nnx

from experiments.benchmarks.models import build, inputs
from invnorm_jax.faults import Fault, simulate_chips
from invnorm_jax.nn.lowp import COMPUTES, set_binary_compute

#: (category, test on (instruction name, root opcode, jax op name)), first match wins.
CATEGORIES = [
    ("random draws (threefry loops)", lambda name, root, op: name.startswith("while") or "threefry" in op),
    ("convs and matmuls", lambda name, root, op: op.endswith(("conv_general_dilated", "dot_general"))),
    ("normalization statistics (reductions)", lambda name, root, op: "reduce" in op or root.startswith("reduce")),
    (
        "copies (banded windows' stack, transposes)",
        lambda name, root, op: op.endswith(("stack", "concatenate", "transpose", "copy")),
    ),
    ("elementwise chains (affine, normalize, residual, hardtanh, sign)", lambda name, root, op: "fusion" in name),
]
SKIP = ("ThunkExecutor", "$", "SlinkyThreadPool", "PjitFunction")


def instructions(hlo: str) -> dict[str, tuple[str, str]]:
    """Instruction name -> (its opcode, the jax op it came from) of an optimized HLO module."""
    out = {}
    for line in hlo.splitlines():
        m = re.match(r"\s*(?:ROOT )?%(\S+) = \S+ ([\w-]+)\(", line)
        if m:
            op = re.search(r'op_name="([^"]*)"', line)
            out[m.group(1)] = (m.group(2), op.group(1).rsplit("/", 1)[-1] if op else "")
    return out


def op_times(trace_dir: str) -> tuple[collections.Counter, collections.Counter]:
    """Microseconds and calls per op name, summed over the trace's complete events."""
    path = sorted(glob.glob(f"{trace_dir}/**/*.trace.json.gz", recursive=True))[-1]
    events = json.load(gzip.open(path))["traceEvents"]
    micros, calls = collections.Counter(), collections.Counter()
    for e in events:
        if e.get("ph") == "X" and not e["name"].startswith(SKIP):
            micros[e["name"]] += e["dur"]
            calls[e["name"]] += 1
    return micros, calls


def category(name: str, meta: dict) -> str:
    root, op = meta.get(name, ("", ""))
    return next((c for c, test in CATEGORIES if test(name, root, op)), "other")


def profile(chips: int, samples: int, images: int, compute: str | None, top: int) -> str:
    model, x = build("digits"), inputs("digits", images)
    if compute is not None:
        set_binary_compute(model, compute)
    graphdef, state = nnx.split(model)
    fault = Fault("bit_flip", 0.1)

    def simulate(state, x, key, level):
        return simulate_chips(
            nnx.merge(graphdef, state), x, fault=fault, level=level, num_chips=chips, num_samples=samples, key=key
        )

    args = (state, x, jax.random.key(1), jnp.float32(fault.level))
    compiled = jax.jit(simulate).lower(*args).compile()
    compiled(*args).block_until_ready()
    start = time.perf_counter()
    compiled(*args).block_until_ready()
    wall = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir):
            compiled(*args).block_until_ready()
        micros, calls = op_times(trace_dir)
    meta = instructions(compiled.as_text())
    by_cat = collections.Counter()
    for name, us in micros.items():
        by_cat[category(name, meta)] += us
    total = sum(by_cat.values())
    lines = [
        f"digits chip step, {chips} chips x {samples} samples x {images} images, binary compute "
        f"{compute or 'auto'}: {1e3 * wall / chips:.1f} ms per chip untraced ({chips * samples * images / wall:,.0f} img/s); "
        f"traced op time {total / 1e3 / chips:.1f} ms per chip",
        "",
        "| part of the chip step | ms per chip | share |",
        "|---|---|---|",
    ]
    lines += [f"| {c} | {us / 1e3 / chips:.1f} | {100 * us / total:.0f} % |" for c, us in by_cat.most_common()]
    if top:
        lines += ["", f"the {top} costliest ops (ms per chip, calls, category, jax op):"]
        for name, us in micros.most_common(top):
            root, op = meta.get(name, ("?", "?"))
            lines.append(
                f"  {us / 1e3 / chips:6.2f}  {calls[name]:4d}  {name:34s} {category(name, meta)[:28]:28s} {op}"
            )
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--chips", type=int, default=20)
    p.add_argument("--samples", type=int, default=10)
    p.add_argument("--images", type=int, default=360)
    p.add_argument("--compute", choices=COMPUTES, help="every binary layer's compute (default: each layer's own, auto)")
    p.add_argument("--top", type=int, default=0, help="also list the N costliest ops")
    a = p.parse_args(argv)
    print(profile(a.chips, a.samples, a.images, a.compute, a.top))


if __name__ == "__main__":
    main()
