"""The claims' bootstrap: resampling training seeds and chips, and the simultaneous band over levels.

A sweep stores, per method and level, a ``[seed, chip]`` matrix of the metric
(:meth:`invnorm_jax.pipeline.results.Level.matrix`). Seed ``s`` of every method shares its data order and
initialization key, and chip ``i`` is the same fault realization for every seed, method and level,
so one replicate draws the seeds and the chips once and applies the draw to every method and level:
the comparison stays paired on both axes. The generic resampler is :func:`two_level_weights`; a
replicate's mean over seeds and chips is ``w_seed[b] @ V @ w_chip[b]`` (:func:`replicate_means`).
docs/claims.md gives the rules.
"""

from __future__ import annotations

import functools

import numpy as np

from invnorm_jax._checks import check_positive_int
from invnorm_jax.pipeline.results import TaskResult

CONFIDENCE = 0.95
MIN_CHIPS = 20  # fewer chips than this: the row's note calls its interval rough


def _counts(idx: np.ndarray, size: int) -> np.ndarray:
    """``[n_boot, size]`` draw counts over ``size`` of the index draws ``idx [n_boot, size]``."""
    n_boot = idx.shape[0]
    flat = (idx + size * np.arange(n_boot)[:, None]).ravel()
    return np.bincount(flat, minlength=n_boot * size).reshape(n_boot, size) / size


def resample_weights(num_chips: int, n_boot: int, seed: int) -> np.ndarray:
    """``[n_boot, num_chips]`` weights of a paired bootstrap: how often each chip is drawn, over ``num_chips``.

    A mean over chips of replicate ``b`` is ``values @ w[b]``; the draws are
    ``numpy.random.default_rng(seed).integers(0, num_chips, (n_boot, num_chips))`` and depend only
    on ``(num_chips, n_boot, seed)``, so every method, level and claim shares them.

    >>> w = resample_weights(5, 3, seed=0)
    >>> w.shape, bool(np.allclose(w.sum(axis=1), 1.0))
    ((3, 5), True)
    """
    return two_level_weights(1, num_chips, n_boot, seed)[1]


def two_level_weights(num_seeds: int, num_chips: int, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Weights of a two-level bootstrap: ``(w_seed [n_boot, num_seeds], w_chip [n_boot, num_chips])``.

    Replicate ``b`` draws ``num_seeds`` training seeds with replacement and, independently,
    ``num_chips`` chips with replacement; each weight is how often its seed (chip) is drawn, over
    the count, so the replicate's mean of a ``[seed, chip]`` matrix ``V`` is
    ``w_seed[b] @ V @ w_chip[b]``. The generator ``numpy.random.default_rng(seed)`` draws the chips
    first (``integers(0, num_chips, (n_boot, num_chips))``), then the seeds: with one seed, the chip
    weights are exactly :func:`resample_weights`'s, the chips-only bootstrap.

    Raises:
      ArgumentError: a count that is not a positive integer.

    >>> w_seed, w_chip = two_level_weights(3, 5, 4, seed=0)
    >>> w_seed.shape, w_chip.shape, bool(np.allclose(w_seed.sum(axis=1), 1.0))
    ((4, 3), (4, 5), True)
    >>> V = np.arange(15.0).reshape(3, 5)  # [seed, chip]
    >>> bool(np.allclose(replicate_means(V, w_seed, w_chip), [w_seed[b] @ V @ w_chip[b] for b in range(4)]))
    True
    """
    num_seeds, num_chips = check_positive_int(num_seeds, "num_seeds"), check_positive_int(num_chips, "num_chips")
    return _draws(num_seeds, num_chips, check_positive_int(n_boot, "n_boot"), int(seed))


@functools.lru_cache(maxsize=8)
def _draws(num_seeds: int, num_chips: int, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The draws of :func:`two_level_weights`, read-only and kept: every claim of a run asks for the same ones."""
    rng = np.random.default_rng(seed)
    w_chip = _counts(rng.integers(0, num_chips, size=(n_boot, num_chips)), num_chips)
    w_seed = _counts(rng.integers(0, num_seeds, size=(n_boot, num_seeds)), num_seeds)
    for w in (w_seed, w_chip):
        w.flags.writeable = False
    return w_seed, w_chip


def replicate_means(values: np.ndarray, w_seed: np.ndarray, w_chip: np.ndarray) -> np.ndarray:
    """Every replicate's mean over seeds and chips: ``values [..., seed, chip]`` -> ``[..., n_boot]``.

    >>> w_seed, w_chip = two_level_weights(1, 4, 2, seed=0)
    >>> replicate_means(np.ones((2, 1, 4)), w_seed, w_chip).shape
    (2, 2)
    """
    values = np.asarray(values, dtype=np.float64)
    # One 2-D matmul over the chips of every row: numpy's stacked matmul runs far slower than BLAS.
    chips_t = np.ascontiguousarray(w_chip.T)  # a contiguous right operand: BLAS without a copy per call
    per_seed = (values.reshape(-1, values.shape[-1]) @ chips_t).reshape(values.shape[:-1] + (w_chip.shape[0],))
    return np.einsum("...sb,bs->...b", per_seed, w_seed)  # [..., n_boot]: the seeds' weights per replicate


def up_to_interval(effect: np.ndarray, boot: np.ndarray) -> tuple[tuple[float, float], tuple[float, float]]:
    """95 % intervals of ``max(effect)`` from bootstrap replicates ``boot [level, replicate]`` of the effects.

    Returns ``(band, percentile)``. ``band`` (the one verdicts use) comes from a simultaneous
    max-t band over levels: ``se`` is each level's bootstrap std, ``c`` the 95 % quantile over
    replicates of ``max_level |boot - effect| / se``; the interval is ``(max(effect - c se),
    max(effect + c se))``, which covers the largest true effect whenever the band covers every
    level's (>= 95 %), and always contains the point value. ``percentile`` is the 2.5 and 97.5 %
    quantiles of the replicates' maxima (argmax recomputed per replicate): reported only, as it
    is biased upward (docs/claims.md: with 7 levels and no effect its lower end is > 0 in ~90 % of runs).

    >>> band, pct = up_to_interval(np.array([0.0, 2.0]), np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]]))
    >>> band[0] < 2.0 < band[1]
    True
    """
    se = np.nanstd(boot, axis=1)
    dev = np.abs(boot - effect[:, None])
    ratio = np.divide(dev, se[:, None], out=np.zeros_like(dev), where=se[:, None] > 0)
    c = float(np.quantile(np.nanmax(ratio, axis=0), CONFIDENCE))
    band = (float(np.nanmax(effect - c * se)), float(np.nanmax(effect + c * se)))
    lo, hi = np.nanquantile(np.nanmax(boot, axis=0), [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2])
    return band, (float(lo), float(hi))


def stack_levels(t: TaskResult, name: str, methods: list[str]) -> tuple[list[float], np.ndarray, str, tuple]:
    """Faulty levels (> 0) common to ``methods``, values ``[method, level, seed, chip]`` (paired), a note,
    and ``(seeds, chips)``: how many of each the values rest on (chips None: only means were stored).

    Level 0 is the fault-free model (claim 10's subject): every chip is the same there, so a gain
    at level 0 would look certain to the bootstrap over chips. Seeds and chips are cut to those
    common to every method and level (seed ``s`` pairs with seed ``s``, chip ``i`` with chip ``i``).

    >>> from invnorm_jax.pipeline.results import Level, MethodResult, SweepInfo
    >>> sweep = [Level(0.0, 0.9, 0.0, [0.9] * 4), Level(0.1, 0.5, 0.0, [0.5] * 4, [[0.5] * 4, [0.5] * 4])]
    >>> t = TaskResult("accuracy", True, {"bf": SweepInfo("bit_flip", "weights")},
    ...                {"nn": MethodResult(0.9, 4, 1, {"bf": sweep})})
    >>> levels, values, note, counts = stack_levels(t, "bf", ["nn"])
    >>> levels, values.shape, counts
    ([0.1], (1, 1, 2, 4), (2, 4))
    """
    by_level = {m: {r.level: r for r in t.methods[m].sweeps[name] if r.level != 0} for m in methods}
    levels = [lv for lv in by_level[methods[0]] if all(lv in by_level[m] for m in methods)]
    if not levels:
        return [], np.zeros((len(methods), 0, 1, 0)), "", (0, 0)
    mats = [[by_level[m][lv].matrix() for lv in levels] for m in methods]
    s = min(v.shape[0] for vs in mats for v in vs)
    n = min(v.shape[1] for vs in mats for v in vs)
    note = "" if len(levels) == len(by_level[methods[0]]) else "only the levels common to every method; "
    if n < 1:  # no per-chip values: the pooled means, one "chip" of one seed
        means = np.array([[[[by_level[m][lv].mean]] for lv in levels] for m in methods], float)
        return levels, means, note + "no per-chip values: no interval; ", (len(t.seeds), None)
    note += f"only {n} chips: a rough interval; " if 2 <= n < MIN_CHIPS else ""
    note += "one chip of one seed: no interval; " if n * s < 2 else ""
    if any(v.shape != (s, n) for vs in mats for v in vs):
        note += f"the {s} seed(s) and {n} chips common to every method and level; "
    return levels, np.array([[v[:s, :n] for v in vs] for vs in mats], float), note, (s, n)


def boot_means(values: np.ndarray, n_boot: int, seed: int) -> np.ndarray | None:
    """Replicate means ``[method, level, n_boot]`` of ``values [method, level, seed, chip]``, None when
    there is nothing to resample (one value per method and level).

    >>> boot_means(np.ones((2, 3, 2, 5)), 10, seed=0).shape, boot_means(np.ones((2, 3, 1, 1)), 10, seed=0)
    ((2, 3, 10), None)
    """
    _, _, num_seeds, num_chips = values.shape
    if num_seeds * num_chips < 2:
        return None
    return replicate_means(values, *two_level_weights(num_seeds, num_chips, n_boot, seed))
