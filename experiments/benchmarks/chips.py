"""Throughput, efficiency and peak memory of the chip simulator (``simulate_chips``).

Run (about 10 minutes on a quiet 2-core CPU; results in docs/benchmarks.md):

    python experiments/benchmarks/chips.py [--chips 100 --samples 10 --images 360]
    python experiments/benchmarks/chips.py --quick      # a one-minute smoke run

What it measures, all in one process on one machine (so that the ratios are fair):

1. FLOPs per image of the offline digits model (``build_model("digits", "proposed")``, untrained
   weights: speed does not depend on them): XLA's ``cost_analysis`` of the single-image forward,
   and a dense count of its convolutions and matmuls from the jaxpr.
2. The machine's conv ceiling: a large float32 3x3 conv, ``[64, 56, 56, 128] x [3, 3, 128, 128]``
   (bf16 and int8 alongside, for reference).
3. For both sites (weights: ``bit_flip``; preactivation: ``additive``): chips x samples x images
   per second of ``simulate_chips`` at several chunk sizes (on ``--sweep-chips`` chips, so that
   the slow settings stay affordable), then at the fastest chunk on ``--chips`` chips beside a
   Python loop over chips that calls one jitted single-chip function (``jit(vmap(samples))``).
4. Peak memory of fresh subprocesses, each running one ``simulate_chips`` call, for
   ``--memory-chips`` x ``--memory-chunks``: it should follow the chunk, not the chip count.

Every time is the median of ``--repeats`` runs after a warm-up: ``simulate_chips`` is traced
into one jitted function and compiled ahead of time (the compile is the warm-up, its seconds
are printed), the loop's single-chip function is called once. Contenders that are compared
(the chunk sizes of a site; simulate_chips and the loop) take turns run by run, so that the
background load of a shared machine falls on all of them alike.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

from flax import nnx

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from experiments.benchmarks import common  # noqa: E402
from experiments.benchmarks.common import (  # noqa: E402
    CEILING_FLOPS,
    DTYPES,
    ceiling_conv,
    ceiling_op,
    interleaved_medians,
    load_inputs,
    machine_line,
    median_time,
    model_flops,
    rss_mib,
)
from invnorm_jax.faults import DEFAULT_CHUNK, Fault  # noqa: E402
from invnorm_jax.models import build_model  # noqa: E402

FAULTS = {"weights": Fault("bit_flip", 0.05), "preactivation": Fault("additive", 0.5, site="preactivation")}


# --------------------------------------------------------------------------- measurements


def conv_ceiling(repeats: int) -> dict:
    """G(FL)OP/s of the ceiling conv in float32, bf16 and int8 (±1 values: exact in all three)."""
    return {name: CEILING_FLOPS / median_time(ceiling_op("conv", name)[0], repeats) / 1e9 for name in DTYPES}


def compile_simulate(model, x, site, *, chips, samples, chunk):
    """:func:`common.compile_simulate` with the fault of ``site``."""
    return common.compile_simulate(model, x, FAULTS[site], chips=chips, samples=samples, chunk=chunk)


def python_loop(model, x, site, *, chips, samples):
    """:func:`common.python_loop` with the fault of ``site``."""
    return common.python_loop(model, x, FAULTS[site], chips=chips, samples=samples)


def peak_memory_child(site: str, chunk: int, chips: int, samples: int, images: int) -> None:
    """(subprocess) Peak RSS of compiling, then of running, one simulate_chips; a JSON line.

    Writing 5 to /proc/self/clear_refs resets the peak (Linux >= 4.0), so that the run's peak
    is not hidden by the import's or the compiler's.
    """
    model = build_model("digits", "proposed", rngs=nnx.Rngs(0))
    run, _ = compile_simulate(model, load_inputs(images), site, chips=chips, samples=samples, chunk=chunk)
    _, compile_peak = rss_mib()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before, _ = rss_mib()
    run()
    _, peak = rss_mib()
    print(json.dumps({"compile_peak_mib": compile_peak, "before_mib": before, "peak_mib": peak}))


def peak_memory(site, chunk, chips, samples, images) -> dict:
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--_memory-child",
        site,
        str(chunk),
        str(chips),
        str(samples),
        str(images),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- report


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--chips", type=int, default=100)
    p.add_argument("--samples", type=int, default=10)
    p.add_argument("--images", type=int, default=360)
    p.add_argument("--chunks", default="1,5,10,25", help="chunk sizes of the sweep")
    p.add_argument("--sweep-chips", type=int, default=25, help="chips of the chunk sweep")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--memory-chips", default="20,100")
    p.add_argument("--memory-chunks", default="1,5,20", help="chunks that divide every --memory-chips")
    p.add_argument("--memory-site", default="preactivation", choices=tuple(FAULTS))
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run of the script")
    p.add_argument("--_memory-child", nargs=5, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a._memory_child:
        site, *nums = a._memory_child
        peak_memory_child(site, *map(int, nums))
        return
    if a.quick:
        a.chips, a.samples, a.images, a.sweep_chips, a.repeats = 10, 2, 64, 10, 1
        a.chunks, a.memory_chips, a.memory_chunks = "1,5", "5,10", "1,5"
    chunks = [int(c) for c in a.chunks.split(",")]
    t0 = time.perf_counter()

    print(f"machine: {machine_line()}")
    print(
        f"workload: digits BinaryResNet (proposed, untrained), {a.chips} chips x {a.samples} samples x "
        f"{a.images} images; sweep on {a.sweep_chips} chips; median of {a.repeats}"
    )
    model = build_model("digits", "proposed", rngs=nnx.Rngs(0))
    x = load_inputs(a.images)

    flops = model_flops(model, x)
    print(
        f"\nFLOPs per image (one chip, one MC sample): XLA cost_analysis {flops['xla'] / 1e6:.3f} M, "
        f"conv+matmul dense count {flops['dense'] / 1e6:.3f} M"
    )
    ceiling = conv_ceiling(a.repeats)
    print(
        "conv ceiling [64,56,56,128]x[3,3,128,128]: "
        + ", ".join(f"{k} {v:.1f} G{'OP' if k == 'int8' else 'FLOP'}/s" for k, v in ceiling.items())
        + "\n(the float32 ceiling is measured again in turn with every timed table below: the % columns use that)"
    )
    ceiling_run = ceiling_conv()

    def gflops(rate):
        return flops["dense"] * rate / 1e9

    n_sweep, n_full = a.sweep_chips * a.samples * a.images, a.chips * a.samples * a.images
    print(f"\nchunk sweep on {a.sweep_chips} chips (chips*samples*images per second; the chunk sizes take turns):")
    print(
        f"{'site':14s} {'chunk':>5s} {'img/s':>9s} {'s/run':>7s} {'compile s':>9s} {'GFLOP/s':>8s} "
        f"{'ceiling':>7s} {'% ceiling':>9s}"
    )
    best = {}
    for site in FAULTS:
        runs, compile_s = {"ceiling": ceiling_run}, {}
        for chunk in chunks:
            runs[chunk], compile_s[chunk] = compile_simulate(
                model, x, site, chips=a.sweep_chips, samples=a.samples, chunk=chunk
            )
        seconds = interleaved_medians(runs, a.repeats)
        del runs
        roof = CEILING_FLOPS / seconds.pop("ceiling") / 1e9
        for chunk in chunks:
            rate = n_sweep / seconds[chunk]
            print(
                f"{site:14s} {chunk:5d} {rate:9.0f} {seconds[chunk]:7.2f} {compile_s[chunk]:9.1f} "
                f"{gflops(rate):8.1f} {roof:7.1f} {100 * gflops(rate) / roof:8.1f}%",
                flush=True,
            )
        best[site] = min(chunks, key=seconds.get)
    print(f"fastest chunk per site: {best}   (DEFAULT_CHUNK is {DEFAULT_CHUNK})")

    print(
        f"\n{a.chips} chips x {a.samples} samples x {a.images} images: simulate_chips at the fastest chunk vs a "
        "Python loop of one jitted chip (taking turns):"
    )
    print(
        f"{'site':14s} {'chunk':>5s} {'simulate img/s':>14s} {'loop img/s':>10s} {'ratio':>6s} {'GFLOP/s':>8s} "
        f"{'ceiling':>7s} {'% ceiling':>9s}"
    )
    headline = {}
    for site, chunk in best.items():
        sim, compile_s = compile_simulate(model, x, site, chips=a.chips, samples=a.samples, chunk=chunk)
        loop = python_loop(model, x, site, chips=a.chips, samples=a.samples)
        seconds = interleaved_medians({"simulate": sim, "loop": loop, "ceiling": ceiling_run}, a.repeats)
        rate, loop_rate = n_full / seconds["simulate"], n_full / seconds["loop"]
        roof = CEILING_FLOPS / seconds["ceiling"] / 1e9
        pct = 100 * gflops(rate) / roof
        headline[site] = (rate / loop_rate, pct)
        print(
            f"{site:14s} {chunk:5d} {rate:14.0f} {loop_rate:10.0f} {rate / loop_rate:5.2f}x {gflops(rate):8.1f} "
            f"{roof:7.1f} {pct:8.1f}%",
            flush=True,
        )

    mem_ok = None
    if not a.skip_memory:
        mchips = [int(c) for c in a.memory_chips.split(",")]
        mchunks = [int(c) for c in a.memory_chunks.split(",")]
        print(
            f"\npeak RSS (MiB) of one simulate_chips run in a fresh process, site={a.memory_site}, {a.samples} "
            f"samples x {a.images} images. run = peak during the run minus RSS before it (peak reset after "
            "compiling); compile = peak while compiling:"
        )
        print(f"{'chunk':>5s} " + "".join(f"{f'{c} chips: run / compile':>26s}" for c in mchips))
        growth = []
        for chunk in mchunks:
            row = [peak_memory(a.memory_site, chunk, c, a.samples, a.images) for c in mchips]
            used = [r["peak_mib"] - r["before_mib"] for r in row]
            growth.append(used[-1] - used[0])
            print(
                f"{chunk:5d} " + "".join(f"{u:15.0f} / {r['compile_peak_mib']:8.0f}" for r, u in zip(row, used)),
                flush=True,
            )
        # Output grows with chips (chips x samples x images x classes floats); the rest must not.
        out_mib = (mchips[-1] - mchips[0]) * a.samples * a.images * 10 * 4 / 2**20
        mem_ok = max(growth) < 64 + 2 * out_mib
        print(
            f"growth from {mchips[0]} to {mchips[-1]} chips at a fixed chunk: "
            + ", ".join(f"{g:+.0f}" for g in growth)
            + f" MiB (the larger output alone: {out_mib:.0f} MiB)"
        )

    print("\ntargets (2-core CPU, 100 chips x 10 samples x 360 images):")
    for site, (ratio, pct) in headline.items():
        print(
            f"  {site:14s} vs loop {ratio:.2f}x (target >= 1.2x: {'met' if ratio >= 1.2 else 'MISSED'}), "
            f"{pct:.0f}% of the conv ceiling (target >= 50%: {'met' if pct >= 50 else 'MISSED'})"
        )
    if mem_ok is not None:
        print(f"  peak memory follows chunk_size, not num_chips: {'met' if mem_ok else 'MISSED'}")
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"total benchmark time {time.perf_counter() - t0:.0f} s; load average at the end {load}")


if __name__ == "__main__":
    main()
