"""Property-based tests of the numerical core: the inverted norm, affine dropout, the quantizers
and the fault models.

Hypothesis draws the static configuration of a call (shape and rank, dtype, bit width, axis,
groups, mode, fault kind) from small fixed sets, and the seeds of the values and PRNG keys, so
that every failure reproduces. The functions under test are jitted, so each configuration
compiles once and then runs on every kind of value: random, constant (zero variance) and
offset (``|mean| >> std``), each at magnitude 1, 1e30 and 1e-30. Tolerances follow from the
dtypes' unit roundoff and the normalization's epsilon; the references are float64 numpy.
"""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from invnorm_jax.faults import models as fm
from invnorm_jax.faults.context import Fault, FaultContext
from invnorm_jax.functional import (
    affine_dropout,
    fake_quant,
    inverted_norm,
    irnet_binarize_weights,
    libra_pb,
    normalize,
    pact,
    quantize_symmetric,
    sign,
)
from invnorm_jax.nn import InvertedNorm

FEW = settings(max_examples=8, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
SOME = settings(FEW, max_examples=12)

F32, BF16 = jnp.float32, jnp.bfloat16
DTYPES = (F32, BF16)
#: Unit roundoff of each dtype: the largest relative error of rounding to it.
UNIT = {jnp.dtype(F32): 2.0**-24, jnp.dtype(BF16): 2.0**-8}
U32 = UNIT[jnp.dtype(F32)]  # the statistics and quantization codes are computed in float32
#: Every kind of value at every magnitude: what each compiled configuration is run on.
VALUES = tuple(itertools.product(("normal", "constant", "offset"), (1.0, 1e30, 1e-30)))
#: Ranks 1-4 (fault models, quantizers) and 2-4 (normalization: [batch, ..., channels]).
ANY_SHAPES = ((6,), (3, 4), (2, 3, 4), (2, 1, 3, 4))

seeds = st.integers(0, 2**32 - 1)
dtypes = st.sampled_from(DTYPES)


def f64(a) -> np.ndarray:
    """The exact values of a float32 / bfloat16 / integer array, in float64 (on the host)."""
    return np.asarray(a).astype(np.float64)


def unit(dtype) -> float:
    return UNIT[jnp.dtype(dtype)]


def make(values: np.ndarray, dtype) -> jax.Array:
    """float64 values rounded to ``dtype`` on the host (no device op to compile)."""
    return jnp.asarray(np.asarray(values, np.float64).astype(jnp.dtype(dtype)))


def sample(rng: np.random.Generator, shape, kind: str, magnitude: float) -> np.ndarray:
    """Values of one kind: normal, constant (zero variance), offset (|mean| >> std)."""
    if kind == "constant":
        return np.full(shape, rng.normal() * magnitude)
    if kind == "offset":
        return (100.0 + rng.normal(size=shape)) * magnitude
    return rng.normal(size=shape) * magnitude


def by_group(a: np.ndarray, num_groups) -> np.ndarray:
    """``[batch, ..., channels]`` -> ``[batch, groups, elements of the group]``."""
    groups = 1 if num_groups is None else num_groups
    b, c = a.shape[0], a.shape[-1]
    return a.reshape(b, -1, groups, c // groups).transpose(0, 2, 1, 3).reshape(b, groups, -1)


def assert_standardized(out, y64: np.ndarray, num_groups, eps: float):
    """``out`` has zero mean and variance ``v / (v + eps)`` in every group, ``v`` being the
    float64 variance of ``y64`` (what the normalization saw), and obeys |z| <= sqrt(n - 1).

    Tolerance: the output dtype's roundoff, plus float32's roundoff times how far the values
    lie from their spread (``max|y| / std``: the error of forming ``y`` in float32 at all).
    """
    o = by_group(f64(out), num_groups)
    y = by_group(y64, num_groups)
    v = y.var(axis=-1)
    kappa = np.abs(y).max(axis=-1) / np.sqrt(v + eps)
    tol = 4 * unit(out.dtype) + 64 * U32 * (1.0 + kappa)
    n = o.shape[-1]
    np.testing.assert_array_less(np.abs(o.mean(axis=-1)), tol)
    np.testing.assert_array_less(np.abs(o.var(axis=-1) - v / (v + eps)), tol)
    np.testing.assert_array_less(np.abs(o).max(axis=-1), np.sqrt(n - 1) * (1 + tol) + tol)


# ====================================================================== inverted norm

jit_inverted_norm = jax.jit(inverted_norm, static_argnames=("num_groups", "dtype"))

#: (shape, dtype, num_groups, per-example affine, output dtype): ranks 2-4, both dtypes, per
#: instance and per group (down to one channel a group), every output-dtype rule.
NORM_CONFIGS = (
    ((3, 8), F32, None, False, None),
    ((3, 8), BF16, 4, True, None),
    ((2, 3, 4), BF16, None, False, F32),
    ((2, 3, 4), F32, 2, True, BF16),
    ((2, 2, 3, 8), F32, 8, False, None),
    ((2, 2, 3, 8), BF16, 2, False, None),
)


def affine_shape(shape, per_example):
    return (shape[0], shape[-1]) if per_example else (shape[-1],)


@SOME
@given(st.sampled_from(NORM_CONFIGS), st.sampled_from([1e-5, 1e-2]), seeds)
def test_inverted_norm_standardizes_every_instance_or_group(config, eps, seed):
    """Finite, shape kept, dtype ``x``'s (or ``dtype=``), zero mean and unit variance (less
    eps's share) per instance or group, for random, constant, offset, huge (1e30) and tiny
    (1e-30) inputs, with the identity affine or a random one (per channel or per example)."""
    shape, dtype, num_groups, per_example, out_dtype = config
    rng = np.random.default_rng(seed)
    for (kind, magnitude), identity in itertools.product(VALUES, (True, False)):
        x = make(sample(rng, shape, kind, magnitude), dtype)
        a_shape = affine_shape(shape, per_example)
        if identity:
            scale, bias = make(np.ones(a_shape), dtype), make(np.zeros(a_shape), dtype)
        else:
            scale, bias = make(rng.normal(1.0, 0.3, a_shape), dtype), make(rng.normal(0.0, 0.3, a_shape), dtype)
        out = jit_inverted_norm(x, scale, bias, num_groups=num_groups, eps=eps, dtype=out_dtype)
        assert out.shape == x.shape
        assert out.dtype == (x.dtype if out_dtype is None else jnp.dtype(out_dtype))
        assert np.all(np.isfinite(f64(out)))
        s, b = f64(scale), f64(bias)
        if per_example:  # (batch, channels) -> (batch, 1, ..., 1, channels)
            s = s.reshape(s.shape[:1] + (1,) * (x.ndim - 2) + s.shape[1:])
            b = b.reshape(s.shape)
        assert_standardized(out, s * f64(x) + b, num_groups, eps)


@FEW
@given(st.sampled_from(NORM_CONFIGS), seeds)
def test_constant_input_normalizes_to_exactly_zero(config, seed):
    """A constant instance has no spread: it normalizes to 0, never to NaN or to rounding noise
    amplified by 1/sqrt(eps) (the float mean of n equal numbers need not equal them)."""
    shape, dtype, num_groups, per_example, out_dtype = config
    rng = np.random.default_rng(seed)
    ones, zeros = (
        make(np.ones(affine_shape(shape, per_example)), dtype),
        make(np.zeros(affine_shape(shape, per_example)), dtype),
    )
    for magnitude in (1.0, 1e4, 1e30, 1e-30):
        x = make(np.full(shape, rng.normal() * magnitude), dtype)
        out = jit_inverted_norm(x, ones, zeros, num_groups=num_groups, eps=1e-5, dtype=out_dtype)
        assert np.all(np.isfinite(f64(out)))
        np.testing.assert_array_equal(f64(out), 0.0)


@FEW
@given(seeds)
def test_vmapped_normalization_equals_each_slice_alone_and_keeps_its_branch(seed):
    """Under vmap (the simulator's MC samples) the rare rescale is decided for the whole batch,
    so one sample of magnitude 1e25 takes every sample down the rescaled path: their values must
    be exactly those each gets alone, and the vmapped program keeps a branch, not both paths."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(4, 3, 5, 6)).astype(np.float32)
    x[int(rng.integers(4))] *= 1e25
    one = jax.jit(lambda y: normalize(y, eps=1e-5))
    together = jax.jit(jax.vmap(one))(jnp.asarray(x))
    for i in range(x.shape[0]):
        np.testing.assert_array_equal(together[i], one(jnp.asarray(x[i])))
    assert "cond[" in str(jax.make_jaxpr(jax.vmap(one))(jnp.asarray(x)))


@functools.partial(jax.jit, static_argnums=0)
def _layer_outputs(graphdef, state, x, key):
    layer = nnx.merge(graphdef, state)
    return (
        layer(x, key=key),
        normalize(x, num_groups=layer.num_groups),
        layer(x, deterministic=True),
        inverted_norm(x, layer.scale[...], layer.bias[...], num_groups=layer.num_groups),
    )


#: (shape, dtype, num_groups, mode, param_dtype)
LAYER_CONFIGS = (((3, 8), F32, None, "vector", F32), ((2, 3, 4), BF16, 2, "element", BF16))


@FEW
@given(st.sampled_from(LAYER_CONFIGS), seeds)
def test_inverted_norm_layer_rate_one_is_plain_normalization(config, seed):
    """Rate 1 drops every gamma to 1 and beta to 0: the layer is ``normalize(x)`` whatever its
    parameters; ``deterministic=True`` is ``inverted_norm`` with the parameters as they are."""
    shape, dtype, num_groups, mode, param_dtype = config
    rng = np.random.default_rng(seed)
    init = lambda mean: lambda key, shape, dtype: make(rng.normal(mean, 0.5, shape), dtype)  # noqa: E731
    layer = InvertedNorm(
        shape[-1],
        num_groups=num_groups,
        rate=1.0,
        mode=mode,
        param_dtype=param_dtype,
        scale_init=init(1.0),
        bias_init=init(0.0),
        rngs=nnx.Rngs(0),
    )
    graphdef, state = nnx.split(layer)
    for kind, magnitude in VALUES:
        x = make(sample(rng, shape, kind, magnitude), dtype)
        dropped, plain, kept, want = _layer_outputs(graphdef, state, x, jax.random.key(seed))
        assert dropped.dtype == x.dtype and dropped.shape == x.shape
        np.testing.assert_array_equal(f64(dropped), f64(plain))
        np.testing.assert_array_equal(f64(kept), f64(want))


# ====================================================================== affine dropout

jit_affine_dropout = jax.jit(affine_dropout, static_argnames=("mode", "batch_size"))

#: (features, dtype, mode, batch: None, ("size", n) for batch_size=n, or ("keys", n) for n keys)
AFFINE_CONFIGS = (
    (8, F32, "vector", None),
    (8, BF16, "element", ("size", 4)),
    (1, BF16, "vector", ("keys", 3)),
    (8, F32, "element", ("keys", 3)),
)


def affine_params(rng, features: int, dtype):
    """gamma away from 1 and beta away from 0, so that a dropped entry is recognizable."""
    scale = rng.uniform(1.5, 3.0, features) * rng.choice([-1.0, 1.0], features)
    bias = rng.uniform(0.5, 2.0, features) * rng.choice([-1.0, 1.0], features)
    return make(scale, dtype), make(bias, dtype)


def affine_call(config, seed):
    """``(draw(scale, bias, rate), output shape, key)`` for a configuration."""
    features, dtype, mode, batch = config
    key = jax.random.key(seed)
    batch_size = None
    if batch is not None and batch[0] == "keys":
        key = jax.random.split(key, batch[1])
    elif batch is not None:
        batch_size = batch[1]
    shape = (features,) if batch is None else (batch[1], features)
    draw = lambda s, b, rate: jit_affine_dropout(key, s, b, rate=rate, mode=mode, batch_size=batch_size)  # noqa: E731
    return draw, shape, key


@SOME
@given(st.sampled_from(AFFINE_CONFIGS), seeds)
def test_affine_dropout_rate_zero_keeps_and_rate_one_drops_everything(config, seed):
    features, dtype = config[:2]
    scale, bias = affine_params(np.random.default_rng(seed), features, dtype)
    draw, shape, _ = affine_call(config, seed)
    kept, dropped = draw(scale, bias, 0.0), draw(scale, bias, 1.0)
    for got in kept + dropped:
        assert got.shape == shape and got.dtype == scale.dtype
    np.testing.assert_array_equal(f64(kept[0]), np.broadcast_to(f64(scale), shape))
    np.testing.assert_array_equal(f64(kept[1]), np.broadcast_to(f64(bias), shape))
    np.testing.assert_array_equal(f64(dropped[0]), 1.0)
    np.testing.assert_array_equal(f64(dropped[1]), 0.0)


@SOME
@given(st.sampled_from(AFFINE_CONFIGS), st.sampled_from([0.3, 0.5, 0.9]), seeds)
def test_affine_dropout_masks_depend_on_key_and_shape_only(config, rate, seed):
    """The same key and shape give the same masks whatever gamma and beta hold; every entry is
    either kept or dropped; ``vector`` mode keeps or drops a whole vector; a ``[batch]`` of
    keys gives each example the draw its own key gives alone."""
    features, dtype, mode, batch = config
    rng = np.random.default_rng(seed)
    draw, _, key = affine_call(config, seed)

    def masks(scale, bias):
        new_scale, new_bias = draw(scale, bias, rate)
        keep_s, keep_b = f64(new_scale) != 1.0, f64(new_bias) != 0.0
        np.testing.assert_array_equal(f64(new_scale), np.where(keep_s, f64(scale), 1.0))
        np.testing.assert_array_equal(f64(new_bias), np.where(keep_b, f64(bias), 0.0))
        return keep_s, keep_b

    first, second = masks(*affine_params(rng, features, dtype)), masks(*affine_params(rng, features, dtype))
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
        if mode == "vector":
            assert np.all(a.all(axis=-1) | ~a.any(axis=-1))
    if batch is not None and batch[0] == "keys":
        scale, bias = affine_params(rng, features, dtype)
        together = draw(scale, bias, rate)
        for i in range(batch[1]):
            alone = jit_affine_dropout(key[i], scale, bias, rate=rate, mode=mode)
            np.testing.assert_array_equal(f64(together[0][i]), f64(alone[0]))
            np.testing.assert_array_equal(f64(together[1][i]), f64(alone[1]))


# ====================================================================== quantizers

jit_sign = jax.jit(sign)


@FEW
@given(st.sampled_from(ANY_SHAPES), dtypes, seeds)
def test_sign_is_plus_minus_one_with_zero_to_plus_one(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    for kind, magnitude in VALUES:
        x = make(sample(rng, shape, kind, magnitude) * rng.choice([-1.0, 0.0, 1.0], shape), dtype)
        y = jit_sign(x)
        assert y.dtype == x.dtype and y.shape == x.shape
        np.testing.assert_array_equal(f64(y), np.where(f64(x) >= 0, 1.0, -1.0))


@jax.jit
def _irnet(w, t):
    return (libra_pb(w),) + irnet_binarize_weights(w, t)


@SOME
@given(st.sampled_from(tuple(zip(ANY_SHAPES, (F32, BF16, F32, BF16)))), st.booleans(), seeds)
def test_irnet_codes_are_signs_of_centred_weights_and_scale_a_power_of_two(config, constant_channel, seed):
    """Libra-PB standardizes each output channel (zero mean, unit std; exactly zero for a
    constant channel) at any magnitude; the codes are the signs of the centred weights; the
    scale is a power of two (zero for a constant channel, whose codes carry nothing)."""
    shape, dtype = config
    rng = np.random.default_rng(seed)
    axes = tuple(range(len(shape) - 1))  # all but the output channel (none for rank 1)
    for kind, magnitude in VALUES:
        w64 = sample(rng, shape, kind, magnitude)
        if constant_channel and len(shape) >= 2:
            w64[..., 0] = w64.reshape(-1)[0]
        w = make(w64, dtype)
        w_std, w_b, codes, scale = _irnet(w, rng.choice([1e-3, 1.0, 10.0]))
        for a in (w_std, w_b, codes, scale):
            assert a.dtype == w.dtype and np.all(np.isfinite(f64(a)))
        assert w_std.shape == w_b.shape == codes.shape == w.shape
        w64 = f64(w)
        centred = w64 - w64.mean(axis=axes, keepdims=True)
        std = np.sqrt((centred**2).mean(axis=axes, keepdims=True)).reshape(-1)
        top = np.abs(w64).max(axis=axes, keepdims=True)
        constant = std == 0
        flat = np.moveaxis(f64(w_std), -1, 0).reshape(shape[-1], -1)
        tol = 4 * unit(dtype) + 64 * U32 * (1 + top.reshape(-1) / np.where(constant, 1.0, std))
        np.testing.assert_array_less(np.abs(flat.mean(axis=1)), tol)
        np.testing.assert_array_less(np.abs(np.where(constant, 1.0, flat.std(axis=1)) - 1.0), tol)
        np.testing.assert_array_equal(flat[constant], 0.0)
        clear = np.abs(centred) > 64 * U32 * top
        np.testing.assert_array_equal(f64(codes)[clear], np.sign(centred)[clear])
        assert set(np.unique(f64(codes))) <= {-1.0, 1.0}
        s = f64(scale).reshape(-1)
        np.testing.assert_array_equal(s == 0, constant)
        np.testing.assert_array_equal(np.log2(s[~constant]) % 1, 0.0)


@functools.partial(jax.jit, static_argnames=("bits", "axis"))
def _quantize_all(x, *, bits, axis):
    """quantize_symmetric, and fake_quant applied twice with the dynamic and a fixed scale."""
    codes, scale = quantize_symmetric(x, bits, axis=axis)
    fixed = scale * jnp.asarray(0.5, x.dtype)  # clips half the range
    once, once_fixed = fake_quant(x, bits, axis=axis), fake_quant(x, bits, axis=axis, scale=fixed)
    return (
        codes,
        scale,
        once,
        fake_quant(once, bits, axis=axis),
        quantize_symmetric(once, bits, axis=axis)[0],
        once_fixed,
        fake_quant(once_fixed, bits, axis=axis, scale=fixed),
    )


#: (shape, dtype, bits, axis): ranks 1-4, both dtypes, narrow to 16 bits, per tensor and per
#: slice along positive and negative axes. Both quantizer tests draw from these, so that each
#: configuration compiles once for the two.
QUANT_CONFIGS = (
    ((6,), BF16, 16, 0),
    ((3, 4), BF16, 8, -1),
    ((3, 4), F32, 16, None),
    ((2, 3, 4), F32, 2, 1),
    ((2, 1, 3, 4), F32, 12, -1),
    ((2, 1, 3, 4), BF16, 3, None),
)
quant_configs = st.tuples(st.sampled_from(QUANT_CONFIGS), seeds).map(lambda cs: cs[0] + (cs[1],))


def quant_values(shape, axis, seed):
    """Every kind and magnitude of values, and normal values at random magnitudes; half of
    them with an all-zero slice (the tensor's first element for axis=None)."""
    rng = np.random.default_rng(seed)
    more = [("normal", 10.0 ** rng.integers(-30, 31)) for _ in range(6)]
    for (kind, magnitude), zero_slice in itertools.product(VALUES + tuple(more), (False, True)):
        x = sample(rng, shape, kind, magnitude)
        if zero_slice:
            index = [0] * len(shape) if axis is None else [slice(None)] * len(shape)
            if axis is not None:
                index[axis] = 0
            x[tuple(index)] = 0.0
        yield x


@SOME
@given(quant_configs)
@example(((6,), BF16, 16, 0, 0))  # bfloat16 cannot hold a 16-bit code
def test_quantize_symmetric_codes_in_range_and_within_half_a_step(config):
    shape, dtype, bits, axis, seed = config
    keep = () if axis is None else (axis % len(shape),)
    for values in quant_values(shape, axis, seed):
        x = make(values, dtype)
        codes, scale = _quantize_all(x, bits=bits, axis=axis)[:2]
        assert codes.dtype == jnp.int32 and codes.shape == x.shape
        assert scale.dtype == x.dtype
        assert scale.shape == tuple(n if a in keep else 1 for a, n in enumerate(shape))
        c, s = np.asarray(codes), f64(scale)
        assert np.all((s > 0) & np.isfinite(s))
        assert c.min() >= -(2 ** (bits - 1)) and c.max() <= 2 ** (bits - 1) - 1
        # Half a step, plus the float32 rounding of the quotient x / scale (ulps of |code|).
        err = np.abs(c * s - f64(x))
        np.testing.assert_array_less(err, s * (0.5 + (np.abs(c) + 1) * 2.0**-21))


@SOME
@given(quant_configs)
@example(((3, 4), BF16, 8, -1, 0))  # the widest grid bfloat16 resolves
def test_fake_quant_is_idempotent(config):
    """Quantizing a fake-quantized tensor again changes nothing.

    With a given scale (which may clip): bit for bit, wherever the dtype resolves the grid
    (``qmax * u < 1/2``: float32 at every width, bfloat16 up to 8 bits). With the dynamic
    scale, re-derived from the result as ``max|y| / qmax``, float rounding can move the scale
    by an ulp: the codes are the same where the dtype resolves the grid four times over
    (``qmax * 4u <= 1/2``), and the values agree to two ulps.
    """
    shape, dtype, bits, axis, seed = config
    qmax, u = 2 ** (bits - 1) - 1, unit(dtype)
    for values in quant_values(shape, axis, seed):
        x = make(values, dtype)
        codes, _, once, twice, codes_again, once_fixed, twice_fixed = _quantize_all(x, bits=bits, axis=axis)
        for y in (once, once_fixed):
            assert y.dtype == x.dtype and y.shape == x.shape and np.all(np.isfinite(f64(y)))
        o = f64(once)
        np.testing.assert_array_less(np.abs(f64(twice) - o), 4 * u * np.abs(o) + 1e-300)
        if qmax * 4 * u <= 0.5:
            np.testing.assert_array_equal(np.asarray(codes_again), np.asarray(codes))
        if qmax * u < 0.5:
            np.testing.assert_array_equal(f64(twice_fixed), f64(once_fixed))


@functools.partial(jax.jit, static_argnames=("bits",))
def _pact_twice(x, alpha, *, bits):
    y = pact(x, alpha, bits)
    return y, pact(y, alpha, bits)


PACT_CONFIGS = (((6,), F32, 1), ((3, 4), BF16, 2), ((2, 3, 4), F32, 4), ((2, 1, 3, 4), BF16, 8), ((3, 4), F32, 16))


@SOME
@given(st.sampled_from(PACT_CONFIGS), seeds)
def test_pact_stays_in_range_on_the_grid_and_is_idempotent(config, seed):
    """PACT's output lies in [0, alpha] (never above it, whatever the rounding of the step),
    on the grid of ``2**bits - 1`` steps, and PACT of it is itself."""
    shape, dtype, bits = config
    rng = np.random.default_rng(seed)
    levels = 2**bits - 1
    for (kind, magnitude), alpha in itertools.product(VALUES, (1e-30, 0.7, 6.0, 1e30)):
        x = make(sample(rng, shape, kind, magnitude), dtype)
        alpha = make(alpha, dtype)
        y, again = _pact_twice(x, alpha, bits=bits)
        assert y.dtype == x.dtype and y.shape == x.shape
        a, y64 = f64(alpha), f64(y)
        assert np.all(np.isfinite(y64)) and np.all((y64 >= 0) & (y64 <= a))
        k = y64 / a * levels
        # On the grid k * alpha / levels, up to the rounding of a quotient and a product.
        np.testing.assert_allclose(k, np.round(k), atol=levels * 4 * unit(dtype))
        np.testing.assert_array_equal(f64(again), y64)


# ====================================================================== fault models


#: (shape, bits, dtype) of stored codes: ±1 for bits=1, else k-bit integers, in a dtype that
#: holds them (bfloat16 holds every integer up to 256, so 9 bits); ranks 1-4.
CODE_CONFIGS = (
    ((6,), 1, BF16),
    ((3, 4), 8, jnp.int8),
    ((2, 3, 4), 16, jnp.int16),
    ((2, 1, 3, 4), 9, BF16),
    ((3, 4), 4, F32),
)


def codes_of(rng, shape, bits, dtype) -> jax.Array:
    if bits == 1:
        return make(rng.choice([-1.0, 1.0], shape), dtype)
    return make(rng.integers(-(2 ** (bits - 1)), 2 ** (bits - 1), shape), dtype)


@functools.partial(jax.jit, static_argnames=("bits",))
def _bit_faults(key, first, second, rate, high, *, bits):
    """bit_flip at ``rate``; stuck_at at ``rate`` on two different arrays with the same key."""
    return (
        fm.bit_flip(key, first, rate=rate, bits=bits),
        fm.stuck_at(key, first, rate=rate, bits=bits, high_fraction=high),
        fm.stuck_at(key, second, rate=rate, bits=bits, high_fraction=high),
    )


@SOME
@given(st.sampled_from(CODE_CONFIGS), seeds)
def test_bit_flip_rate_one_flips_every_bit_and_rate_zero_none(config, seed):
    shape, bits, dtype = config
    rng = np.random.default_rng(seed)
    codes = codes_of(rng, shape, bits, dtype)
    c = f64(codes)
    key = jax.random.key(seed)
    flipped = _bit_faults(key, codes, codes, 1.0, 0.5, bits=bits)[0]
    assert flipped.dtype == codes.dtype and flipped.shape == codes.shape
    # Every bit of the two's-complement code inverted is ~c = -c - 1; a binary weight negates.
    np.testing.assert_array_equal(f64(flipped), -c if bits == 1 else -c - 1)
    np.testing.assert_array_equal(f64(_bit_faults(key, codes, codes, 0.0, 0.5, bits=bits)[0]), c)


@SOME
@given(st.sampled_from(CODE_CONFIGS), seeds, st.sampled_from([0.0, 0.5, 1.0]))
def test_stuck_at_rate_one_sticks_every_cell(config, seed, high):
    """At rate 1 the stored value no longer depends on what was written; every cell stuck
    high gives all ones (-1 in two's complement, +1 binary), all low all zeros (-1 binary);
    rate 0 sticks nothing."""
    shape, bits, dtype = config
    rng = np.random.default_rng(seed)
    first, second = codes_of(rng, shape, bits, dtype), codes_of(rng, shape, bits, dtype)
    key = jax.random.key(seed)
    _, a, b = _bit_faults(key, first, second, 1.0, high, bits=bits)
    assert a.dtype == first.dtype and a.shape == first.shape
    np.testing.assert_array_equal(f64(a), f64(b))
    low, top = (-1, 1) if bits == 1 else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    assert f64(a).min() >= low and f64(a).max() <= top and np.all(f64(a) == np.round(f64(a)))
    if high in (0.0, 1.0):
        want = (1.0 if high else -1.0) if bits == 1 else (-1.0 if high else 0.0)
        np.testing.assert_array_equal(f64(a), want)
    _, kept, _ = _bit_faults(key, first, second, 0.0, high, bits=bits)
    np.testing.assert_array_equal(f64(kept), f64(first))


VARIATIONS = {
    "additive": lambda k, w, lv: fm.additive_variation(k, w, sigma=lv),
    "multiplicative": lambda k, w, lv: fm.multiplicative_variation(k, w, sigma=lv),
    "uniform": lambda k, w, lv: fm.uniform_noise(k, w, amplitude=lv),
}


@functools.partial(jax.jit, static_argnames=("kind",))
def _variation(key, w, level, *, kind):
    # Uniform: amplitude ``level * max|w|``, as Fault passes it, so that 10 is "sigma 10".
    amplitude = level * jnp.max(jnp.abs(w.astype(jnp.float32))) if kind == "uniform" else level
    return VARIATIONS[kind](key, w, amplitude)


#: (shape, dtype, kind, level type): float32 levels as a sweep passes them, or Python numbers
#: (traced weakly typed, as they act outside ``jit``).
VARIATION_CONFIGS = (
    ((6,), F32, "additive", float),
    ((3, 4), BF16, "additive", jnp.float32),
    ((2, 3, 4), BF16, "multiplicative", float),
    ((2, 1, 3, 4), F32, "uniform", jnp.float32),
)


@SOME
@given(st.sampled_from(VARIATION_CONFIGS), seeds)
def test_variations_are_identity_at_zero_finite_at_sigma_ten_and_keyed(config, seed):
    """Level 0 returns ``w`` exactly; sigma 10 on 1e30 weights stays finite; both keep ``w``'s
    dtype, with the level a Python number or a float32 array (as a sweep passes it); the same
    key gives the same draw."""
    shape, dtype, kind, level = config
    rng = np.random.default_rng(seed)
    key = jax.random.key(seed)
    for kind_of_values, magnitude in VALUES:
        w = make(sample(rng, shape, kind_of_values, magnitude), dtype)
        zero = _variation(key, w, level(0.0), kind=kind)
        assert zero.dtype == w.dtype and zero.shape == w.shape
        np.testing.assert_array_equal(f64(zero), f64(w))
        noisy = _variation(key, w, level(10.0), kind=kind)
        assert noisy.dtype == w.dtype and np.all(np.isfinite(f64(noisy)))
        np.testing.assert_array_equal(f64(_variation(key, w, level(10.0), kind=kind)), f64(noisy))


VARIATION_KINDS = ("additive", "multiplicative", "uniform")
#: (shape, bits, dtype, kind, level type): every kind, on binary weights and on k-bit codes of
#: each dtype, with the level a float32 array (as a sweep passes it) or a Python number.
CONTEXT_CONFIGS = (
    ((3, 4), 8, jnp.int8, "bit_flip", jnp.float32),
    ((6,), 1, BF16, "bit_flip", float),
    ((2, 3, 4), 16, jnp.int16, "stuck_at", float),
    ((6,), 1, BF16, "additive", jnp.float32),
    ((3, 4), 4, F32, "multiplicative", float),
    ((2, 1, 3, 4), 9, BF16, "uniform", jnp.float32),
)


@functools.partial(jax.jit, static_argnames=("kind", "bits"))
def _fault_context(key, w, x, level, *, kind, bits):
    """A chip's faults of ``kind`` at ``level`` on the weights ``w`` and, for the variations, on
    activations ``x`` at both preactivation flavours (static per neuron, per inference)."""
    weights = FaultContext(Fault(kind, 0.0), key, level).weights(3, w, bits=bits)
    if kind not in VARIATION_KINDS:
        return weights, x, x
    outs = []
    for per_inference in (False, True):
        fault = Fault(kind, 0.0, site="preactivation", per_inference=per_inference)
        outs.append(FaultContext(fault, key, level).preactivation(3, x, key=jax.random.fold_in(key, 1)))
    return weights, *outs


def activations_of(w: jax.Array) -> jax.Array:
    """A ``[batch, ...]`` float activation with ``w``'s values (bfloat16 stays bfloat16)."""
    a = np.asarray(w).astype(BF16 if w.dtype == BF16 else np.float32)
    return jnp.asarray(a.reshape((1,) + a.shape) if a.ndim == 1 else a)


@SOME
@given(st.sampled_from(CONTEXT_CONFIGS), seeds)
@example(((6,), 1, BF16, "additive", jnp.float32), 0)  # a sweep's float32 level on bfloat16
def test_zero_level_fault_context_is_the_identity_for_every_kind(config, seed):
    """At level 0 a chip's faults change nothing, at both sites, with the level a Python number
    or a float32 array (as a sweep passes it): values, dtype and shape."""
    shape, bits, dtype, kind, level = config
    w = codes_of(np.random.default_rng(seed), shape, bits, dtype)
    x = activations_of(w)
    got, static, per_inference = _fault_context(jax.random.key(seed), w, x, level(0.0), kind=kind, bits=bits)
    assert got.shape == w.shape
    np.testing.assert_array_equal(f64(got), f64(w))
    if kind not in VARIATION_KINDS:  # bit-level faults keep the codes' dtype
        assert got.dtype == w.dtype
    for out in (static, per_inference):
        assert out.dtype == x.dtype and out.shape == x.shape
        np.testing.assert_array_equal(f64(out), f64(x))


@SOME
@given(st.sampled_from(CONTEXT_CONFIGS), seeds)
def test_extreme_fault_levels_give_finite_valid_weights(config, seed):
    """Sigma 10 and probability 1: finite values of the input's shape (and, for activations,
    dtype); bit-level faults still give valid codes of the word length, in the codes' dtype."""
    shape, bits, dtype, kind, level = config
    w = codes_of(np.random.default_rng(seed), shape, bits, dtype)
    x = activations_of(w)
    level = level(1.0 if kind in ("bit_flip", "stuck_at") else 10.0)
    got, static, per_inference = _fault_context(jax.random.key(seed), w, x, level, kind=kind, bits=bits)
    g = f64(got)
    assert got.shape == w.shape and np.all(np.isfinite(g))
    for out in (static, per_inference):
        assert out.dtype == x.dtype and np.all(np.isfinite(f64(out)))
    if kind in ("bit_flip", "stuck_at"):
        assert got.dtype == w.dtype and np.all(g == np.round(g))
        if bits == 1:
            assert set(np.unique(g)) <= {-1.0, 1.0}
        else:
            assert g.min() >= -(2 ** (bits - 1)) and g.max() <= 2 ** (bits - 1) - 1
