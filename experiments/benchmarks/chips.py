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
import dataclasses
import json
import math
import os
import platform
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from invnorm_jax.data import load_digits
from invnorm_jax.faults import DEFAULT_CHUNK, Fault, FaultContext, chip_keys, sample_keys, simulate_chips
from invnorm_jax.models import build_model

FAULTS = {
    "weights": Fault("bit_flip", 0.05),
    "preactivation": Fault("additive", 0.5, site="preactivation"),
}


# --------------------------------------------------------------------------- helpers


def median_time(fn, repeats: int) -> float:
    """Median wall time of ``fn()`` (which must block until its result is ready)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def xla_flops(compiled) -> float:
    analysis = compiled.cost_analysis()
    analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
    return float(analysis.get("flops", float("nan")))


def _subjaxprs(value):
    if isinstance(value, jax.extend.core.ClosedJaxpr):
        yield value.jaxpr
    elif isinstance(value, jax.extend.core.Jaxpr):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _subjaxprs(v)


def dense_flops(jaxpr) -> float:
    """2 x multiply-adds of every conv and matmul in ``jaxpr`` (padding taps included)."""
    total = 0.0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "conv_general_dilated":
            out = eqn.outvars[0].aval.shape
            rhs = eqn.invars[1].aval.shape
            spec = eqn.params["dimension_numbers"].rhs_spec  # (out feature, in feature, *spatial)
            taps = math.prod(rhs[d] for d in spec[2:])
            total += 2.0 * math.prod(out) * taps * rhs[spec[1]]
        elif eqn.primitive.name == "dot_general":
            (lhs_contract, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            total += 2.0 * math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[d] for d in lhs_contract)
        for value in eqn.params.values():
            for sub in _subjaxprs(value):
                total += dense_flops(sub)
    return total


def load_inputs(images: int) -> jax.Array:
    x = np.asarray(load_digits().x_test, np.float32)
    reps = -(-images // x.shape[0])
    return jnp.asarray(np.concatenate([x] * reps)[:images])


def machine_line() -> str:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    return f"{cpu}, {os.cpu_count()} CPUs, jax {jax.__version__}, devices {jax.devices()}; load average {load}"


# --------------------------------------------------------------------------- measurements


def model_flops(model, x) -> dict:
    graphdef, state = nnx.split(model)
    key = jax.random.key(0)

    def forward(state, x1, key):
        return nnx.merge(graphdef, state)(x1, key=key)

    compiled = jax.jit(forward).lower(state, x[:1], key).compile()
    jaxpr = jax.make_jaxpr(forward)(state, x[:1], key).jaxpr
    return {"xla": xla_flops(compiled), "dense": dense_flops(jaxpr)}


CEILING_FLOPS = 2.0 * 64 * 56 * 56 * 9 * 128 * 128  # dense count of the ceiling conv


def ceiling_conv(dtype=jnp.float32, acc=None):
    """A warmed-up run of the large 3x3 conv ``[64,56,56,128] x [3,3,128,128]`` in ``dtype``."""
    rng = np.random.default_rng(0)
    xs = jnp.asarray(np.sign(rng.standard_normal((64, 56, 56, 128))), dtype)
    ks = jnp.asarray(np.sign(rng.standard_normal((3, 3, 128, 128))), dtype)
    conv = jax.jit(lambda a, b: jax.lax.conv_general_dilated(
        a, b, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"), preferred_element_type=acc))
    conv(xs, ks).block_until_ready()
    return lambda: conv(xs, ks).block_until_ready()


def conv_ceiling(repeats: int) -> dict:
    """G(FL)OP/s of the ceiling conv in float32, bf16 and int8 (±1 values: exact in all three)."""
    out = {}
    for name, dtype, acc in (("float32", jnp.float32, None), ("bfloat16", jnp.bfloat16, jnp.float32),
                             ("int8", jnp.int8, jnp.int32)):
        out[name] = CEILING_FLOPS / median_time(ceiling_conv(dtype, acc), repeats) / 1e9
    return out


def compile_simulate(model, x, site, *, chips, samples, chunk):
    """``simulate_chips`` traced into one jit and compiled ahead: ``(run, compile seconds)``.

    Compiling ahead makes the warm-up cost a compile rather than a whole run; ``run()`` executes
    exactly the computation ``simulate_chips`` would (the level stays a traced argument).
    """
    graphdef, state = nnx.split(model)
    fault = FAULTS[site]

    def simulate(state, x, key, level):
        return simulate_chips(nnx.merge(graphdef, state), x, fault=fault, level=level, num_chips=chips,
                              num_samples=samples, key=key, chunk_size=chunk)

    args = (state, x, jax.random.key(1), jnp.float32(fault.level))
    start = time.perf_counter()
    compiled = jax.jit(simulate).lower(*args).compile()
    return (lambda: compiled(*args).block_until_ready()), time.perf_counter() - start


def python_loop(model, x, site, *, chips, samples):
    """A Python loop over chips, each a call of one jitted ``vmap``-over-samples chip; warmed up."""
    graphdef, state = nnx.split(model)
    fault = FAULTS[site]
    static_fault = dataclasses.replace(fault, level=0.0)  # as simulate_chips: the level is traced

    @jax.jit
    def one_chip(state, x, chip_key, samples_keys, level):
        faults = FaultContext(static_fault, chip_key, level)
        return jax.vmap(lambda k: nnx.merge(graphdef, state)(x, key=k, faults=faults))(samples_keys)

    key = jax.random.key(1)
    chip_list = list(chip_keys(key, chips))
    sample_list = sample_keys(key, samples)
    level = jnp.float32(fault.level)
    one_chip(state, x, chip_list[0], sample_list, level).block_until_ready()

    def loop():
        jax.block_until_ready([one_chip(state, x, c, sample_list, level) for c in chip_list])

    return loop


def interleaved_medians(runs: dict, repeats: int) -> dict:
    """Median seconds of each ``runs[name]()``, taking turns, so that every contender sees the
    same background load (this machine is shared)."""
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def _rss_mib() -> tuple[float, float]:
    """(current RSS, peak RSS) of this process in MiB, from /proc/self/status.

    The peak is VmHWM, not ``getrusage().ru_maxrss``: a child's ru_maxrss starts at its parent's
    peak (Linux carries the pre-exec high-water mark over), which would hide the child's own.
    """
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def peak_memory_child(site: str, chunk: int, chips: int, samples: int, images: int) -> None:
    """(subprocess) Peak RSS of compiling, then of running, one simulate_chips; a JSON line.

    Writing 5 to /proc/self/clear_refs resets the peak (Linux >= 4.0), so that the run's peak
    is not hidden by the import's or the compiler's.
    """
    model = build_model("digits", "proposed", rngs=nnx.Rngs(0))
    run, _ = compile_simulate(model, load_inputs(images), site, chips=chips, samples=samples, chunk=chunk)
    _, compile_peak = _rss_mib()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before, _ = _rss_mib()
    run()
    _, peak = _rss_mib()
    print(json.dumps({"compile_peak_mib": compile_peak, "before_mib": before, "peak_mib": peak}))


def peak_memory(site, chunk, chips, samples, images) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--_memory-child", site, str(chunk), str(chips),
           str(samples), str(images)]
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
    print(f"workload: digits BinaryResNet (proposed, untrained), {a.chips} chips x {a.samples} samples x "
          f"{a.images} images; sweep on {a.sweep_chips} chips; median of {a.repeats}")
    model = build_model("digits", "proposed", rngs=nnx.Rngs(0))
    x = load_inputs(a.images)

    flops = model_flops(model, x)
    print(f"\nFLOPs per image (one chip, one MC sample): XLA cost_analysis {flops['xla'] / 1e6:.3f} M, "
          f"conv+matmul dense count {flops['dense'] / 1e6:.3f} M")
    ceiling = conv_ceiling(a.repeats)
    print("conv ceiling [64,56,56,128]x[3,3,128,128]: "
          + ", ".join(f"{k} {v:.1f} G{'OP' if k == 'int8' else 'FLOP'}/s" for k, v in ceiling.items())
          + "\n(the float32 ceiling is measured again in turn with every timed table below: the % columns use that)")
    ceiling_run = ceiling_conv()

    def gflops(rate):
        return flops["dense"] * rate / 1e9

    n_sweep, n_full = a.sweep_chips * a.samples * a.images, a.chips * a.samples * a.images
    print(f"\nchunk sweep on {a.sweep_chips} chips (chips*samples*images per second; the chunk sizes take turns):")
    print(f"{'site':14s} {'chunk':>5s} {'img/s':>9s} {'s/run':>7s} {'compile s':>9s} {'GFLOP/s':>8s} "
          f"{'ceiling':>7s} {'% ceiling':>9s}")
    best = {}
    for site in FAULTS:
        runs, compile_s = {"ceiling": ceiling_run}, {}
        for chunk in chunks:
            runs[chunk], compile_s[chunk] = compile_simulate(model, x, site, chips=a.sweep_chips, samples=a.samples,
                                                             chunk=chunk)
        seconds = interleaved_medians(runs, a.repeats)
        del runs
        roof = CEILING_FLOPS / seconds.pop("ceiling") / 1e9
        for chunk in chunks:
            rate = n_sweep / seconds[chunk]
            print(f"{site:14s} {chunk:5d} {rate:9.0f} {seconds[chunk]:7.2f} {compile_s[chunk]:9.1f} "
                  f"{gflops(rate):8.1f} {roof:7.1f} {100 * gflops(rate) / roof:8.1f}%", flush=True)
        best[site] = min(chunks, key=seconds.get)
    print(f"fastest chunk per site: {best}   (DEFAULT_CHUNK is {DEFAULT_CHUNK})")

    print(f"\n{a.chips} chips x {a.samples} samples x {a.images} images: simulate_chips at the fastest chunk vs a "
          "Python loop of one jitted chip (taking turns):")
    print(f"{'site':14s} {'chunk':>5s} {'simulate img/s':>14s} {'loop img/s':>10s} {'ratio':>6s} {'GFLOP/s':>8s} "
          f"{'ceiling':>7s} {'% ceiling':>9s}")
    headline = {}
    for site, chunk in best.items():
        sim, compile_s = compile_simulate(model, x, site, chips=a.chips, samples=a.samples, chunk=chunk)
        loop = python_loop(model, x, site, chips=a.chips, samples=a.samples)
        seconds = interleaved_medians({"simulate": sim, "loop": loop, "ceiling": ceiling_run}, a.repeats)
        rate, loop_rate = n_full / seconds["simulate"], n_full / seconds["loop"]
        roof = CEILING_FLOPS / seconds["ceiling"] / 1e9
        pct = 100 * gflops(rate) / roof
        headline[site] = (rate / loop_rate, pct)
        print(f"{site:14s} {chunk:5d} {rate:14.0f} {loop_rate:10.0f} {rate / loop_rate:5.2f}x {gflops(rate):8.1f} "
              f"{roof:7.1f} {pct:8.1f}%", flush=True)

    mem_ok = None
    if not a.skip_memory:
        mchips = [int(c) for c in a.memory_chips.split(",")]
        mchunks = [int(c) for c in a.memory_chunks.split(",")]
        print(f"\npeak RSS (MiB) of one simulate_chips run in a fresh process, site={a.memory_site}, {a.samples} "
              f"samples x {a.images} images. run = peak during the run minus RSS before it (peak reset after "
              "compiling); compile = peak while compiling:")
        print(f"{'chunk':>5s} " + "".join(f"{f'{c} chips: run / compile':>26s}" for c in mchips))
        growth = []
        for chunk in mchunks:
            row = [peak_memory(a.memory_site, chunk, c, a.samples, a.images) for c in mchips]
            used = [r["peak_mib"] - r["before_mib"] for r in row]
            growth.append(used[-1] - used[0])
            print(f"{chunk:5d} " + "".join(f"{u:15.0f} / {r['compile_peak_mib']:8.0f}" for r, u in zip(row, used)),
                  flush=True)
        # Output grows with chips (chips x samples x images x classes floats); the rest must not.
        out_mib = (mchips[-1] - mchips[0]) * a.samples * a.images * 10 * 4 / 2**20
        mem_ok = max(growth) < 64 + 2 * out_mib
        print(f"growth from {mchips[0]} to {mchips[-1]} chips at a fixed chunk: "
              + ", ".join(f"{g:+.0f}" for g in growth) + f" MiB (the larger output alone: {out_mib:.0f} MiB)")

    print("\ntargets (2-core CPU, 100 chips x 10 samples x 360 images):")
    for site, (ratio, pct) in headline.items():
        print(f"  {site:14s} vs loop {ratio:.2f}x (target >= 1.2x: {'met' if ratio >= 1.2 else 'MISSED'}), "
              f"{pct:.0f}% of the conv ceiling (target >= 50%: {'met' if pct >= 50 else 'MISSED'})")
    if mem_ok is not None:
        print(f"  peak memory follows chunk_size, not num_chips: {'met' if mem_ok else 'MISSED'}")
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"total benchmark time {time.perf_counter() - t0:.0f} s; load average at the end {load}")


if __name__ == "__main__":
    main()
