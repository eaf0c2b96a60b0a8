"""Helpers shared by the benchmarks: timing, FLOP counts, ceilings, the chip simulator and its
Python-loop contender, peak memory.

Every time is a median after a warm-up; contenders that are compared take turns run by run
(:func:`interleaved_medians`), so that the background load of a shared machine falls on all of
them alike. Ratios within one run are the result; absolute rates are "on that run".
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from invnorm_jax.data import load_digits
from invnorm_jax.faults import Fault, FaultContext, chip_keys, sample_keys, simulate_chips
from invnorm_jax.pipeline.schedule import forward_flops

# --------------------------------------------------------------------------- timing


def median_time(fn, repeats: int) -> float:
    """Median wall time of ``fn()`` (which must block until its result is ready)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


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


def machine_line() -> str:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    return f"{cpu}, {os.cpu_count()} CPUs, jax {jax.__version__}, devices {jax.devices()}; load average {load}"


def rss_mib() -> tuple[float, float]:
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


# --------------------------------------------------------------------------- FLOPs


def xla_flops(compiled) -> float:
    analysis = compiled.cost_analysis()
    analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
    return float(analysis.get("flops", float("nan")))


def model_flops(model, x, *, xla: bool = True) -> dict:
    """FLOPs of the single-image forward: XLA's ``cost_analysis`` (compiles it; skipped with
    ``xla=False``) and the dense conv+matmul count of its jaxpr."""
    if not xla:
        return {"xla": float("nan"), "dense": forward_flops(model, x)}
    graphdef, state = nnx.split(model)

    def forward(state, x1, key):
        return nnx.merge(graphdef, state)(x1, key=key)

    compiled = jax.jit(forward).lower(state, x[:1], jax.random.key(0)).compile()
    return {"xla": xla_flops(compiled), "dense": forward_flops(model, x)}


# --------------------------------------------------------------------------- ceilings

#: Shapes of the ceiling ops: a large 3x3 conv and a large square matmul.
CONV_SHAPE = ((64, 56, 56, 128), (3, 3, 128, 128))
MATMUL_SHAPE = ((2048, 2048), (2048, 2048))
CEILING_FLOPS = 2.0 * 64 * 56 * 56 * 9 * 128 * 128  # dense count of the ceiling conv
#: dtype name -> (input dtype, accumulation dtype); int8 accumulates in int32.
DTYPES = {"float32": (jnp.float32, None), "bfloat16": (jnp.bfloat16, jnp.float32), "int8": (jnp.int8, jnp.int32)}


def ceiling_op(op: str = "conv", dtype: str = "float32", scale: float = 1.0):
    """``(run, dense flops)``: a warmed-up run of the ceiling conv or matmul in ``dtype``.

    ±1 values, exact in all three dtypes. ``scale`` < 1 shrinks the batch (conv) or the rows
    (matmul) for quick runs.
    """
    rng = np.random.default_rng(0)
    dt, acc = DTYPES[dtype]
    a_shape, b_shape = CONV_SHAPE if op == "conv" else MATMUL_SHAPE
    a_shape = (max(1, int(a_shape[0] * scale)),) + a_shape[1:]
    a = jnp.asarray(np.sign(rng.standard_normal(a_shape)), dt)
    b = jnp.asarray(np.sign(rng.standard_normal(b_shape)), dt)
    if op == "conv":
        fn = jax.jit(
            lambda a, b: jax.lax.conv_general_dilated(
                a, b, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"), preferred_element_type=acc
            )
        )
        flops = 2.0 * math.prod(a_shape[:3]) * 9 * b_shape[2] * b_shape[3]
    else:
        fn = jax.jit(lambda a, b: jax.lax.dot_general(a, b, (((1,), (0,)), ((), ())), preferred_element_type=acc))
        flops = 2.0 * a_shape[0] * a_shape[1] * b_shape[1]
    fn(a, b).block_until_ready()
    return (lambda: fn(a, b).block_until_ready()), flops


def ceiling_conv(dtype=jnp.float32, acc=None):
    """A warmed-up run of the full-size ceiling conv (``CEILING_FLOPS``) in ``dtype``."""
    name = {jnp.dtype(v[0]): k for k, v in DTYPES.items()}[jnp.dtype(dtype)]
    return ceiling_op("conv", name)[0]


# --------------------------------------------------------------------------- the simulator


def load_inputs(images: int) -> jax.Array:
    """``images`` digits test images (repeated as needed), ``[images, 8, 8, 1]``."""
    x = np.asarray(load_digits().x_test, np.float32)
    reps = -(-images // x.shape[0])
    return jnp.asarray(np.concatenate([x] * reps)[:images])


def compile_simulate(model, x, fault: Fault, *, chips, samples, chunk):
    """``simulate_chips`` traced into one jit and compiled ahead: ``(run, compile seconds)``.

    Compiling ahead makes the warm-up cost a compile rather than a whole run; ``run()`` executes
    exactly the computation ``simulate_chips`` would (the level stays a traced argument).
    """
    graphdef, state = nnx.split(model)

    def simulate(state, x, key, level):
        return simulate_chips(
            nnx.merge(graphdef, state),
            x,
            fault=fault,
            level=level,
            num_chips=chips,
            num_samples=samples,
            key=key,
            chunk_size=chunk,
        )

    args = (state, x, jax.random.key(1), jnp.float32(fault.level))
    start = time.perf_counter()
    compiled = jax.jit(simulate).lower(*args).compile()
    return (lambda: compiled(*args).block_until_ready()), time.perf_counter() - start


def python_loop(model, x, fault: Fault, *, chips, samples):
    """A Python loop over chips, each a call of one jitted ``vmap``-over-samples chip; warmed up."""
    graphdef, state = nnx.split(model)
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
