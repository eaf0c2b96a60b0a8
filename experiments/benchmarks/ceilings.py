"""The machine's ceilings, measured in the same run as everything else: a large 3x3 conv
(``[64,56,56,128] x [3,3,128,128]``) and a large matmul (``2048^3``) in float32, bfloat16
(float32 accumulation) and int8 (int32 accumulation, ``preferred_element_type=jnp.int32``).
"""

from __future__ import annotations

from experiments.benchmarks.common import DTYPES, ceiling_op, interleaved_medians


def rows(quick: bool) -> list[dict]:
    """One row per op and dtype: G(FL)OP/s, and the speed-up over float32."""
    scale = 0.125 if quick else 1.0
    out = []
    for op in ("conv", "matmul"):
        runs, flops = {}, {}
        for dtype in DTYPES:
            runs[dtype], flops[dtype] = ceiling_op(op, dtype, scale)
        seconds = interleaved_medians(runs, 1 if quick else 5)
        rate = {d: flops[d] / seconds[d] / 1e9 for d in DTYPES}
        for dtype in DTYPES:
            unit = "GOP/s" if dtype == "int8" else "GFLOP/s"
            out.append(
                {
                    "name": f"ceiling {op} {dtype}",
                    "figures": {unit: rate[dtype], "vs float32": rate[dtype] / rate["float32"]},
                    "note": (
                        "3x3 conv [B,56,56,128]x[3,3,128,128], B=" + str(max(1, int(64 * scale)))
                        if op == "conv"
                        else f"[{max(1, int(2048 * scale))},2048]x[2048,2048]"
                    )
                    + ("" if dtype == "float32" else f", {dtype} in, {'int32' if dtype == 'int8' else 'f32'} acc"),
                }
            )
    return out
