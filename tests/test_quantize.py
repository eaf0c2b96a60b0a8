"""Quantizers of invnorm_jax.functional.quantize: forward values and straight-through gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from invnorm_jax.functional.quantize import (
    ede_schedule,
    fake_quant,
    irnet_binarize_weights,
    libra_pb,
    pact,
    quantize_symmetric,
    sign,
)


def _kernel(seed=0, shape=(3, 3, 4, 6)):
    """A kernel whose output channels have very different means and spreads."""
    rng = np.random.default_rng(seed)
    out = shape[-1]
    return (rng.normal(size=shape) * np.linspace(0.1, 3.0, out) + np.linspace(-2, 2, out)).astype(np.float32)


def _np_libra_pb(w):
    w = np.asarray(w, np.float64)
    axes = tuple(range(w.ndim - 1))
    centred = w - w.mean(axis=axes, keepdims=True)
    return centred / centred.std(axis=axes, keepdims=True)


# ----------------------------------------------------------------------------- sign


def test_sign_forward_maps_zero_to_plus_one_and_keeps_dtype():
    for dtype in (jnp.float32, jnp.bfloat16):
        y = sign(jnp.array([-3.0, -0.0, 0.0, 1e-8, 2.0], dtype))
        assert y.dtype == dtype
        np.testing.assert_array_equal(np.asarray(y, np.float32), [-1, 1, 1, 1, 1])


def test_sign_gradient_is_one_inside_unit_window_only():
    x = jnp.array([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 3.0])
    c = jnp.arange(1.0, 9.0)
    grad = jax.grad(lambda v: jnp.sum(sign(v) * c))(x)
    expected = np.where(np.abs(np.asarray(x)) <= 1, np.asarray(c), 0.0)
    np.testing.assert_array_equal(grad, expected)


# ----------------------------------------------------------------------------- EDE / IR-Net


@pytest.mark.parametrize("progress", [0.0, 0.25, 0.5, 1.0])
def test_ede_schedule_is_log_linear(progress):
    t, k = ede_schedule(progress)
    t_ref = 10.0 ** (-3 + 4 * progress)
    np.testing.assert_allclose(t, t_ref, rtol=1e-5)
    np.testing.assert_allclose(k, max(1 / t_ref, 1.0), rtol=1e-5)


def test_ede_schedule_is_traceable():
    ts = jax.jit(jax.vmap(lambda p: ede_schedule(p)[0]))(jnp.array([0.0, 1.0]))
    np.testing.assert_allclose(ts, [1e-3, 10.0], rtol=1e-5)


def test_libra_pb_zero_mean_unit_std_per_output_channel():
    w = _kernel()
    w_std = np.asarray(libra_pb(jnp.asarray(w)), np.float64)
    axes = (0, 1, 2)
    # float32 centring of a channel with mean 2 and std 0.1 costs ~1e-6 absolute.
    np.testing.assert_allclose(w_std.mean(axis=axes), 0.0, atol=1e-5)
    np.testing.assert_allclose(w_std.std(axis=axes), 1.0, rtol=1e-5)
    np.testing.assert_allclose(w_std, _np_libra_pb(w), rtol=1e-4, atol=1e-5)


def test_libra_pb_constant_channel_is_zero_with_finite_gradient():
    w = jnp.stack([jnp.full((5,), 0.7), jnp.arange(5.0)], axis=-1)
    out = libra_pb(w)
    np.testing.assert_array_equal(out[:, 0], 0.0)
    grad = jax.grad(lambda v: jnp.sum(libra_pb(v) * jnp.arange(10.0).reshape(5, 2)))(w)
    assert np.all(np.isfinite(grad))


def test_irnet_codes_and_power_of_two_scale():
    w = _kernel(1)
    w_b, codes, scale = irnet_binarize_weights(jnp.asarray(w), 10.0)
    ref = _np_libra_pb(w)
    np.testing.assert_array_equal(codes, np.where(ref >= 0, 1.0, -1.0))
    assert scale.shape == (1, 1, 1, w.shape[-1])
    log2 = np.log2(np.asarray(scale))
    np.testing.assert_array_equal(log2, np.round(log2))
    expected = 2.0 ** np.round(np.log2(np.abs(ref).mean(axis=(0, 1, 2), keepdims=True)))
    np.testing.assert_array_equal(scale, expected)
    np.testing.assert_array_equal(w_b, np.asarray(codes) * np.asarray(scale))


@pytest.mark.parametrize("t", [1e-3, 0.05, 2.0])
def test_irnet_gradient_is_ede_through_libra_pb(t):
    """d/dw sum(c * codes): EDE on w_std, then the standardization's backward pass."""
    w = _kernel(2, shape=(5, 3))
    c = np.random.default_rng(3).normal(size=w.shape)
    grad = jax.grad(lambda v: jnp.sum(irnet_binarize_weights(v, t)[1] * c))(jnp.asarray(w))

    w64 = np.asarray(w, np.float64)
    w_std = _np_libra_pb(w64)
    k = max(1.0 / t, 1.0)
    g_std = c * k * t * (1.0 - np.tanh(t * w_std) ** 2)
    sd = (w64 - w64.mean(0)).std(0)
    expected = (g_std - g_std.mean(0) - w_std * (g_std * w_std).mean(0)) / sd
    np.testing.assert_allclose(grad, expected, rtol=2e-4, atol=1e-6)


def test_irnet_jits_with_traced_temperature():
    w = jnp.asarray(_kernel(5))
    eager = irnet_binarize_weights(w, 0.3)
    jitted = jax.jit(irnet_binarize_weights)(w, jnp.float32(0.3))
    for a, b in zip(eager, jitted):
        np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------- k-bit


@pytest.mark.parametrize("bits", [2, 4, 8, 16])
@pytest.mark.parametrize("axis", [None, -1])
def test_quantize_symmetric_codes_in_range_and_error_below_half_step(bits, axis):
    x = jnp.asarray(_kernel(bits))
    codes, scale = quantize_symmetric(x, bits, axis=axis)
    assert codes.dtype == jnp.int32
    assert codes.min() >= -(2 ** (bits - 1)) and codes.max() <= 2 ** (bits - 1) - 1
    err = np.abs(np.asarray(codes) * np.asarray(scale, np.float64) - np.asarray(x, np.float64))
    # Half a step, plus float32 rounding of x / scale (it matters at 16 bits).
    slack = 4 * np.finfo(np.float32).eps * np.abs(np.asarray(x, np.float64))
    assert np.all(err <= np.asarray(scale, np.float64) / 2 + slack)
    assert scale.size == (1 if axis is None else x.shape[-1])


def test_quantize_symmetric_all_zero_slice_is_safe():
    x = jnp.zeros((4, 3)).at[:, 2].set(jnp.array([1.0, -2.0, 0.5, 0.0]))
    codes, scale = quantize_symmetric(x, 8, axis=-1)
    assert np.all(np.isfinite(scale)) and np.all(np.asarray(scale) > 0)
    np.testing.assert_array_equal(codes[:, :2], 0)
    np.testing.assert_array_equal(codes[:, 2], [64, -127, 32, 0])


def test_fake_quant_forward_is_dequantized_codes_and_gradient_is_identity():
    x = jnp.asarray(_kernel(6, shape=(7, 5)))
    codes, scale = quantize_symmetric(x, 4, axis=-1)
    y = fake_quant(x, 4, axis=-1)
    np.testing.assert_array_equal(y, codes.astype(jnp.float32) * scale)
    grad = jax.grad(lambda v: jnp.sum(fake_quant(v, 4, axis=-1) * jnp.arange(35.0).reshape(7, 5)))(x)
    np.testing.assert_array_equal(grad, np.arange(35.0).reshape(7, 5))


def test_fake_quant_fixed_scale_clips_and_blocks_gradient_outside_range():
    x = jnp.array([-5.0, -1.0, 0.26, 0.9, 3.0])
    y = fake_quant(x, 3, scale=0.25)  # codes in -4..3 -> values in [-1.0, 0.75]
    np.testing.assert_allclose(y, [-1.0, -1.0, 0.25, 0.75, 0.75])
    grad = jax.grad(lambda v: jnp.sum(fake_quant(v, 3, scale=0.25)))(x)
    np.testing.assert_array_equal(grad, [0.0, 1.0, 1.0, 0.0, 0.0])


def test_fake_quant_vmap_matches_per_axis_scale():
    x = jnp.asarray(_kernel(7, shape=(4, 9)))
    np.testing.assert_array_equal(jax.vmap(lambda r: fake_quant(r, 8))(x), fake_quant(x, 8, axis=0))


# ----------------------------------------------------------------------------- PACT


def test_pact_forward_and_gradients_on_hand_made_input():
    x = jnp.array([-1.0, 0.2, 0.45, 0.9, 1.0, 2.5])
    c = jnp.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    alpha, bits = 1.0, 2  # 3 steps of 1/3
    y = pact(x, alpha, bits)
    np.testing.assert_allclose(y, [0.0, 1 / 3, 1 / 3, 1.0, 1.0, 1.0], rtol=1e-6)
    gx, ga = jax.grad(lambda v, a: jnp.sum(pact(v, a, bits) * c), argnums=(0, 1))(x, alpha)
    np.testing.assert_array_equal(gx, [0.0, 2.0, 3.0, 4.0, 0.0, 0.0])
    assert ga == pytest.approx(5.0 + 6.0)  # only x >= alpha feeds alpha


def test_pact_per_channel_alpha_gradient_sums_over_batch():
    x = jnp.array([[0.5, 3.0], [2.0, 0.1], [4.0, 5.0]])
    alpha = jnp.array([1.0, 4.0])
    ga = jax.grad(lambda a: jnp.sum(pact(x, a, 4)))(alpha)
    np.testing.assert_array_equal(ga, [2.0, 1.0])


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize("call", [lambda b: quantize_symmetric(jnp.ones(3), b), lambda b: fake_quant(jnp.ones(3), b)])
@pytest.mark.parametrize("bits", [1, 0, 17, 2.5, True, None])
def test_signed_quantizers_reject_bad_bits(call, bits):
    with pytest.raises(ValueError, match=r"bits=.*2\.\.16"):
        call(bits)


@pytest.mark.parametrize("bits", [0, 17, 4.0])
def test_pact_rejects_bad_bits(bits):
    with pytest.raises(ValueError, match=r"bits=.*1\.\.16"):
        pact(jnp.ones(3), 1.0, bits)


def test_pact_accepts_one_bit():
    np.testing.assert_array_equal(pact(jnp.array([0.2, 0.7]), 1.0, 1), [0.0, 1.0])
