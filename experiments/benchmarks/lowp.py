"""float32 vs int8 vs bfloat16 compute of the binary layers, as convs or banded matmuls, in the chip simulator.

Run (about 5 minutes on a quiet 2-core CPU; results in docs/lowp.md)::

    python experiments/benchmarks/lowp.py            # ResNet-18 at CIFAR shape and the digits model
    python experiments/benchmarks/lowp.py --quick    # a smoke run of the script
    python experiments/benchmarks/lowp.py --shapes   # one binary conv per shape: the auto rule's data

What it measures, all in one process (ratios are fair, absolute rates depend on the load):

1. ``simulate_chips`` of the binary ResNet-18 (``build_model("resnet", "proposed")``, CIFAR
   shape ``[32, 32, 3]``, random weights) and of the digits model, 10 % weight bit-flips, with
   every binary layer set to each of :data:`MODES` (:func:`invnorm_jax.nn.lowp.set_binary_compute`:
   float32, int8 and bfloat16 convs, the int8 banded form, and ``auto``, the measured rule);
   the outputs are checked to be bit-identical to float32's.
2. The binary layers alone: every ``BinaryConv`` of the ResNet-18 on inputs of its shape, with
   a batch of samples x images (one chip's batch), in int8 and float32, beside the int8 and
   float32 conv ceilings (``[64, 56, 56, 128] x [3, 3, 128, 128]``, as experiments/benchmarks/chips.py).

Every time is the median of 3 runs after a warm-up (the ahead-of-time compile, or one call);
contenders that are compared take turns run by run. :func:`rows` returns the table.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # the repo root
from experiments.benchmarks.common import CEILING_FLOPS, ceiling_conv, interleaved_medians, machine_line  # noqa: E402
from invnorm_jax.faults import Fault, simulate_chips  # noqa: E402
from invnorm_jax.functional.banded import banded_flops_ratio  # noqa: E402
from invnorm_jax.models import build_model  # noqa: E402
from invnorm_jax.nn.lowp import auto_compute, reduction_length, set_binary_compute  # noqa: E402
from invnorm_jax.nn.quantized import BinaryConv  # noqa: E402
from invnorm_jax.pipeline.schedule import forward_flops  # noqa: E402

MODES = ("float32", "int8", "bfloat16", "int8_band", "auto")
#: The forms timed per layer shape (``--shapes``): every exact one.
SHAPE_MODES = ("float32", "int8", "bfloat16", "int8_band", "bfloat16_band")
FAULT = Fault("bit_flip", 0.1)
REPEATS = 3
#: name -> (build_model name, image shape, (chips, samples, images), quick sizes)
WORKLOADS = {
    "resnet18": ("resnet", (32, 32, 3), (4, 2, 32), (1, 1, 8)),
    "digits": ("digits", (8, 8, 1), (10, 10, 360), (2, 2, 64)),
}


def _model(name: str, mode: str):
    model = build_model(name, "proposed", rngs=nnx.Rngs(0))
    set_binary_compute(model, mode)
    return model


def _compile_simulate(model, x, chips: int, samples: int):
    graphdef, state = nnx.split(model)

    def simulate(state, x, key, level):
        return simulate_chips(
            nnx.merge(graphdef, state), x, fault=FAULT, level=level, num_chips=chips, num_samples=samples, key=key
        )

    args = (state, x, jax.random.key(1), jnp.float32(FAULT.level))
    start = time.perf_counter()
    compiled = jax.jit(simulate).lower(*args).compile()
    return (lambda: compiled(*args).block_until_ready()), time.perf_counter() - start, compiled(*args)


def simulate_rows(workload: str, quick: bool) -> list[dict]:
    """One row per compute mode: ``simulate_chips`` time, throughput and identity with float32."""
    name, shape, full, small = WORKLOADS[workload]
    chips, samples, images = small if quick else full
    x = jnp.asarray(np.random.default_rng(0).standard_normal((images, *shape)), jnp.float32)
    runs, compile_s, outputs = {}, {}, {}
    for mode in MODES:
        runs[mode], compile_s[mode], outputs[mode] = _compile_simulate(_model(name, mode), x, chips, samples)
    runs["int8 ceiling"] = ceiling_conv(jnp.int8, jnp.int32)
    seconds = interleaved_medians(runs, REPEATS)
    ceiling = CEILING_FLOPS / seconds.pop("int8 ceiling") / 1e9
    model = _model(name, None)
    flops = forward_flops(model, np.zeros((1, *shape), np.float32)) * chips * samples * images
    convs, in_shapes, _ = _binary_layers(model, shape, 1)
    auto = sorted(
        {
            auto_compute(reduction_length(c.kernel.shape), band_ratio=banded_flops_ratio(s[1:-1], c.kernel.shape[:-2]))
            for c, s in zip(convs, in_shapes)
        }
    )
    return [
        dict(
            table="simulate",
            workload=workload,
            mode=mode,
            chips=chips,
            samples=samples,
            images=images,
            seconds=seconds[mode],
            compile_s=compile_s[mode],
            img_per_s=chips * samples * images / seconds[mode],
            speedup=seconds["float32"] / seconds[mode],
            gops=flops / seconds[mode] / 1e9,
            int8_ceiling_gops=ceiling,
            auto="/".join(auto),
            identical=bool(np.array_equal(outputs[mode], outputs["float32"])),
        )
        for mode in MODES
    ]


def _binary_layers(model, shape, batch: int):
    """``(layers, input shapes, dense FLOPs)`` of every ``BinaryConv`` in a BinaryResNet."""
    layers, shapes, flops, (h, w, _) = [], [], 0.0, shape
    for block in model.blocks:
        for conv in (block.conv1, block.conv2):
            kh, kw, cin, cout = conv.kernel.shape
            layers.append(conv)
            shapes.append((batch, h, w, cin))
            h, w = -(-h // conv.strides[0]), -(-w // conv.strides[1])
            flops += 2.0 * batch * h * w * kh * kw * cin * cout
    return layers, shapes, flops


def layer_rows(quick: bool) -> list[dict]:
    """The ResNet-18's binary convs alone (int8 and float32) against the int8 and float32 ceilings."""
    name, shape, full, small = WORKLOADS["resnet18"]
    _, samples, images = small if quick else full
    runs, flops = {}, 0.0
    rng = np.random.default_rng(1)
    for mode in ("float32", "int8"):
        layers, shapes, flops = _binary_layers(_model(name, mode), shape, samples * images)
        graphdef, state = nnx.split(nnx.List(layers))
        xs = [jnp.asarray(rng.standard_normal(s), jnp.float32) for s in shapes]
        fn = jax.jit(lambda state, xs, g=graphdef: [m(x) for m, x in zip(nnx.merge(g, state), xs)])
        jax.block_until_ready(fn(state, xs))
        runs[mode] = lambda fn=fn, state=state, xs=xs: jax.block_until_ready(fn(state, xs))
    runs["float32 ceiling"] = ceiling_conv()
    runs["int8 ceiling"] = ceiling_conv(jnp.int8, jnp.int32)
    seconds = interleaved_medians(runs, REPEATS)
    ceil = {m: CEILING_FLOPS / seconds[f"{m} ceiling"] / 1e9 for m in ("float32", "int8")}
    return [
        dict(
            table="binary layers",
            workload="resnet18",
            mode=mode,
            batch=samples * images,
            seconds=seconds[mode],
            gops=flops / seconds[mode] / 1e9,
            ceiling_gops=ceil[mode],
            int8_ceiling_gops=ceil["int8"],
            pct_of_int8_ceiling=100 * flops / seconds[mode] / 1e9 / ceil["int8"],
            pct_of_own_ceiling=100 * flops / seconds[mode] / 1e9 / ceil[mode],
        )
        for mode in ("float32", "int8")
    ]


#: (batch, size, C_in, C_out, stride) of the 3x3 binary convs behind the auto rule: ResNet-18's
#: (batch 2 samples x 64 images) and the digits model's (one chip: 10 samples x 360 images).
SHAPES = [
    (128, 32, 64, 64, 1),
    (128, 32, 64, 128, 2),
    (128, 16, 128, 128, 1),
    (128, 16, 128, 256, 2),
    (128, 8, 256, 256, 1),
    (128, 8, 256, 512, 2),
    (128, 4, 512, 512, 1),
    (3600, 8, 16, 16, 1),
    (3600, 8, 16, 32, 2),
    (3600, 4, 32, 32, 1),
]


def shape_rows() -> list[dict]:
    """One ``BinaryConv`` per shape of :data:`SHAPES` in each mode, taking turns: GOP/s."""
    out = []
    for batch, size, cin, cout, stride in SHAPES:
        x = jnp.asarray(np.random.default_rng(2).standard_normal((batch, size, size, cin)), jnp.float32)
        runs, outputs = {}, {}
        for mode in SHAPE_MODES:
            graphdef, state = nnx.split(BinaryConv(cin, cout, (3, 3), strides=stride, compute=mode, rngs=nnx.Rngs(0)))
            fn = jax.jit(lambda s, x, g=graphdef: nnx.merge(g, s)(x))
            outputs[mode] = fn(state, x).block_until_ready()
            runs[mode] = lambda fn=fn, s=state, x=x: fn(s, x).block_until_ready()
        seconds = interleaved_medians(runs, REPEATS)
        flops = 2.0 * batch * (-(-size // stride)) ** 2 * 9 * cin * cout
        out.append(
            dict(
                table="shapes",
                shape=f"[{batch},{size},{size},{cin}]->{cout}/s{stride}",
                reduction=9 * cin,
                auto=auto_compute(9 * cin, band_ratio=banded_flops_ratio((size, size), (3, 3))),
                fastest=min(seconds, key=seconds.get),
                identical=all(np.array_equal(o, outputs["float32"]) for o in outputs.values()),
                **{f"{m}_gops": flops / seconds[m] / 1e9 for m in SHAPE_MODES},
            )
        )
    return out


def rows(quick: bool) -> list[dict]:
    """The rows for ``python -m experiments.benchmarks``: ``{"name", "figures", "note"}`` each."""
    out = []
    for r in table_rows(quick):
        if r["table"] == "simulate":
            out.append(
                dict(
                    name=f"lowp {r['workload']} {r['mode']}",
                    note=f"auto picks {r['auto']}",
                    figures={
                        "img/s": r["img_per_s"],
                        "x float32": r["speedup"],
                        "GOP/s": r["gops"],
                        "identical": float(r["identical"]),
                    },
                )
            )
        else:
            out.append(
                dict(
                    name=f"lowp resnet18 binary convs {r['mode']}",
                    note="the 16 binary convs alone",
                    figures={"GOP/s": r["gops"], "% int8 ceiling": r["pct_of_int8_ceiling"]},
                )
            )
    return out


def table_rows(quick: bool) -> list[dict]:
    """Every row of the benchmark: simulate_chips per workload and mode, then the binary layers."""
    return [*simulate_rows("resnet18", quick), *simulate_rows("digits", quick), *layer_rows(quick)]


def format_table(table: list[dict]) -> str:
    sim, layers = ([r for r in table if r["table"] == t] for t in ("simulate", "binary layers"))
    lines = []
    if sim:
        lines += [
            f"{'workload':9s} {'mode':13s} {'c x s x img':>13s} {'s/run':>7s} {'compile s':>9s} {'img/s':>8s} "
            f"{'vs f32':>6s} {'GOP/s':>6s} {'int8 ceil':>9s} {'auto':>13s} identical"
        ]
    for r in sim:
        lines.append(
            f"{r['workload']:9s} {r['mode']:13s} {r['chips']:>4d}x{r['samples']:>2d}x{r['images']:>4d} "
            f"{r['seconds']:7.2f} {r['compile_s']:9.1f} {r['img_per_s']:8.0f} {r['speedup']:5.2f}x "
            f"{r['gops']:6.1f} {r['int8_ceiling_gops']:9.1f} {r['auto']:>13s} {r['identical']}"
        )
    if layers:
        lines += [
            "",
            "ResNet-18 binary convs alone (16 layers, batch = samples x images):",
            f"{'mode':9s} {'s/run':>7s} {'GOP/s':>7s} {'own ceiling':>11s} {'% own':>6s} {'int8 ceil':>9s} "
            f"{'% int8 ceiling':>14s}",
        ]
    for r in layers:
        lines.append(
            f"{r['mode']:9s} {r['seconds']:7.3f} {r['gops']:7.1f} {r['ceiling_gops']:11.1f} "
            f"{r['pct_of_own_ceiling']:5.0f}% {r['int8_ceiling_gops']:9.1f} {r['pct_of_int8_ceiling']:13.0f}%"
        )
    shapes = [r for r in table if r["table"] == "shapes"]
    if shapes:
        lines += [
            "",
            "one BinaryConv 3x3 per shape (dense GOP/s of the conv; the banded forms do W/3 times the work):",
            f"{'shape':28s} {'K':>5s} "
            + " ".join(f"{m:>13s}" for m in SHAPE_MODES)
            + f" {'auto':>13s} {'fastest':>13s} identical",
        ]
        lines += [
            f"{r['shape']:28s} {r['reduction']:5d} "
            + " ".join(f"{r[m + '_gops']:13.1f}" for m in SHAPE_MODES)
            + f" {r['auto']:>13s} {r['fastest']:>13s} {r['identical']}"
            for r in shapes
        ]
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run of the script")
    p.add_argument("--shapes", action="store_true", help="only the per-shape table behind the auto rule")
    a = p.parse_args(argv)
    start = time.perf_counter()
    print(f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; {machine_line()}")
    print(f"fault {FAULT}; median of {REPEATS} runs after a warm-up, contenders taking turns", flush=True)
    print(format_table(shape_rows() if a.shapes else table_rows(a.quick)))
    print(
        f"total {time.perf_counter() - start:.0f} s; load average at the end "
        + ", ".join(f"{v:.1f}" for v in os.getloadavg())
    )


if __name__ == "__main__":
    main()
