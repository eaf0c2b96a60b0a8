"""The two-level bootstrap (training seeds, then chips) against data whose answer is known.

Datasets are simulated as ``value[seed, chip] = mu + a[seed] + b[chip] (+ e[seed, chip])``: ``a``
the training-run effect (sd ``tau``), ``b`` the chip's fault realization, shared by every seed
(chip ``i`` is the same chip in every seed). The interval under test is the percentile interval
of the replicate means; coverage of ``mu`` is counted over many datasets and compared with 95 %
within three binomial standard deviations of the count.
"""

import numpy as np
import pytest

from invnorm_jax.errors import ArgumentError
from invnorm_jax.pipeline.claims.bootstrap import replicate_means, resample_weights, two_level_weights

SEEDS, CHIPS, N_DATA, N_BOOT = 40, 60, 1000, 500
#: The percentile bootstrap of a mean of n values has variance (n - 1) / n of the sample's and
#: uses normal quantiles where the t's apply: at 40 seeds it covers about 93.8 % (P(|t_39| <
#: 1.96 sqrt(39/40))), at 60 chips about 94.2 %. Nominal 95 % less this much is the target.
FINITE_SAMPLE = 0.015


def _datasets(tau, sigma=1.0, eps=0.0, seed=0):
    """``[N_DATA, SEEDS, CHIPS]`` values with mu = 0."""
    rng = np.random.default_rng(seed)
    a = tau * rng.normal(size=(N_DATA, SEEDS, 1))
    b = sigma * rng.normal(size=(N_DATA, 1, CHIPS))
    return a + b + eps * rng.normal(size=(N_DATA, SEEDS, CHIPS))


def _coverage(values, seed=1):
    """Coverage of 0 and mean width of the two-level and the chips-only (seeds pooled) 95 % intervals.

    One set of draws serves every dataset: the datasets are independent, so the count of
    covering intervals is still binomial (each dataset's interval is a valid bootstrap interval).
    """
    w_seed, w_chip = two_level_weights(SEEDS, CHIPS, N_BOOT, seed)
    out = []
    chips_only = values.mean(axis=1) @ resample_weights(CHIPS, N_BOOT, seed).T
    for boot in (replicate_means(values, w_seed, w_chip), chips_only):
        lo, hi = np.quantile(boot, [0.025, 0.975], axis=1)
        out.append(((lo <= 0) & (0 <= hi)).mean())
        out.append((hi - lo).mean())
    return out


def _binomial_sd(p=0.95):
    return np.sqrt(p * (1 - p) / N_DATA)


def test_two_level_interval_covers_the_mean_when_training_runs_differ():
    cover, _, cover_chips, _ = _coverage(_datasets(tau=2.0))
    assert abs(cover - (0.95 - FINITE_SAMPLE / 2)) <= 3 * _binomial_sd() + FINITE_SAMPLE / 2
    # Chips alone see var(b) / CHIPS = 1/60 of the true 4/40 + 1/60: sd ratio 0.38, coverage
    # P(|Z| < 1.96 * 0.38) ~ 0.54. Anything short of 0.95 by 15 binomial sds is undercoverage.
    assert cover_chips < 0.95 - 15 * _binomial_sd()


def test_without_a_seed_effect_both_bootstraps_agree():
    cover, width, cover_chips, width_chips = _coverage(_datasets(tau=0.0, eps=0.2))
    for c in (cover, cover_chips):
        assert abs(c - (0.95 - FINITE_SAMPLE / 2)) <= 3 * _binomial_sd() + FINITE_SAMPLE / 2
    # The seed draw adds only var(e) / (SEEDS * CHIPS), 0.04 / 2400, to 1 / 60: widths within 2 %.
    assert width == pytest.approx(width_chips, rel=0.02)
    # Identical seeds: the seed draw changes nothing, and the chip draws are the chips-only ones.
    same = np.repeat(_datasets(tau=0.0)[:5, :1], SEEDS, axis=1)
    w_seed, w_chip = two_level_weights(SEEDS, CHIPS, N_BOOT, 7)
    chips_only = same[:, 0] @ resample_weights(CHIPS, N_BOOT, 7).T
    np.testing.assert_allclose(replicate_means(same, w_seed, w_chip), chips_only, rtol=1e-12, atol=1e-12)


def test_draws_are_deterministic_and_one_seed_is_the_chips_only_bootstrap():
    a, b = two_level_weights(3, 7, 50, seed=11), two_level_weights(3, 7, 50, seed=11)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(two_level_weights(3, 7, 50, seed=12)[0], a[0])
    w_seed, w_chip = a
    for w, n in ((w_seed, 3), (w_chip, 7)):  # counts over n, summing to one
        np.testing.assert_allclose(w.sum(axis=1), 1.0)
        np.testing.assert_allclose(w * n, np.round(w * n))
    one_seed, chips = two_level_weights(1, 7, 50, seed=11)
    assert np.all(one_seed == 1.0) and np.array_equal(chips, w_chip)
    idx = np.random.default_rng(11).integers(0, 7, size=(50, 7))  # the documented chip draws
    np.testing.assert_allclose(chips, np.stack([np.bincount(r, minlength=7) for r in idx]) / 7)


def test_replicate_mean_is_the_mean_over_the_drawn_seeds_and_chips():
    rng = np.random.default_rng(3)
    v = rng.normal(size=(4, 5))
    w_seed, w_chip = two_level_weights(4, 5, 20, seed=2)
    r = np.random.default_rng(2)
    chips, seeds = r.integers(0, 5, size=(20, 5)), r.integers(0, 4, size=(20, 4))
    by_hand = [v[np.ix_(seeds[k], chips[k])].mean() for k in range(20)]
    np.testing.assert_allclose(replicate_means(v, w_seed, w_chip), by_hand)


@pytest.mark.parametrize("args", [(0, 5, 10), (2, 0, 10), (2, 5, 0), (2.5, 5, 10)])
def test_bad_counts_are_input_errors(args):
    with pytest.raises(ArgumentError):
        two_level_weights(*args, seed=0)
