"""ResNet-18 chips on one accelerator: throughput, peak memory and chunk scaling, in a few minutes.

``python -m experiments.benchmarks.gpu [--quick]`` (or ``experiments/benchmarks/gpu.sh``, which
installs the CUDA build of JAX first). For chunks 1 / 8 / 32 / 100 chips per step, in float32
and in the low-precision path of the binary layers (int8 and bfloat16, each where the backend
compiles it), it prints chips x samples x images per second, the seconds per 100 chips, the
device's peak memory (``memory_stats()['peak_bytes_in_use']``; not available on the CPU) and
the binary convs' dense GOP/s as a share of a same-dtype matmul ceiling measured in the same
run. Every setting is checked to give the same outputs as float32 at chunk 1. It also prints
the chunk that ``simulate_chips`` picks by itself (``chunk_size=None``: as many chips as fit
half the free memory). Runs on the CPU too (``--quick``), to check the script.
"""

from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from experiments.benchmarks.common import ceiling_op
from invnorm_jax.faults import Fault, simulate_chips
from invnorm_jax.models import build_model
from invnorm_jax.nn.lowp import set_binary_compute
from invnorm_jax.pipeline.schedule import forward_flops

FAULT = Fault("bit_flip", 0.1)


def _peak_mib() -> float:
    stats = jax.local_devices()[0].memory_stats() or {}
    return stats.get("peak_bytes_in_use", float("nan")) / 2**20


def _run(model, x, *, chips, samples, chunk):
    return simulate_chips(
        model, x, fault=FAULT, num_chips=chips, num_samples=samples, key=jax.random.key(1), chunk_size=chunk
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks the script (CPU)")
    p.add_argument("--out", type=pathlib.Path, default=None, help="also write the rows as JSON here")
    args = p.parse_args(argv)
    chips, samples, images = (8, 1, 4) if args.quick else (100, 10, 256)
    chunks = (1, 8) if args.quick else (1, 8, 32, 100)
    device = jax.local_devices()[0]
    print(f"{datetime.date.today()}  jax {jax.__version__}  {jax.default_backend()}: {device.device_kind}", flush=True)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((images, 32, 32, 3)), jnp.float32)
    model = build_model("resnet", "proposed", rngs=nnx.Rngs(0))
    model.eval()
    per_image = forward_flops(model, x)
    reference = None
    rows = []
    for mode in ("float32", "int8", "bfloat16"):
        set_binary_compute(model, mode)
        ceiling, flops = ceiling_op("matmul", "int8" if mode == "int8" else mode, scale=0.125 if args.quick else 1.0)
        t = time.perf_counter()
        for _ in range(3):
            ceiling()
        ceiling_gops = 3 * flops / (time.perf_counter() - t) / 1e9
        for chunk in chunks:
            try:
                t = time.perf_counter()
                out = _run(model, x, chips=chips, samples=samples, chunk=chunk).block_until_ready()
                compile_s = time.perf_counter() - t
                t = time.perf_counter()
                out = _run(model, x, chips=chips, samples=samples, chunk=chunk).block_until_ready()
                seconds = time.perf_counter() - t
            except Exception as err:  # a dtype the backend does not compile: say so, go on
                print(f"{mode:9s} chunk {chunk:3d}: failed ({type(err).__name__}: {str(err)[:120]})", flush=True)
                continue
            out = np.asarray(out)
            reference = out if reference is None else reference
            gops = chips * samples * images * per_image / seconds / 1e9
            row = dict(
                mode=mode,
                chunk=chunk,
                chips=chips,
                samples=samples,
                images=images,
                seconds=seconds,
                first_call_s=compile_s,
                img_per_s=chips * samples * images / seconds,
                s_per_100_chips=100 * seconds / chips,
                peak_mib=_peak_mib(),
                gops=gops,
                ceiling_gops=ceiling_gops,
                identical=bool(np.array_equal(out, reference)),
            )
            rows.append(row)
            print(
                f"{mode:9s} chunk {chunk:3d}: {row['img_per_s']:10.0f} img/s  {row['s_per_100_chips']:7.2f} s/100 chips  "
                f"first call {compile_s:6.1f} s  peak {row['peak_mib']:8.0f} MiB  {gops:7.1f} GOP/s "
                f"({100 * gops / ceiling_gops:4.0f} % of the {mode} matmul ceiling {ceiling_gops:.0f})  "
                f"identical to float32 chunk 1: {row['identical']}",
                flush=True,
            )
    set_binary_compute(model, "auto")
    t = time.perf_counter()
    _run(model, x, chips=chips, samples=samples, chunk=None).block_until_ready()
    print(
        f"simulate_chips' own chunk (chunk_size=None, auto compute): {time.perf_counter() - t:.2f} s for "
        f"{chips} chips, first call included",
        flush=True,
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
