"""Statistics, exactness and validation of the fault models in invnorm_jax.faults.models.

Statistical tolerances come from the sample size: a frequency is within 5 binomial standard
errors of its probability, a mean within 5 standard errors, a sample std within 5 of its
asymptotic standard error sd / sqrt(2n). A correct implementation fails one such check with
probability below 1e-6.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from invnorm_jax.faults import models as fm

KEY = jax.random.key(0)


def assert_freq(observed: float, p: float, n: int):
    tol = 5.0 * np.sqrt(p * (1.0 - p) / n)
    assert abs(observed - p) <= tol, f"frequency {observed} vs probability {p} (tol {tol}, n={n})"


def assert_mean_std(x, mean: float, std: float):
    x = np.asarray(x, np.float64).reshape(-1)
    n = x.size
    assert abs(x.mean() - mean) <= 5.0 * std / np.sqrt(n), (x.mean(), mean)
    assert abs(x.std() - std) <= 5.0 * std / np.sqrt(2.0 * n), (x.std(), std)


def random_codes(key, n, bits, dtype=jnp.int32):
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1)
    return jax.random.randint(key, (n,), lo, hi, dtype=jnp.int32).astype(dtype)


def bit_matrix(codes, bits):
    """[n, bits] 0/1 matrix of the two's-complement pattern, via numpy (independent of fm)."""
    u = np.asarray(codes).astype(np.int64) & ((1 << bits) - 1)
    return (u[:, None] >> np.arange(bits)) & 1


# ------------------------------------------------------------------------------ bit-flips


def test_binary_flip_frequency():
    n, rate = 200_000, 0.1
    w = jnp.where(jax.random.bernoulli(jax.random.key(1), 0.5, (n,)), 1.0, -1.0)
    out = fm.bit_flip(KEY, w, rate=rate, bits=1)
    assert set(np.unique(np.asarray(out)).tolist()) <= {-1.0, 1.0}
    assert_freq(float(jnp.mean(out != w)), rate, n)


@pytest.mark.parametrize("bits,rate", [(2, 0.3), (4, 0.05), (8, 0.2), (16, 0.01)])
def test_kbit_flip_frequency_per_bit_position(bits, rate):
    n = 40_000
    codes = random_codes(jax.random.key(2), n, bits)
    out = fm.bit_flip(KEY, codes, rate=rate, bits=bits)
    flipped = bit_matrix(codes, bits) != bit_matrix(out, bits)
    for b in range(bits):
        assert_freq(flipped[:, b].mean(), rate, n)


@pytest.mark.parametrize("dtype", [jnp.int8, jnp.int16, jnp.int32, jnp.float32])
def test_kbit_flip_stays_in_range_and_dtype(dtype):
    bits = 8
    codes = random_codes(jax.random.key(3), 5000, bits, dtype)
    out = fm.bit_flip(KEY, codes, rate=0.5, bits=bits)
    assert out.dtype == codes.dtype and out.shape == codes.shape
    assert int(jnp.min(out)) >= -128 and int(jnp.max(out)) <= 127
    assert bool(jnp.all(out == jnp.round(out)))


def test_twos_complement():
    # Top bit of 0 in 8 bits carries weight -128.
    assert int(fm._to_signed(fm._to_unsigned(jnp.int32(0), 8) ^ 0x80, 8, jnp.int32)) == -128
    # Every bit flipped is bitwise NOT: c -> -c - 1.
    codes = jnp.array([0, 5, -128, 127, -1], jnp.int8)
    assert fm.bit_flip(KEY, codes, rate=1.0, bits=8).tolist() == [-1, -6, 127, -128, 0]
    # Statistically: 0 becomes -128 exactly when only the top bit flips.
    n, rate = 20_000, 0.3
    out = fm.bit_flip(KEY, jnp.zeros(n, jnp.int8), rate=rate, bits=8)
    assert_freq(float(jnp.mean(out == -128)), rate * (1 - rate) ** 7, n)


# ------------------------------------------------------------------------------ stuck-at


@pytest.mark.parametrize("high", [0.0, 0.5, 1.0])
def test_stuck_at_binary_frequency(high):
    n, rate = 100_000, 0.2
    w = -jnp.ones(n, jnp.float32)
    out = fm.stuck_at(KEY, w, rate=rate, bits=1, high_fraction=high)
    assert set(np.unique(np.asarray(out)).tolist()) <= {-1.0, 1.0}
    assert_freq(float(jnp.mean(out == 1.0)), rate * high, n)  # only stuck-high cells change


def test_stuck_at_kbit_frequency_per_bit():
    n, rate, high, bits = 30_000, 0.2, 0.25, 4
    zeros = fm.stuck_at(KEY, jnp.zeros(n, jnp.int8), rate=rate, bits=bits, high_fraction=high)
    ones = fm.stuck_at(KEY, -jnp.ones(n, jnp.int8), rate=rate, bits=bits, high_fraction=high)
    assert int(zeros.min()) >= -8 and int(zeros.max()) <= 7 and zeros.dtype == jnp.int8
    set_bits, cleared_bits = bit_matrix(zeros, bits), 1 - bit_matrix(ones, bits)
    for b in range(bits):
        assert_freq(set_bits[:, b].mean(), rate * high, n)
        assert_freq(cleared_bits[:, b].mean(), rate * (1 - high), n)


# ------------------------------------------------------------------------------ variation


def test_additive_variation_scaled_by_max_magnitude():
    n, sigma = 100_000, 0.3
    w = jnp.tile(jnp.array([-2.0, 0.5, 2.0, 1.0]), n // 4)  # max |w| = 2
    out = fm.additive_variation(KEY, w, sigma=sigma)
    assert_mean_std(out - w, 0.0, sigma * 2.0)


def test_additive_variation_on_integer_codes_returns_float():
    codes = jnp.array([-128, 3, 100], jnp.int8)
    out = fm.additive_variation(KEY, codes, sigma=0.1)
    assert jnp.issubdtype(out.dtype, jnp.floating)
    assert not bool(jnp.all(out == codes.astype(out.dtype)))


def test_multiplicative_variation_mean_and_std():
    n, sigma = 100_000, 0.2
    w = jnp.tile(jnp.array([3.0, -0.5]), n // 2)
    out = fm.multiplicative_variation(KEY, w, sigma=sigma)
    assert_mean_std(out / w - 1.0, 0.0, sigma)


def test_uniform_noise_bounds_and_moments():
    n, a = 100_000, 0.4
    w = jnp.zeros(n)
    out = fm.uniform_noise(KEY, w, amplitude=a)
    assert float(jnp.max(jnp.abs(out))) <= a
    assert_mean_std(out, 0.0, a / np.sqrt(3.0))


# ------------------------------------------------------------------ exactness and keys

CASES = {
    "additive": (lambda k, w, lv: fm.additive_variation(k, w, sigma=lv), jnp.linspace(-1.7, 2.3, 64)),
    "multiplicative": (lambda k, w, lv: fm.multiplicative_variation(k, w, sigma=lv), jnp.linspace(-1.7, 2.3, 64)),
    "uniform": (lambda k, w, lv: fm.uniform_noise(k, w, amplitude=lv), jnp.linspace(-1.7, 2.3, 64)),
    "flip1": (lambda k, w, lv: fm.bit_flip(k, w, rate=lv, bits=1), jnp.where(jnp.arange(64) % 3 == 0, 1.0, -1.0)),
    "flip8": (lambda k, w, lv: fm.bit_flip(k, w, rate=lv, bits=8), jnp.arange(-32, 32, dtype=jnp.int8)),
    "stuck1": (lambda k, w, lv: fm.stuck_at(k, w, rate=lv, bits=1), jnp.where(jnp.arange(64) % 3 == 0, 1.0, -1.0)),
    "stuck4": (lambda k, w, lv: fm.stuck_at(k, w, rate=lv, bits=4), jnp.arange(64, dtype=jnp.int32) % 16 - 8),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_zero_level_is_exact_identity_eager_and_traced(name):
    fn, w = CASES[name]
    assert bool(jnp.array_equal(fn(KEY, w, 0.0), w.astype(fn(KEY, w, 0.0).dtype)))
    traced = jax.jit(lambda level: fn(KEY, w, level))(jnp.float32(0.0))
    assert bool(jnp.array_equal(traced, w.astype(traced.dtype)))


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_key_same_result_different_keys_differ(name):
    fn, w = CASES[name]
    a, b, c = fn(KEY, w, 0.5), fn(jax.random.key(0), w, 0.5), fn(jax.random.key(1), w, 0.5)
    assert bool(jnp.array_equal(a, b))
    assert not bool(jnp.array_equal(a, c))


def test_one_compilation_serves_every_traced_level():
    traces = []

    @jax.jit
    def flip(level):
        traces.append(level)  # runs once per trace, not per call
        return fm.bit_flip(KEY, jnp.zeros(10_000, jnp.int8), rate=level, bits=8)

    changed = [float(jnp.mean(flip(jnp.float32(r)) != 0)) for r in (0.0, 0.01, 0.2)]
    assert len(traces) == 1
    assert changed[0] == 0.0 and 0.0 < changed[1] < changed[2]


def test_vmap_over_keys_gives_distinct_chips():
    keys = jax.random.split(KEY, 4)
    w = jnp.ones((8, 8))
    out = jax.vmap(lambda k: fm.additive_variation(k, w, sigma=0.1))(keys)
    assert out.shape == (4, 8, 8)
    assert not bool(jnp.array_equal(out[0], out[1]))
    assert bool(jnp.array_equal(out[2], fm.additive_variation(keys[2], w, sigma=0.1)))


# ------------------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    "call,name",
    [
        (lambda w: fm.additive_variation(KEY, w, sigma=-0.1), "sigma"),
        (lambda w: fm.multiplicative_variation(KEY, w, sigma=float("nan")), "sigma"),
        (lambda w: fm.uniform_noise(KEY, w, amplitude=-1), "amplitude"),
        (lambda w: fm.bit_flip(KEY, w, rate=-0.01, bits=1), "rate"),
        (lambda w: fm.bit_flip(KEY, w, rate=1.5, bits=8), "rate"),
        (lambda w: fm.bit_flip(KEY, w, rate=np.float32(2.0), bits=8), "rate"),
        (lambda w: fm.bit_flip(KEY, w, rate=0.1, bits=0), "bits"),
        (lambda w: fm.bit_flip(KEY, w, rate=0.1, bits=17), "bits"),
        (lambda w: fm.stuck_at(KEY, w, rate=1.1, bits=1), "rate"),
        (lambda w: fm.stuck_at(KEY, w, rate=0.1, bits=4, high_fraction=-0.5), "high_fraction"),
        (lambda w: fm.stuck_at(KEY, w, rate=0.1, bits=2.0), "bits"),
    ],
)
def test_bad_input_raises_value_error_naming_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call(jnp.ones(4, jnp.int32))


def test_boundary_levels_are_accepted():
    w = jnp.ones(16, jnp.int32)
    assert bool(jnp.all(fm.bit_flip(KEY, w, rate=1.0, bits=1) == -1))
    assert fm.bit_flip(KEY, w, rate=0.0, bits=16).dtype == jnp.int32
