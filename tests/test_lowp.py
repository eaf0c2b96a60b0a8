"""Exact int8 / bfloat16 compute of the binary layers (invnorm_jax.nn.lowp).

The low-precision paths must give the float32 path's outputs bit for bit (exact equality, not
closeness) under every fault the paper injects into binary networks, fall back to float32 (or
refuse, when forced) where the operands are not ±1, and keep the float path's gradients.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from invnorm_jax.errors import ArgumentError
from invnorm_jax.faults import Fault, FaultContext, simulate_chips
from invnorm_jax.functional.banded import banded_conv
from invnorm_jax.models import build_model
from invnorm_jax.nn.lowp import (
    BAND_MAX_RATIO,
    ENV_VAR,
    INT8_MIN_REDUCTION,
    auto_compute,
    codes_stay_binary,
    resolve_compute,
    set_binary_compute,
)
from invnorm_jax.nn.quantized import BinaryConv, BinaryDense

METHODS = ("nn", "spindrop", "spatial_spindrop", "proposed")
# Every fault the paper injects into binary networks, and the fault-free chip.
PAPER_FAULTS = {
    "bit_flip_0": Fault("bit_flip", 0.0),
    "bit_flip_0.1": Fault("bit_flip", 0.1),
    "bit_flip_0.5": Fault("bit_flip", 0.5),
    "additive_preact": Fault("additive", 0.7, site="preactivation"),
}
ANALOGUE_FAULTS = (Fault("multiplicative", 0.2), Fault("additive", 0.1), Fault("drift", 1e5))


def _x(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape).astype(np.float32))


def _np_sign(x):
    return np.where(np.asarray(x) >= 0, 1.0, -1.0)


def _operand_dtypes(fn, *args):
    """Input dtypes of every conv / dot in ``fn``'s jaxpr (nested ones included)."""
    text = str(jax.make_jaxpr(lambda *a: fn(*a))(*args))  # a fresh function: no cached trace
    return {d for d in ("i8[", "bf16[") if d in text}


# ----------------------------------------------------------------------------- layers


LOW_MODES = ["int8", "bfloat16", "int8_band", "bfloat16_band"]


@pytest.mark.parametrize("mode", LOW_MODES)
@pytest.mark.parametrize(
    "kernel_size,shape,stride,padding",
    [((3, 3), (2, 7, 6, 70), 1, "SAME"), ((3, 3), (2, 9, 9, 8), 2, "VALID"), (5, (3, 16, 2), 2, "SAME")],
)
def test_binary_conv_low_precision_is_bit_identical_and_exact(mode, kernel_size, shape, stride, padding):
    ref = BinaryConv(shape[-1], 6, kernel_size, strides=stride, padding=padding, compute="float32", rngs=nnx.Rngs(1))
    low = BinaryConv(shape[-1], 6, kernel_size, strides=stride, padding=padding, compute=mode, rngs=nnx.Rngs(1))
    x = _x(shape)
    assert _operand_dtypes(low, x) == {"i8[" if mode.startswith("int8") else "bf16["}  # really ran in low precision
    assert not _operand_dtypes(ref, x)
    y_low, y_ref = low(x), ref(x)
    np.testing.assert_array_equal(y_low, y_ref)
    # Independent reference: float64 conv of the ±1 input with the deployed codes * scale.
    codes, scale = (np.asarray(a, np.float64) for a in ref.deployed_weights())
    nd = len(shape) - 2
    dn = ("NWC", "WIO", "NWC") if nd == 1 else ("NHWC", "HWIO", "NHWC")
    with jax.enable_x64(True):
        expected = jax.lax.conv_general_dilated(
            jnp.asarray(_np_sign(x)), jnp.asarray(codes * scale), (stride,) * nd, padding, dimension_numbers=dn
        )
    np.testing.assert_array_equal(np.asarray(y_low, np.float64), np.asarray(expected))


@pytest.mark.parametrize("mode", LOW_MODES)
def test_binary_dense_low_precision_with_bias_is_bit_identical(mode):
    x = _x((5, 3, 600), seed=2)
    outs = {}
    for compute in ("float32", mode):
        dense = BinaryDense(600, 7, use_bias=True, compute=compute, rngs=nnx.Rngs(3))
        dense.bias[...] = jnp.linspace(-1.0, 1.0, 7)
        outs[compute] = jax.jit(lambda m, x: m(x))(dense, x)
    np.testing.assert_array_equal(outs[mode], outs["float32"])
    codes, scale = (np.asarray(a, np.float64) for a in dense.deployed_weights())
    expected = _np_sign(x) @ (codes * scale) + np.linspace(-1.0, 1.0, 7)
    np.testing.assert_allclose(outs[mode], expected, rtol=1e-6)


@pytest.mark.parametrize("mode", ["int8", "int8_band"])
def test_gradients_of_the_low_precision_paths_are_the_float_paths(mode):
    x = _x((2, 6, 6, 64), seed=4)
    grads = {}
    for compute in ("float32", mode):
        conv = BinaryConv(64, 5, (3, 3), compute=compute, rngs=nnx.Rngs(5))
        grads[compute] = nnx.grad(lambda m, x: jnp.sum(jnp.sin(m(x))), argnums=(0, 1))(conv, x)
    ref_leaves = jax.tree.leaves(grads["float32"])
    assert any(float(jnp.abs(g).max()) > 0 for g in ref_leaves)
    for got, ref in zip(jax.tree.leaves(grads[mode]), ref_leaves):
        np.testing.assert_array_equal(got, ref)


# ----------------------------------------------------------------------------- the banded form

BANDED_CASES = [
    ((2, 8, 8, 3), (3, 3, 3, 4), (1, 1), "SAME"),
    ((2, 8, 8, 3), (3, 3, 3, 4), (2, 2), "SAME"),
    ((2, 7, 9, 3), (3, 3, 3, 4), (2, 1), "VALID"),
    ((2, 7, 9, 3), (5, 3, 3, 4), (1, 2), ((2, 1), (0, 3))),
    ((2, 8, 8, 16), (1, 1, 16, 5), (2, 2), "SAME"),
    ((2, 4, 4, 5), (3, 3, 5, 3), (1, 1), "SAME"),  # few rows: the rows go into the band too
    ((2, 4, 7, 3), (3, 3, 3, 2), (2, 2), "VALID"),
    ((1, 4, 4, 128), (3, 3, 128, 128), (1, 1), "SAME"),  # few rows, but too big a matrix: the row band
    ((3, 40, 2), (5, 2, 3), (1,), "SAME"),
    ((3, 40, 2), (3, 2, 3), (2,), "VALID"),
]


def _np_conv(x, k, strides, padding):
    """Direct float64 convolution (channels last, 1-D or 2-D): the independent reference."""
    x, k = np.asarray(x, np.float64), np.asarray(k, np.float64)
    pads = (
        padding
        if not isinstance(padding, str)
        else jax.lax.padtype_to_pads(x.shape[1:-1], k.shape[:-2], strides, padding)
    )
    if k.ndim == 3:
        return _np_conv(x[:, None], k[None], (1,) + tuple(strides), ((0, 0),) + tuple(pads))[:, 0]
    xp = np.pad(x, ((0, 0), *pads, (0, 0)))
    kh, kw, _, o = k.shape
    ho = (xp.shape[1] - kh) // strides[0] + 1
    wo = (xp.shape[2] - kw) // strides[1] + 1
    out = np.zeros((x.shape[0], ho, wo, o))
    for i in range(kh):
        for j in range(kw):
            patch = xp[
                :, i : i + (ho - 1) * strides[0] + 1 : strides[0], j : j + (wo - 1) * strides[1] + 1 : strides[1]
            ]
            out += patch @ k[i, j]
    return out


@pytest.mark.parametrize("x_shape,k_shape,strides,padding", BANDED_CASES)
def test_banded_conv_matches_a_float64_conv(x_shape, k_shape, strides, padding):
    rng = np.random.default_rng(sum(x_shape))
    x, k = rng.normal(size=x_shape).astype(np.float32), rng.normal(size=k_shape).astype(np.float32)
    expected = _np_conv(x, k, strides, padding)
    got = banded_conv(jnp.asarray(x), jnp.asarray(k), strides, padding)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    # ±1 operands in int8 / bfloat16: the integer sums exactly.
    xs, ks = np.sign(x) + (x == 0), np.sign(k) + (k == 0)
    exact = _np_conv(xs, ks, strides, padding)
    for dtype, acc in ((jnp.int8, jnp.int32), (jnp.bfloat16, jnp.float32)):
        y = banded_conv(jnp.asarray(xs, dtype), jnp.asarray(ks, dtype), strides, padding, preferred_element_type=acc)
        np.testing.assert_array_equal(np.asarray(y, np.float64), exact)


def test_banded_conv_refuses_a_3d_conv():
    with pytest.raises(ArgumentError, match="1-D or 2-D"):
        banded_conv(jnp.ones((1, 4, 4, 4, 2)), jnp.ones((3, 3, 3, 2, 2)))


# ----------------------------------------------------------------------------- the rule and fallbacks


def test_auto_rule_and_how_it_is_overridden(monkeypatch):
    assert auto_compute(INT8_MIN_REDUCTION, "cpu") == "int8"
    assert auto_compute(INT8_MIN_REDUCTION - 1, "cpu") == "float32"
    assert auto_compute(INT8_MIN_REDUCTION - 1, "cpu", band_ratio=BAND_MAX_RATIO) == "int8_band"
    assert auto_compute(INT8_MIN_REDUCTION - 1, "cpu", band_ratio=BAND_MAX_RATIO + 0.1) == "float32"
    assert auto_compute(INT8_MIN_REDUCTION, "cpu", band_ratio=1.0) == "int8"
    assert auto_compute(10 * INT8_MIN_REDUCTION, "gpu", band_ratio=1.0) == "float32"
    # 64 channels: an int8 conv; 16 channels on a narrow image: the int8 banded form; on a wide one: float32.
    x_big, x_narrow, x_small = _x((1, 5, 5, 64)), _x((1, 5, 5, 16)), _x((1, 5, 12, 16))  # x_small: wide
    big, small = (BinaryConv(c, 4, (3, 3), rngs=nnx.Rngs(0)) for c in (64, 16))
    on_cpu = jax.default_backend() == "cpu"
    assert _operand_dtypes(big, x_big) == ({"i8["} if on_cpu else set())
    assert _operand_dtypes(small, x_narrow) == ({"i8["} if on_cpu else set())
    assert "dot_general" in str(jax.make_jaxpr(lambda x: small(x))(x_narrow)) or not on_cpu  # the banded form
    assert not _operand_dtypes(small, x_small)
    monkeypatch.setenv(ENV_VAR, "bfloat16")  # the default of compute=None, read at trace time
    assert _operand_dtypes(small, x_small) == {"bf16["}
    assert set_binary_compute(small, "float32") == 1 and not _operand_dtypes(small, x_small)
    monkeypatch.setenv(ENV_VAR, "int4")
    with pytest.raises(ArgumentError, match=ENV_VAR):
        big(x_big)
    with pytest.raises(ArgumentError, match="compute='fp8' is unknown"):
        BinaryDense(3, 2, compute="fp8", rngs=nnx.Rngs(0))


def test_real_valued_input_falls_back_to_float32_or_refuses_when_forced():
    x = _x((2, 5, 5, 64))
    auto = BinaryConv(64, 4, (3, 3), binarize_input=False, rngs=nnx.Rngs(0))
    ref = BinaryConv(64, 4, (3, 3), binarize_input=False, compute="float32", rngs=nnx.Rngs(0))
    assert not _operand_dtypes(auto, x)
    np.testing.assert_array_equal(auto(x), ref(x))
    forced = BinaryConv(64, 4, (3, 3), binarize_input=False, compute="int8", rngs=nnx.Rngs(0))
    with pytest.raises(ArgumentError, match="binarize_input=False"):
        forced(x)


@pytest.mark.parametrize("fault", ANALOGUE_FAULTS, ids=lambda f: f.kind)
def test_analogue_weight_faults_fall_back_to_float32_or_refuse_when_forced(fault):
    assert not codes_stay_binary(FaultContext(fault, jax.random.key(0)))
    x = _x((2, 5, 5, 64))
    ctx = FaultContext(fault, jax.random.key(3))
    auto = BinaryConv(64, 4, (3, 3), rngs=nnx.Rngs(0))
    ref = BinaryConv(64, 4, (3, 3), compute="float32", rngs=nnx.Rngs(0))
    y = auto(x, faults=ctx)
    np.testing.assert_array_equal(y, ref(x, faults=ctx))
    assert not np.array_equal(y, ref(x))  # the fault did act
    with pytest.raises(ArgumentError, match="makes its codes analogue"):
        BinaryConv(64, 4, (3, 3), compute="int8", rngs=nnx.Rngs(0))(x, faults=ctx)


def test_contexts_that_do_not_say_what_they_do_fall_back():
    class Unknown:  # a fault context without a Fault: its codes might be anything
        def weights(self, fault_id, w, *, bits):
            return w * 0.5

        def preactivation(self, fault_id, x, *, key=None):
            return x

    assert not codes_stay_binary(Unknown())
    assert resolve_compute("auto", reduction=10_000, exact=codes_stay_binary(Unknown()), who="t") == "float32"
    assert all(codes_stay_binary(FaultContext(f, jax.random.key(0))) for f in PAPER_FAULTS.values())


# ----------------------------------------------------------------------------- models


def _forced(model, mode):
    assert set_binary_compute(model, mode) > 0
    return model


def _forward_outputs(name, method, mode, x, **kwargs):
    """Outputs of one forward without faults and on one chip per paper fault, jitted."""
    model = _forced(build_model(name, method, rngs=nnx.Rngs(0), **kwargs), mode)
    key = jax.random.key(1)

    @jax.jit
    def run(model, x):
        outs = [model(x, key=key)]
        for i, fault in enumerate(PAPER_FAULTS.values()):
            outs.append(model(x, key=key, faults=FaultContext(fault, jax.random.key(10 + i))))
        return outs

    return run(model, x)


@pytest.mark.parametrize("fault", PAPER_FAULTS.values(), ids=PAPER_FAULTS.keys())
def test_binary_conv_int8_is_bit_identical_under_every_paper_fault_at_the_layer(fault):
    x = _x((3, 6, 6, 64), seed=6)
    ctx = FaultContext(fault, jax.random.key(11))
    y_ref, y_clean = (BinaryConv(64, 8, (3, 3), compute="float32", rngs=nnx.Rngs(2))(x, faults=f) for f in (ctx, None))
    y = BinaryConv(64, 8, (3, 3), compute="int8", rngs=nnx.Rngs(2))(x, faults=ctx)
    np.testing.assert_array_equal(y, y_ref)
    assert fault.level == 0 or not np.array_equal(y, y_clean)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["int8", "int8_band"])
@pytest.mark.parametrize("method", METHODS)
def test_digits_model_is_bit_identical_in_int8_under_every_paper_fault(method, mode):
    x = _x((6, 8, 8, 1), seed=7)
    ref = _forward_outputs("digits", method, "float32", x)
    got = _forward_outputs("digits", method, mode, x)
    for a, b in zip(got, ref):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(ref[0], ref[2])  # 10 % bit-flips change the logits


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["bfloat16", "bfloat16_band"])
@pytest.mark.parametrize("method", METHODS)
def test_digits_model_is_bit_identical_in_bfloat16_under_every_paper_fault(method, mode):
    x = _x((6, 8, 8, 1), seed=7)
    ref = _forward_outputs("digits", method, "float32", x)
    for a, b in zip(_forward_outputs("digits", method, mode, x), ref):
        np.testing.assert_array_equal(a, b)


SMALL_RESNET = dict(in_channels=3, widths=(64, 128), blocks=(1, 1))  # every binary conv at K >= 576


@pytest.mark.slow
@pytest.mark.parametrize("fault", [*PAPER_FAULTS.values(), *ANALOGUE_FAULTS[:1]], ids=str)
def test_simulate_chips_of_a_resnet_is_bit_identical_under_auto(fault):
    """The CIFAR-shaped blocks take the int8 path under auto on CPU; simulate_chips's outputs
    are those of the float32 path, chip for chip (and fall back under analogue faults)."""
    x = _x((4, 8, 8, 3), seed=8)
    outs = {}
    for mode in ("float32", None):
        model = build_model("resnet", "proposed", rngs=nnx.Rngs(0), **SMALL_RESNET)
        set_binary_compute(model, mode)
        outs[mode] = simulate_chips(model, x, fault=fault, num_chips=2, num_samples=2, key=jax.random.key(2))
    np.testing.assert_array_equal(outs[None], outs["float32"])
    assert not np.array_equal(outs[None][0], outs[None][1]) or fault.level == 0  # chips differ


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_simulate_chips_of_digits_is_bit_identical_in_int8_and_under_auto(method):
    x = _x((5, 8, 8, 1), seed=9)
    for fault in PAPER_FAULTS.values():
        outs = [
            simulate_chips(
                _forced(build_model("digits", method, rngs=nnx.Rngs(0)), mode),
                x,
                fault=fault,
                num_chips=3,
                num_samples=2,
                key=jax.random.key(4),
            )
            for mode in ("float32", "int8", "int8_band", "auto")
        ]
        for out in outs[1:]:
            np.testing.assert_array_equal(out, outs[0])


def test_forced_int8_refuses_an_analogue_fault_in_simulate_chips():
    model = _forced(build_model("digits", "proposed", rngs=nnx.Rngs(0)), "int8")
    with pytest.raises(ArgumentError, match="makes its codes analogue"):
        simulate_chips(
            model,
            _x((2, 8, 8, 1)),
            fault=Fault("multiplicative", 0.1),
            num_chips=1,
            num_samples=1,
            key=jax.random.key(0),
        )


_FULL_OPTIMIZATION_CHECK = """
import jax, numpy as np
from flax import nnx
from invnorm_jax.faults import Fault, simulate_chips
from invnorm_jax.models import build_model
from invnorm_jax.nn.lowp import set_binary_compute
x = jax.random.normal(jax.random.key(0), (16, 8, 8, 1))
for fault in (Fault("bit_flip", 0.1), Fault("additive", 0.7, site="preactivation")):
    outs = []
    for mode in ("float32", "int8", "bfloat16", "int8_band", "bfloat16_band", "auto"):
        model = build_model("digits", "proposed", rngs=nnx.Rngs(0))
        set_binary_compute(model, mode)
        outs.append(simulate_chips(model, x, fault=fault, num_chips=2, num_samples=2, key=jax.random.key(1)))
    for out in outs[1:]:
        np.testing.assert_array_equal(out, outs[0])
print("identical")
"""


@pytest.mark.slow
def test_bit_identical_under_xla_full_optimization():
    """The test session compiles at optimization level 0 (conftest); XLA's fusions at the default
    level once made later reductions differ by an ulp between the paths: check there too."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, XLA_FLAGS=os.environ.get("XLA_FLAGS", "").replace("--xla_backend_optimization_level=0", ""))
    done = subprocess.run(
        [sys.executable, "-c", _FULL_OPTIMIZATION_CHECK], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0 and "identical" in done.stdout, done.stderr[-3000:]
