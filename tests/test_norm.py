"""Inverted normalization and affine dropout: numerics, statistics, keys and bad input."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import invnorm_jax as inj
from invnorm_jax.functional import mc_dropout, mc_spatial_dropout, uniform_beta, uniform_gamma


def reference_inverted_norm(x, scale, bias, num_groups=None, eps=1e-5):
    """Independent float64 numpy reference: affine first, then per-instance / group stats."""
    x = np.asarray(x, np.float64)
    y = np.asarray(scale, np.float64) * x + np.asarray(bias, np.float64)
    out = np.empty_like(y)
    for b in range(y.shape[0]):
        if num_groups is None:
            chunks = [(slice(None),)]
        else:
            size = y.shape[-1] // num_groups
            chunks = [(..., slice(g * size, (g + 1) * size)) for g in range(num_groups)]
        for idx in chunks:
            part = y[b][idx]
            out[b][idx] = (part - part.mean()) / np.sqrt(part.var() + eps)
    return out


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 3.0, size=(3, 5, 4, 8)).astype(np.float32)
    scale = rng.normal(1.0, 0.5, size=8).astype(np.float32)
    bias = rng.normal(0.0, 2.0, size=8).astype(np.float32)
    return x, scale, bias


@pytest.mark.parametrize("num_groups", [None, 1, 2, 4, 8])
def test_inverted_norm_matches_float64_reference(data, num_groups):
    x, scale, bias = data
    got = inj.inverted_norm(jnp.asarray(x), jnp.asarray(scale), jnp.asarray(bias), num_groups=num_groups)
    want = reference_inverted_norm(x, scale, bias, num_groups)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-4)


def test_inverted_norm_is_flax_layernorm_of_affine_input(data):
    x, scale, bias = data
    ln = nnx.LayerNorm(8, use_scale=False, use_bias=False, epsilon=1e-5, reduction_axes=(1, 2, 3), rngs=nnx.Rngs(0))
    want = ln(jnp.asarray(scale * x + bias))
    got = inj.inverted_norm(jnp.asarray(x), jnp.asarray(scale), jnp.asarray(bias))
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("num_groups", [2, 4])
def test_inverted_norm_is_flax_groupnorm_of_affine_input(data, num_groups):
    x, scale, bias = data
    gn = nnx.GroupNorm(8, num_groups=num_groups, use_scale=False, use_bias=False, epsilon=1e-5, rngs=nnx.Rngs(0))
    want = gn(jnp.asarray(scale * x + bias))
    got = inj.inverted_norm(jnp.asarray(x), jnp.asarray(scale), jnp.asarray(bias), num_groups=num_groups)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-4)


def test_affine_is_before_normalization(data):
    # A conventional norm is invariant to a global scale of its input; the inverted one is not
    # invariant to a per-channel gamma, which is the whole point of putting it first.
    x, _, _ = data
    scale = jnp.linspace(0.5, 2.0, 8)
    a = inj.inverted_norm(jnp.asarray(x), scale, jnp.zeros(8))
    b = inj.inverted_norm(jnp.asarray(x), jnp.ones(8), jnp.zeros(8))
    assert not np.allclose(np.asarray(a), np.asarray(b), atol=1e-3)
    c = inj.inverted_norm(jnp.asarray(x), 3.0 * jnp.ones(8), jnp.zeros(8))
    np.testing.assert_allclose(np.asarray(c), np.asarray(b), atol=1e-4)


def test_per_example_scale_equals_separate_calls(data):
    x, _, _ = data
    rng = np.random.default_rng(1)
    scale = rng.normal(1, 0.3, (3, 8)).astype(np.float32)
    bias = rng.normal(0, 0.3, (3, 8)).astype(np.float32)
    got = inj.inverted_norm(jnp.asarray(x), jnp.asarray(scale), jnp.asarray(bias), num_groups=2)
    for b in range(3):
        want = reference_inverted_norm(x[b : b + 1], scale[b], bias[b], 2)
        np.testing.assert_allclose(np.asarray(got[b : b + 1]), want, rtol=1e-4, atol=1e-4)


def test_affine_dropout_rate_zero_and_one():
    key = jax.random.key(0)
    scale, bias = jnp.linspace(0.1, 2.0, 16), jnp.linspace(-1.0, 1.0, 16)
    for mode in ("vector", "element"):
        s, b = inj.affine_dropout(key, scale, bias, rate=0.0, mode=mode)
        np.testing.assert_array_equal(np.asarray(s), np.asarray(scale))
        np.testing.assert_array_equal(np.asarray(b), np.asarray(bias))
        s, b = inj.affine_dropout(key, scale, bias, rate=1.0, mode=mode)
        np.testing.assert_array_equal(np.asarray(s), np.ones(16))
        np.testing.assert_array_equal(np.asarray(b), np.zeros(16))


def test_vector_mode_drops_whole_vector_or_nothing():
    scale, bias = jnp.full(32, 2.0), jnp.full(32, 1.0)
    keys = jax.random.split(jax.random.key(3), 400)
    s, b = jax.vmap(lambda k: inj.affine_dropout(k, scale, bias, rate=0.5))(keys)
    s, b = np.asarray(s), np.asarray(b)
    assert set(np.unique(s.min(1) == s.max(1))) == {True}  # all or nothing per draw
    assert set(np.unique(b.min(1) == b.max(1))) == {True}
    # Both outcomes occur, and scale and bias are dropped independently.
    dropped_s, dropped_b = s[:, 0] == 1.0, b[:, 0] == 0.0
    assert 0 < dropped_s.sum() < 400 and 0 < dropped_b.sum() < 400
    assert (dropped_s != dropped_b).any()


@pytest.mark.parametrize("rate", [0.1, 0.3, 0.7])
def test_element_mode_frequency_within_binomial_bound(rate):
    n_draws, features = 200, 64
    keys = jax.random.split(jax.random.key(7), n_draws)
    scale, bias = jnp.full(features, 2.0), jnp.full(features, 1.0)
    s, b = jax.vmap(lambda k: inj.affine_dropout(k, scale, bias, rate=rate, mode="element"))(keys)
    n = n_draws * features
    bound = 5 * math.sqrt(rate * (1 - rate) / n)  # 5 sigma of a binomial proportion
    assert abs(float(np.mean(np.asarray(s) == 1.0)) - rate) < bound
    assert abs(float(np.mean(np.asarray(b) == 0.0)) - rate) < bound
    # Element mode really is per element: within one draw, both outcomes appear.
    assert (np.asarray(s).min(1) != np.asarray(s).max(1)).any()


def test_same_key_same_masks_different_keys_differ():
    scale, bias = jnp.full(64, 2.0), jnp.full(64, 1.0)
    a = inj.affine_dropout(jax.random.key(1), scale, bias, rate=0.5, mode="element")
    b = inj.affine_dropout(jax.random.key(1), scale, bias, rate=0.5, mode="element")
    c = inj.affine_dropout(jax.random.key(2), scale, bias, rate=0.5, mode="element")
    np.testing.assert_array_equal(np.asarray(a[0]), np.asarray(b[0]))
    assert not np.array_equal(np.asarray(a[0]), np.asarray(c[0]))


def test_per_example_draws_are_independent():
    scale, bias = jnp.full(8, 2.0), jnp.full(8, 1.0)
    s, _ = inj.affine_dropout(jax.random.key(0), scale, bias, rate=0.5, batch_size=256)
    assert s.shape == (256, 8)
    frac = float(np.mean(np.asarray(s)[:, 0] == 1.0))
    assert abs(frac - 0.5) < 5 * math.sqrt(0.25 / 256)


def test_jit_and_vmap_agree_with_eager(data):
    x, scale, bias = (jnp.asarray(a) for a in data)

    def f(key):
        s, b = inj.affine_dropout(key, scale, bias, rate=0.3, mode="element")
        return inj.inverted_norm(x, s, b, num_groups=4)

    keys = jax.random.split(jax.random.key(5), 6)
    eager = np.stack([np.asarray(f(k)) for k in keys])
    np.testing.assert_allclose(np.asarray(jax.jit(f)(keys[0])), eager[0], rtol=1e-5, atol=1e-5)
    batched = np.asarray(jax.jit(jax.vmap(f))(keys))
    np.testing.assert_allclose(batched, eager, rtol=1e-5, atol=1e-5)
    assert not np.allclose(batched[0], batched[1])  # independent masks per key


def test_gradients_reach_gamma_and_beta():
    layer = inj.nn.InvertedNorm(6, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (4, 5, 6))
    target = jax.random.normal(jax.random.key(2), (4, 5, 6))

    def loss(model):
        return jnp.mean((model(x, deterministic=True) - target) ** 2)

    grads = nnx.grad(loss)(layer)
    assert float(jnp.abs(grads.scale[...]).sum()) > 0
    assert float(jnp.abs(grads.bias[...]).sum()) > 0


def test_layer_needs_a_key_unless_deterministic():
    layer = inj.nn.InvertedNorm(4, rngs=nnx.Rngs(0), keep_rngs=False)  # no stream to draw from
    x = jnp.ones((2, 4)) * jnp.arange(4.0)
    with pytest.raises(ValueError, match="key="):
        layer(x)
    det = layer(x, deterministic=True)
    want = inj.inverted_norm(x, layer.scale[...], layer.bias[...])
    np.testing.assert_allclose(np.asarray(det), np.asarray(want), rtol=1e-6)
    for drop in (inj.nn.MCDropout(0.3), inj.nn.MCSpatialDropout(0.3)):
        with pytest.raises(ValueError, match="key="):
            drop(x)


def test_initializers_have_asked_moments():
    layer = inj.nn.InvertedNorm(20000, rngs=nnx.Rngs(0))
    n = 20000
    assert abs(float(layer.scale[...].mean()) - 1.0) < 5 * 0.3 / math.sqrt(n)
    assert abs(float(layer.scale[...].std()) - 0.3) < 0.01
    assert abs(float(layer.bias[...].mean())) < 5 * 0.3 / math.sqrt(n)
    uni = inj.nn.InvertedNorm(n, scale_init=uniform_gamma(2.0), bias_init=uniform_beta(0.5), rngs=nnx.Rngs(0))
    g, b = np.asarray(uni.scale[...]), np.asarray(uni.bias[...])
    assert 0 <= g.min() and g.max() <= 2.0 and -0.5 <= b.min() and b.max() <= 0.5
    assert abs(g.mean() - 1.0) < 5 * (2 / math.sqrt(12)) / math.sqrt(n)


@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_mc_dropouts_statistics(rate):
    x = jnp.ones((64, 10, 32))
    y = np.asarray(mc_dropout(jax.random.key(0), x, rate=rate))
    n = y.size
    assert abs(np.mean(y == 0) - rate) < 5 * math.sqrt(rate * (1 - rate) / n)
    np.testing.assert_allclose(y[y != 0], 1 / (1 - rate), rtol=1e-6)
    z = np.asarray(mc_spatial_dropout(jax.random.key(0), x, rate=rate))
    # whole channels: constant along the spatial axis
    assert np.all(z.min(axis=1) == z.max(axis=1))
    m = 64 * 32
    assert abs(np.mean(z[:, 0, :] == 0) - rate) < 5 * math.sqrt(rate * (1 - rate) / m)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: inj.affine_dropout(jax.random.key(0), jnp.ones(3), jnp.zeros(3), rate=1.5), r"rate=1.5.*\[0, 1\]"),
        (lambda: inj.affine_dropout(jax.random.key(0), jnp.ones(3), jnp.zeros(3), rate=-0.1), r"rate"),
        (
            lambda: inj.affine_dropout(jax.random.key(0), jnp.ones(3), jnp.zeros(3), rate=0.3, mode="row"),
            r"mode='row'.*vector.*element",
        ),
        (lambda: inj.affine_dropout(jax.random.key(0), jnp.ones(3), jnp.zeros(4), rate=0.3), r"scale.shape"),
        (
            lambda: inj.inverted_norm(jnp.ones((2, 4, 6)), jnp.ones(6), jnp.zeros(6), num_groups=4),
            r"num_groups=4.*\[1, 2, 3, 6\]",
        ),
        (lambda: inj.inverted_norm(jnp.ones((2, 4, 6)), jnp.ones(5), jnp.zeros(5)), r"5 features.*6 channels"),
        (lambda: inj.nn.InvertedNorm(6, num_groups=4, rngs=nnx.Rngs(0)), r"num_groups"),
        (lambda: inj.nn.InvertedNorm(6, rate=2.0, rngs=nnx.Rngs(0)), r"rate"),
        (lambda: inj.nn.norm_site("bayes", 6, rngs=nnx.Rngs(0)), r"method='bayes'.*proposed"),
        (lambda: mc_dropout(jax.random.key(0), jnp.ones(3), rate=3.0), r"rate"),
    ],
)
def test_bad_input_raises_clear_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


class TestFunctionalUnderJit(chex.TestCase):
    """The pure functions give the same numbers eagerly and under ``jit`` (chex variants)."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_inverted_norm_matches_float64_reference(self):
        rng = np.random.default_rng(0)
        x, s, b = rng.normal(size=(3, 4, 6)), rng.normal(size=6), rng.normal(size=6)
        f = self.variant(lambda x, s, b: inj.inverted_norm(x, s, b, num_groups=3))
        y = f(jnp.asarray(x, jnp.float32), jnp.asarray(s, jnp.float32), jnp.asarray(b, jnp.float32))
        chex.assert_shape(y, x.shape)
        chex.assert_type(y, jnp.float32)
        np.testing.assert_allclose(y, reference_inverted_norm(x, s, b, num_groups=3), rtol=1e-4, atol=1e-4)

    @chex.variants(with_jit=True, without_jit=True)
    def test_per_example_affine_dropout_depends_on_each_key_only(self):
        keys = jax.random.split(jax.random.key(2), 5)
        scale, bias = jnp.full(3, 2.0), jnp.ones(3)
        draw = self.variant(lambda k: inj.affine_dropout(k, scale, bias, rate=0.5))
        s_all, b_all = draw(keys)
        chex.assert_shape([s_all, b_all], (5, 3))
        s_two, b_two = draw(keys[3:])
        np.testing.assert_array_equal(s_all[3:], s_two)
        np.testing.assert_array_equal(b_all[3:], b_two)


def _finite_difference_grad(x, scale, bias, w, num_groups, eps):
    """d sum(w * inverted_norm(x)) / dx by central differences of the float64 reference."""
    x64 = np.asarray(x, np.float64)
    h = 1e-6 * np.abs(x64).max()
    grad = np.zeros_like(x64)
    for i in np.ndindex(x64.shape):
        step = np.zeros_like(x64)
        step[i] = h
        up = np.sum(w * reference_inverted_norm(x64 + step, scale, bias, num_groups, eps))
        down = np.sum(w * reference_inverted_norm(x64 - step, scale, bias, num_groups, eps))
        grad[i] = (up - down) / (2 * h)
    return grad


@pytest.mark.parametrize("magnitude", [1.0, 1e30, 1e-30])
@pytest.mark.parametrize("eps", [1e-5, 0.0])
@pytest.mark.parametrize("num_groups", [None, 2])
def test_gradient_matches_float64_finite_differences(magnitude, eps, num_groups):
    """The analytic derivative (one reduction pass forward, two backward) against central
    differences of the float64 reference, at every magnitude: 1e30 and 1e-30 inputs take the
    rescaled path, and a 1e-30 input with eps > 0 has a gradient of about 1 / sqrt(eps)."""
    rng = np.random.default_rng(1)
    x = ((rng.normal(size=(2, 3, 4)) + 0.5) * magnitude).astype(np.float32)
    scale, bias = rng.normal(1.0, 0.3, 4).astype(np.float32), (rng.normal(0.0, 0.3, 4) * magnitude).astype(np.float32)
    w = rng.normal(size=x.shape)
    grad = jax.grad(lambda x: jnp.sum(inj.inverted_norm(x, scale, bias, num_groups=num_groups, eps=eps) * w))(x)
    expected = _finite_difference_grad(x, scale, bias, w, num_groups, eps)
    # float32 gradient (unit roundoff 6e-8) against a float64 difference quotient (error ~h**2).
    np.testing.assert_allclose(np.asarray(grad, np.float64), expected, rtol=0, atol=1e-5 * np.abs(expected).max())


def test_forward_and_reverse_mode_agree_and_vmap_mixes_both_paths():
    """<J t, w> == <t, J^T w> (forward mode works, and is the transpose of reverse mode), and a
    vmapped batch whose members need different paths (1e30 and 1) gives each its own gradient."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 3, 8)).astype(np.float32)
    t, w = rng.normal(size=x.shape).astype(np.float32), rng.normal(size=x.shape).astype(np.float32)

    def f(x):
        return inj.functional.normalize(x, num_groups=4)

    _, jt = jax.jvp(f, (x,), (t,))
    (jw,) = jax.vjp(f, x)[1](w)
    np.testing.assert_allclose(float(jnp.vdot(jt, w)), float(jnp.vdot(t, jw)), rtol=1e-5)
    both = np.stack([x * 1e30, x]).astype(np.float32)

    def loss(xi):
        return jnp.sum(f(xi) * w)

    batched = jax.vmap(jax.grad(loss))(both)
    for i in range(2):
        np.testing.assert_allclose(
            np.asarray(batched[i]),
            np.asarray(jax.grad(loss)(both[i])),
            rtol=1e-5,
            atol=1e-6 * float(jnp.abs(jax.grad(loss)(both[i])).max()),
        )
