"""Distribution shifts, the shift registry, and OOD detection (threshold and AUROC)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from invnorm_jax import ood

RNG = np.random.default_rng(0)


# ---------------------------------------------------------------------------------- shifts


@pytest.mark.parametrize("shape", [(3, 8, 8), (3, 8, 8, 2)])
def test_rotate_by_zero_and_full_turn_is_exact_identity(shape):
    x = RNG.random(shape).astype(np.float32)
    for degrees in (0, 0.0, 360, -720):
        y = ood.rotate(x, degrees)
        assert np.array_equal(y, x) and y.dtype == x.dtype
    assert ood.rotate(x, 0) is not x  # a copy: shifting never aliases the clean batch


def test_rotate_90_and_180_of_square_image_equal_rot90():
    x = RNG.random((2, 9, 9, 3)).astype(np.float32)
    # Bilinear interpolation at exactly 90 degrees samples (numerically) on grid points.
    np.testing.assert_allclose(ood.rotate(x, 90), np.rot90(x, k=1, axes=(1, 2)), atol=1e-5)
    np.testing.assert_allclose(ood.rotate(x, 180), np.rot90(x, k=2, axes=(1, 2)), atol=1e-5)
    np.testing.assert_allclose(ood.rotate(jnp.asarray(x), -90), np.rot90(x, k=-1, axes=(1, 2)), atol=1e-5)


def test_rotate_small_angle_changes_image_keeps_shape():
    x = np.zeros((1, 16, 16, 1), np.float32)
    x[0, 2:14, 7:9] = 1.0  # a vertical bar
    y = ood.rotate(x, 21)
    assert y.shape == x.shape
    assert np.abs(y - x).max() > 0.5
    assert abs(y.sum() - x.sum()) < 0.15 * x.sum()  # content is moved, not lost


def test_rotate_rejects_bad_rank():
    with pytest.raises(ValueError, match="shape"):
        ood.rotate(np.zeros((8, 8)), 7)


@pytest.mark.parametrize("key", [0, np.random.default_rng(1), jax.random.key(2)])
@pytest.mark.parametrize("shift", [ood.uniform_noise_shift, ood.gaussian_noise_shift])
def test_noise_of_strength_zero_is_exact_identity(key, shift):
    x = RNG.standard_normal((4, 6, 6, 1)).astype(np.float32)
    assert np.array_equal(np.asarray(shift(key, x, 0.0)), x)


def test_uniform_noise_shift_bounds_moments_and_clip():
    n, s = 200_000, 0.3
    x = np.full((n,), 0.5, np.float32)
    y = ood.uniform_noise_shift(0, x, s)
    d = y - x
    assert np.abs(d).max() <= s + 1e-7
    sd = s / np.sqrt(3.0)
    assert abs(d.mean()) <= 5 * sd / np.sqrt(n) and abs(d.std() - sd) <= 5 * sd / np.sqrt(2 * n)
    clipped = ood.uniform_noise_shift(0, x, 1.0, clip=(0.0, 1.0))
    assert clipped.min() >= 0.0 and clipped.max() <= 1.0 and clipped.min() == 0.0


def test_gaussian_noise_shift_std_and_keys():
    n, s = 200_000, 0.7
    x = np.zeros((n,), np.float32)
    y = np.asarray(ood.gaussian_noise_shift(jax.random.key(3), x, s))
    assert abs(y.std() - s) <= 5 * s / np.sqrt(2 * n)
    again = np.asarray(ood.gaussian_noise_shift(jax.random.key(3), x, s))
    other = np.asarray(ood.gaussian_noise_shift(jax.random.key(4), x, s))
    assert np.array_equal(y, again) and not np.array_equal(y, other)
    assert np.array_equal(ood.gaussian_noise_shift(5, x, s), ood.gaussian_noise_shift(5, x, s))


def test_negative_strength_raises():
    with pytest.raises(ValueError, match="strength"):
        ood.uniform_noise_shift(0, np.zeros(3), -0.1)


def test_default_stages():
    assert ood.SHIFTS["rotation"].stages == tuple(7.0 * i for i in range(13))
    assert ood.SHIFTS["rotation"].stages[-1] == 84.0
    for name in ("uniform_noise", "gaussian_noise"):
        stages = ood.SHIFTS[name].stages
        assert len(stages) == 13 and stages[0] == 0.0 and all(np.diff(stages) > 0)


def test_registered_shift_runs_through_a_generic_sweep():
    def invert(key, x, level):
        return x * (1.0 - 2.0 * level)

    try:
        ood.register_shift("invert", invert, [0, 0.5, 1])
        x = np.ones((2, 4, 4, 1))
        # The evaluation loop knows nothing of the shift beyond its registry entry.
        out = {
            name: [s(0, x, lv) for lv in s.stages] for name, s in ood.SHIFTS.items() if name in ("invert", "rotation")
        }
        assert [float(o.mean()) for o in out["invert"]] == [1.0, 0.0, -1.0]
        assert len(out["rotation"]) == 13
    finally:
        ood.SHIFTS.pop("invert", None)
    assert "invert" not in ood.SHIFTS


def test_every_registered_shift_is_identity_at_its_first_stage():
    x = RNG.random((2, 8, 8, 1)).astype(np.float32)
    for name, shift in ood.SHIFTS.items():
        assert np.array_equal(np.asarray(shift(0, x, shift.stages[0])), x), name


# ------------------------------------------------------------------------------- detection


def test_nll_threshold_and_detection_rate_by_hand():
    nll_in = [0.2, 0.4, 0.6, 1.0]  # mean 0.55
    assert ood.nll_threshold(nll_in) == pytest.approx(0.55)
    assert ood.nll_threshold(nll_in, "quantile", q=0.5) == pytest.approx(0.5)
    assert ood.detection_rate([0.1, 0.55, 0.56, 3.0, 0.9], 0.55) == pytest.approx(3 / 5)  # strict >
    with pytest.raises(ValueError, match="kind"):
        ood.nll_threshold(nll_in, "median")
    with pytest.raises(ValueError, match="q"):
        ood.nll_threshold(nll_in, "quantile", q=1.5)


def test_uniform_predictor_detects_nothing():
    # Same NLL, log(10), for every input, shifted or not: nothing exceeds the mean.
    probs_in = jax.nn.softmax(jnp.zeros((257, 10)), axis=-1)
    probs_out = jax.nn.softmax(jnp.zeros((131, 10)), axis=-1)
    nll_in = ood.per_input_nll(probs_in, jnp.asarray(RNG.integers(0, 10, 257)))
    nll_out = ood.per_input_nll(probs_out, jnp.asarray(RNG.integers(0, 10, 131)))
    assert np.allclose(nll_in, np.log(10.0), atol=1e-6)
    assert ood.detection_rate(nll_out, ood.nll_threshold(nll_in)) == 0.0
    assert ood.auroc(nll_in, nll_out) == 0.5


def test_confident_in_dist_and_confused_shifted_are_detected():
    labels = jnp.array([0, 1, 0, 1])
    probs_in = jnp.array([[0.9, 0.1], [0.2, 0.8], [0.95, 0.05], [0.1, 0.9]])
    probs_out = jnp.array([[0.5, 0.5], [0.6, 0.4], [0.3, 0.7], [0.99, 0.01]])
    nll_in, nll_out = ood.per_input_nll(probs_in, labels), ood.per_input_nll(probs_out, labels)
    # threshold = mean(-log[0.9, 0.8, 0.95, 0.9]) ~ 0.1064; all shifted NLLs exceed it but -log 0.7
    assert ood.detection_rate(nll_out, ood.nll_threshold(nll_in)) == pytest.approx(1.0)
    assert ood.auroc(nll_in, nll_out) == pytest.approx(1.0)


def test_auroc_hand_cases():
    assert ood.auroc([0.1, 0.2], [0.3, 0.4]) == 1.0
    assert ood.auroc([0.3, 0.4], [0.1, 0.2]) == 0.0
    assert ood.auroc([1.0, 1.0], [1.0]) == 0.5
    # pairs (out, in): (0.3>0.1) (0.3>0.2) (0.2>0.1) (0.2=0.2 -> 1/2): 3.5 / 4
    assert ood.auroc([0.1, 0.2], [0.3, 0.2]) == pytest.approx(0.875)
    with pytest.raises(ValueError, match="non-empty"):
        ood.auroc([], [1.0])


@pytest.mark.parametrize("seed", range(5))
def test_auroc_agrees_with_sklearn(seed):
    rng = np.random.default_rng(seed)
    n_in, n_out = rng.integers(5, 300, size=2)
    # Integer scores on a small range force many ties.
    s_in = rng.integers(0, 8, n_in).astype(float) + (seed % 2) * rng.random(n_in)
    s_out = rng.integers(1, 10, n_out).astype(float) + (seed % 2) * rng.random(n_out)
    expected = roc_auc_score(np.r_[np.zeros(n_in), np.ones(n_out)], np.r_[s_in, s_out])
    assert ood.auroc(s_in, s_out) == pytest.approx(expected, abs=1e-12)
