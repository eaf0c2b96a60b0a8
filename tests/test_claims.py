"""The claims report: up-to gains, the strongest baseline per level, the paired bootstrap, verdicts, files.

Every expectation is computed here by hand (plain loops and numpy means) from synthetic results
whose per-chip values are known, not by calling the code under test a second way.
"""

import json

import numpy as np
import pytest

from invnorm_jax.pipeline import claims
from invnorm_jax.pipeline.results import Level, MethodResult, OODResult, OODShift, Results, SweepInfo, TaskResult

LEVELS = (0.0, 0.1, 0.2)


def _method(sweeps: dict, fault_free: float = 0.9) -> MethodResult:
    """``sweeps``: name -> ``[level, chip]`` values at :data:`LEVELS`."""
    out = {}
    for name, values in sweeps.items():
        v = np.asarray(values, float)
        out[name] = [
            Level(lv, float(row.mean()), float(row.std()), [float(x) for x in row]) for lv, row in zip(LEVELS, v)
        ]
    num_chips = len(next(iter(out.values()))[0].chips) if out else 0
    return MethodResult(fault_free=fault_free, num_chips=num_chips, num_samples=5, sweeps=out)


def _task(values: dict, *, kind="bit_flip", metric="accuracy", sweep="bf", fault_free=None, ood=None) -> TaskResult:
    """``values``: method -> ``[level, chip]`` array of one sweep."""
    fault_free = fault_free or {}
    return TaskResult(
        metric=metric,
        higher_is_better=metric != "rmse",
        sweeps={sweep: SweepInfo(kind, "weights")},
        methods={m: _method({sweep: v}, fault_free.get(m, 0.9)) for m, v in values.items()},
        ood=ood,
    )


def _rows(results, claim, **kw):
    return [r for r in claims.evaluate_claims(results, **kw) if r.claim == claim]


def _row(rows, baseline):
    (row,) = [r for r in rows if r.baseline == baseline]
    return row


def _noisy(rng, means, chips, sd):
    return np.asarray(means, float)[:, None] + sd * rng.normal(size=(len(means), chips))


def test_up_to_gain_is_the_best_levels_difference_of_chip_means():
    rng = np.random.default_rng(1)
    nn = _noisy(rng, [0.95, 0.60, 0.20], 20, 0.05)
    prop = _noisy(rng, [0.95, 0.85, 0.40], 20, 0.05)
    rows = _rows(Results(tasks={"t": _task({"nn": nn, "proposed": prop})}), 1, n_boot=200)
    gains = {i: 100 * (sum(prop[i]) / 20 - sum(nn[i]) / 20) for i in (1, 2)}  # level 0 is fault-free: not a gain
    best = max(gains, key=gains.get)
    row = _row(rows, "nn")
    assert row.headline and row.task == "t" and row.sweep == "bf" and row.unit == "pp"
    assert row.measured == pytest.approx(gains[best]) and row.best_level == LEVELS[best]
    assert row.proposed_value == pytest.approx(100 * prop[best].mean())
    rel = [100 * (prop[i].mean() - nn[i].mean()) / nn[i].mean() for i in (1, 2)]
    assert row.relative == pytest.approx(max(rel))


def test_strongest_baseline_is_chosen_per_level():
    # NN is the best baseline at level 0, SpinDrop at 0.1, Spatial-SpinDrop at 0.2.
    c = 20
    const = lambda *v: np.repeat(np.asarray(v, float)[:, None], c, axis=1)  # noqa: E731
    values = {
        "nn": const(0.99, 0.30, 0.10),
        "spindrop": const(0.90, 0.70, 0.20),
        "spatial_spindrop": const(0.80, 0.50, 0.50),
        "proposed": const(0.98, 0.80, 0.55),
    }
    rows = _rows(Results(tasks={"t": _task(values)}), 2, n_boot=100)
    # vs the strongest per faulty level: +10, +5 pp -> 10 at 0.1 (SpinDrop strongest there).
    strongest = _row(rows, "strongest")
    assert strongest.measured == pytest.approx(10.0) and strongest.best_level == 0.1
    assert "spindrop" in strongest.note and strongest.baseline_value == pytest.approx(70.0)
    # vs the dropout BayNNs (stronger of the two per level): 10, 5 -> 10 at 0.1.
    assert _row(rows, "dropout").measured == pytest.approx(10.0) and _row(rows, "dropout").headline
    assert _row(rows, "spindrop").measured == pytest.approx(35.0)  # 10, 35
    assert _row(rows, "spatial_spindrop").measured == pytest.approx(30.0)  # 30, 5
    # A claim can hold against the NN and fail against the strongest baseline.
    values["proposed"] = values["spindrop"]
    rows1 = _rows(Results(tasks={"t": _task(values)}), 1, n_boot=100)
    assert _row(rows1, "nn").measured == pytest.approx(40.0) and _row(rows1, "nn").verdict == "holds in part"
    assert _row(rows1, "strongest").measured == pytest.approx(0.0)
    assert _row(rows1, "strongest").verdict == "does not hold"


def test_bootstrap_matches_a_plain_loop_that_recomputes_the_argmax():
    rng = np.random.default_rng(2)
    c, n_boot = 15, 300
    nn = _noisy(rng, [0.9, 0.6, 0.55], c, 0.1)
    prop = _noisy(rng, [0.9, 0.7, 0.66], c, 0.1)  # levels 0.1 and 0.2 nearly tied: the argmax varies
    row = _row(_rows(Results(tasks={"t": _task({"nn": nn, "proposed": prop})}), 1, n_boot=n_boot, seed=5), "nn")
    idx = np.random.default_rng(5).integers(0, c, size=(n_boot, c))  # the draws resample_weights documents
    gains = np.array([[100 * (prop[i, idx[b]].mean() - nn[i, idx[b]].mean()) for i in (1, 2)] for b in range(n_boot)])
    assert len(set(np.argmax(gains, axis=1))) > 1
    assert row.interval_percentile == pytest.approx(tuple(np.quantile(gains.max(axis=1), [0.025, 0.975])))
    # The band: each level's point gain +- c * its bootstrap std, c the 95 % quantile of the largest
    # standardized deviation over levels; the interval runs from the largest lower to the largest upper end.
    point = np.array([100 * (prop[i].mean() - nn[i].mean()) for i in (1, 2)])
    se = gains.std(axis=0)
    dev = [max(abs(gains[b, j] - point[j]) / se[j] for j in (0, 1)) for b in range(n_boot)]
    crit = np.quantile(dev, 0.95)
    assert row.interval == pytest.approx((max(point - crit * se), max(point + crit * se)))
    assert row.interval[0] <= row.measured <= row.interval[1]


def test_band_keeps_false_positives_rare_where_the_percentile_interval_does_not():
    # 7 levels, 20 chips, no effect at any level: how often is the lower end above zero?
    band = percentile = 0
    for k in range(40):
        rng = np.random.default_rng(100 + k)
        levels = tuple(0.1 * i for i in range(7))
        values = {m: 0.5 + 0.05 * rng.normal(size=(7, 20)) for m in ("nn", "proposed")}
        task = TaskResult(
            "accuracy",
            True,
            {"bf": SweepInfo("bit_flip", "weights")},
            {
                m: MethodResult(
                    0.9,
                    20,
                    5,
                    {"bf": [Level(lv, float(r.mean()), float(r.std()), list(r)) for lv, r in zip(levels, v)]},
                )
                for m, v in values.items()
            },
        )
        row = _row(_rows(Results(tasks={"t": task}), 1, n_boot=400, seed=k), "nn")
        band += row.interval[0] > 0
        percentile += row.interval_percentile[0] > 0
    # Nominal one-sided rate 2.5 %, ~5 % at 20 chips: P(>= 7 of 40 | p = 0.05) < 0.5 %.
    assert band <= 6
    assert percentile >= 25  # the maximum of 7 noisy gains is biased upward


def _one_level_row(chips, seed=0, n_boot=2000, sd=1.0):
    """Proposed minus NN on each chip has plug-in std exactly ``sd`` (0.05 pp) and mean 10 pp."""
    z = np.random.default_rng(chips).normal(size=chips)
    diff = 0.10 + sd * 0.05 * (z - z.mean()) / z.std()
    nn = np.full((3, chips), 0.5)
    prop = nn.copy()
    prop[2] = 0.5 + diff
    return _row(_rows(Results(tasks={"t": _task({"nn": nn, "proposed": prop})}), 1, n_boot=n_boot, seed=seed), "nn")


def test_interval_contains_the_point_is_reproducible_and_shrinks_like_one_over_sqrt_chips():
    widths = {}
    for chips in (25, 400):
        row = _one_level_row(chips)
        lo, hi = row.interval
        assert lo < row.measured < hi and row.measured == pytest.approx(10.0)
        # Percentile interval of a mean: 2 * 1.96 * s / sqrt(n), s = 5 pp; 10 % covers the
        # Monte-Carlo error of 2000 replicates (~2 %) and the non-normality at 25 chips.
        expected = 2 * 1.96 * 5.0 / np.sqrt(chips)
        assert hi - lo == pytest.approx(expected, rel=0.10)
        widths[chips] = hi - lo
    assert widths[25] / widths[400] == pytest.approx(4.0, rel=0.15)
    assert _one_level_row(25, seed=3).interval == _one_level_row(25, seed=3).interval
    assert _one_level_row(25, seed=3).interval != _one_level_row(25, seed=4).interval


@pytest.mark.parametrize(
    "gain, sd, expected",
    [(0.70, 0.02, "holds"), (0.05, 0.01, "holds in part"), (0.0, 0.0, "does not hold"), (0.01, 0.2, "does not hold")],
)
def test_verdicts_in_clear_cut_cases(gain, sd, expected):
    rng = np.random.default_rng(3)
    nn = _noisy(rng, [0.9, 0.2, 0.1], 20, 0.0)
    prop = nn + np.asarray([0.0, gain, 0.0])[:, None] + sd * rng.normal(size=nn.shape) * np.asarray([0, 1, 0])[:, None]
    row = _row(_rows(Results(tasks={"t": _task({"nn": nn, "proposed": prop})}), 1, n_boot=500), "nn")
    assert row.verdict == expected


def test_identical_methods_give_a_zero_interval():
    nn = _noisy(np.random.default_rng(4), [0.9, 0.5, 0.3], 20, 0.05)
    row = _row(_rows(Results(tasks={"t": _task({"nn": nn, "proposed": nn.copy()})}), 1, n_boot=200), "nn")
    assert row.measured == 0.0 and row.interval == (0.0, 0.0) and row.verdict == "does not hold"


def test_level_zero_is_fault_free_and_not_a_gain():
    nn = np.repeat(np.asarray([0.50, 0.40, 0.30])[:, None], 20, axis=1)  # level 0: every chip alike
    prop = nn + np.asarray([0.30, 0.0, 0.0])[:, None]
    row = _row(_rows(Results(tasks={"t": _task({"nn": nn, "proposed": prop})}), 1, n_boot=50), "nn")
    assert row.measured == pytest.approx(0.0) and row.best_level != 0.0 and row.verdict == "does not hold"


def test_interval_stays_within_what_an_effect_can_be():
    # Gain 90 pp, bootstrap std 100 * 0.141 / sqrt(3) = 8.2 pp: 90 + 1.96 * 8.2 > 100 unclipped.
    nn = np.asarray([[0.9, 0.9, 0.9], [0.0, 0.0, 0.3], [0.5, 0.5, 0.5]])
    prop = np.asarray([[0.9, 0.9, 0.9], [1.0, 1.0, 1.0], [0.5, 0.5, 0.5]])
    row = _row(_rows(Results(tasks={"t": _task({"nn": nn, "proposed": prop})}), 1, n_boot=300), "nn")
    assert row.measured == pytest.approx(90.0) and row.interval[1] == 100.0 and row.interval[0] < 90.0
    assert "rough" in row.note


def test_rmse_reduction_counts_lower_as_better():
    rng = np.random.default_rng(5)
    base = {"nn": _noisy(rng, [1.0, 1.5, 2.0], 20, 0.01), "spindrop": _noisy(rng, [1.0, 1.2, 1.6], 20, 0.01)}
    good = _noisy(rng, [1.0, 0.7, 0.8], 20, 0.01)
    results = Results(tasks={"lstm": _task({**base, "proposed": good}, kind="multiplicative", metric="rmse")})
    rows = _rows(results, 6, n_boot=300)
    assert {r.baseline for r in rows} == {"nn", "spindrop", "strongest"}
    row = _row(rows, "strongest")  # strongest = the lower RMSE: SpinDrop
    red = [100 * (1 - good[i].mean() / min(base["nn"][i].mean(), base["spindrop"][i].mean())) for i in (1, 2)]
    assert row.headline and row.unit == "%" and row.relative is None
    assert row.measured == pytest.approx(max(red)) and row.best_level == 0.2 and row.verdict == "holds"
    bad = _noisy(rng, [1.0, 2.0, 2.5], 20, 0.01)
    results = Results(tasks={"lstm": _task({**base, "proposed": bad}, kind="multiplicative", metric="rmse")})
    row = _row(_rows(results, 6, n_boot=300), "strongest")
    assert row.measured <= 0.5 and row.verdict == "does not hold"


def test_claims_without_a_fitting_task_are_not_measured():
    nn = _noisy(np.random.default_rng(6), [0.9, 0.5, 0.3], 8, 0.05)
    rows = claims.evaluate_claims(Results(tasks={"t": _task({"nn": nn, "proposed": nn + 0.1})}), n_boot=50)
    assert {r.claim for r in rows} == set(range(1, 11))
    for cid in (2, 3, 4, 5, 6, 7, 8, 9):  # no dropout baseline, no variation sweep, no RMSE task, no OOD
        (row,) = [r for r in rows if r.claim == cid]
        assert row.task is None and row.verdict == "not measured" and "not measured in this run" in row.note
    verdicts = claims.claim_verdicts(rows)
    assert verdicts[1] == "holds in part" and verdicts[10] == "holds" and verdicts[7] == "not measured"


def test_fault_free_claim_must_hold_on_every_task():
    v = np.full((3, 4), 0.5)
    ok = _task({"nn": v, "proposed": v}, fault_free={"nn": 0.9, "proposed": 0.9})
    bad = _task({"nn": v, "proposed": v}, fault_free={"nn": 0.9, "proposed": 0.8})
    rows = claims.evaluate_claims(Results(tasks={"a": ok, "b": bad}), n_boot=10)
    assert claims.claim_verdicts(rows)[10] == "holds in part"
    assert claims.deciding_row(rows, 10).task == "b"
    rows = claims.evaluate_claims(Results(tasks={"a": bad, "b": bad}), n_boot=10)
    assert claims.claim_verdicts(rows)[10] == "does not hold"


def _ood(rates: dict) -> OODResult:
    keys = ("accuracy", "nll", "entropy", "mutual_information", "ece", "auroc_nll", "auroc_entropy", "nll_threshold")
    shift = OODShift(
        stages=[0.0, 0.5, 1.0],
        methods={
            m: {
                "healthy": [
                    {"stage": s, "detection_rate": r, **dict.fromkeys(keys, 0.5)} for s, r in zip((0.0, 0.5, 1.0), v)
                ]
            }
            for m, v in rates.items()
        },
    )
    return OODResult("mean", None, "chip", "raw", 100, None, dict.fromkeys(rates, 5), {"uniform_noise": shift})


@pytest.mark.parametrize(
    "prop, expected",
    [((0.9, 0.60, 0.58), "holds"), ((0.9, 0.40, 0.45), "holds in part"), ((0.9, 0.20, 0.30), "does not hold")],
)
def test_ood_detection_is_the_best_shifted_stage(prop, expected):
    nn = np.full((3, 4), 0.9)
    ood = _ood({"proposed": prop, "nn": (0.1, 0.2, 0.35)})
    (row,) = _rows(Results(tasks={"t": _task({"nn": nn, "proposed": nn}, ood=ood)}), 8, n_boot=10)
    assert row.measured == pytest.approx(100 * max(prop[1:])) and row.interval is None  # stage 0 is not a shift
    assert row.best_level == (0.5 if prop[1] > prop[2] else 1.0) and row.verdict == expected
    assert row.baseline_value == pytest.approx(35.0) and "false-alarm" in row.note


@pytest.mark.parametrize(
    "metric, prop, best, expected",
    [
        ("accuracy", 0.985, 0.99, "holds"),
        ("accuracy", 0.97, 0.99, "does not hold"),
        ("rmse", 1.04, 1.0, "holds"),
        ("rmse", 1.06, 1.0, "does not hold"),
    ],
)
def test_fault_free_comparable_criterion(metric, prop, best, expected):
    worse = best - 0.1 if metric == "accuracy" else best + 0.1
    v = np.full((3, 4), 0.5)
    task = _task(
        {"nn": v, "spindrop": v, "proposed": v},
        metric=metric,
        kind="additive",
        fault_free={"nn": worse, "spindrop": best, "proposed": prop},
    )
    (row,) = _rows(Results(tasks={"t": task}), 10, n_boot=10)
    gap = 100 * (prop - best) if metric == "accuracy" else 100 * (1 - prop / best)
    assert row.measured == pytest.approx(gap) and row.verdict == expected and "spindrop" in row.note


def _mixed_results():
    rng = np.random.default_rng(7)
    acc = {m: _noisy(rng, [0.9, 0.6, 0.3], 12, 0.05) for m in ("nn", "spindrop", "spatial_spindrop", "proposed")}
    acc["proposed"] += np.asarray([0.0, 0.2, 0.3])[:, None]
    ood = _ood({"proposed": (0.1, 0.5, 0.8), "nn": (0.1, 0.2, 0.3)})
    return Results(
        tasks={
            "digits": _task(acc, ood=ood),
            "lstm": _task(
                {m: _noisy(rng, [1, 1.2, 1.5], 12, 0.02) for m in ("nn", "proposed")}, kind="additive", metric="rmse"
            ),
        }
    )


def test_json_round_trip_and_file_writing(tmp_path):
    rows = claims.evaluate_claims(_mixed_results(), n_boot=100)
    d = json.loads(json.dumps(claims.claims_json(rows)))
    assert d["version"] == claims.CLAIMS_VERSION and claims.rows_from_json(d) == rows
    md, js = claims.write_claims(_mixed_results(), tmp_path, n_boot=100)
    assert md.read_text() == claims.claims_markdown(rows)
    assert claims.rows_from_json(json.loads(js.read_text())) == rows
    with pytest.raises(ValueError, match="version"):
        claims.rows_from_json(dict(d, version=99))


def test_markdown_names_every_claims_paper_value_and_the_summary():
    md = claims.claims_markdown(claims.evaluate_claims(_mixed_results(), n_boot=100))
    for value in ("58.11", "42.06", "53.55", "55.62", "30.2", "46.7", "51.84", "55.03", "78.95", "comparable"):
        assert value in md
    assert "Of 10 claims:" in md and "not measured in this run" in md
    assert md.count("| claim | paper |") == 5  # one table per group


def _seeded_task(
    values: dict, *, metric="accuracy", kind="bit_flip", config=None, naive=None, fault_free=None
) -> TaskResult:
    """``values``: method -> ``[level, seed, chip]`` array of one sweep "bf" at :data:`LEVELS`."""
    methods = {}
    for m, v in values.items():
        v = np.asarray(v, float)
        rows = [
            Level(lv, float(x.mean()), float(x.std()), [float(c) for c in x[0]], x.tolist()) for lv, x in zip(LEVELS, v)
        ]
        ff = (fault_free or {}).get(m, 0.9)
        methods[m] = MethodResult(ff, v.shape[2], 5, {"bf": rows}, fault_free_seeds=[ff] * v.shape[1])
    return TaskResult(
        metric,
        metric != "rmse",
        {"bf": SweepInfo(kind, "weights")},
        methods,
        config=config or {},
        seeds=list(range(np.asarray(next(iter(values.values()))).shape[1])),
        naive=naive,
    )


def test_several_seeds_resample_seeds_and_chips_and_pick_the_strongest_per_replicate():
    rng = np.random.default_rng(8)
    s, c, n_boot, seed = 3, 6, 300, 2
    v = {
        m: mu + 0.05 * rng.normal(size=(3, s, c)) + 0.05 * rng.normal(size=(1, s, 1))
        for m, mu in [("nn", 0.5), ("spindrop", 0.52), ("proposed", 0.6)]
    }
    (row,) = [
        r
        for r in _rows(Results(tasks={"t": _seeded_task(v)}), 1, n_boot=n_boot, seed=seed)
        if r.baseline == "strongest"
    ]
    assert (row.num_seeds, row.num_chips) == (s, c)
    draws = np.random.default_rng(seed)  # the documented draws: the chips first, then the seeds
    chips, seeds = draws.integers(0, c, size=(n_boot, c)), draws.integers(0, s, size=(n_boot, s))
    point = np.array(
        [100 * (v["proposed"][i].mean() - max(v["nn"][i].mean(), v["spindrop"][i].mean())) for i in (1, 2)]
    )
    assert row.measured == pytest.approx(point.max())
    boot = np.empty((n_boot, 2))
    for b in range(n_boot):
        for j, i in enumerate((1, 2)):
            mean = {m: x[i][np.ix_(seeds[b], chips[b])].mean() for m, x in v.items()}
            boot[b, j] = 100 * (mean["proposed"] - max(mean["nn"], mean["spindrop"]))
    se = boot.std(axis=0)
    crit = np.quantile(np.max(np.abs(boot - point) / se, axis=1), 0.95)
    assert row.interval == pytest.approx((max(point - crit * se), max(point + crit * se)))


def test_a_training_run_spread_widens_the_interval_beyond_the_chips():
    rng = np.random.default_rng(9)
    chip = 0.02 * rng.normal(size=(3, 1, 50))
    calm = {"nn": 0.5 + chip + np.zeros((3, 4, 1)), "proposed": 0.6 + chip + np.zeros((3, 4, 1))}
    runs = dict(calm, proposed=calm["proposed"] + 0.05 * rng.normal(size=(1, 4, 1)))  # training-run effect
    width = {}
    for name, v in (("calm", calm), ("runs", runs)):
        (row,) = [r for r in _rows(Results(tasks={"t": _seeded_task(v)}), 1, n_boot=400) if r.baseline == "nn"]
        width[name] = row.interval[1] - row.interval[0]
    assert width["calm"] == pytest.approx(0.0, abs=1e-9)  # the chips cancel in the paired difference
    assert width["runs"] > 2.0  # sd of the seeds' mean: 5 pp / sqrt(4) = 2.5 pp


def test_each_reading_of_the_dropout_site_gets_its_own_verdicts(tmp_path):
    rng = np.random.default_rng(10)
    prop = 0.8 + 0.02 * rng.normal(size=(3, 2, 30))
    weak, strong = prop - 0.3, prop + 0.01  # the NN ahead under the norm reading
    results = Results(
        tasks={
            "digits": _seeded_task(
                {"nn": weak, "proposed": prop}, config={"name": "digits", "dropout_site": "crossbar"}
            ),
            "digits/norm_dropout": _seeded_task(
                {"nn": strong, "proposed": prop}, config={"name": "digits", "dropout_site": "norm"}
            ),
        }
    )
    rows = claims.evaluate_claims(results, n_boot=200)
    assert claims.row_readings(rows) == ["crossbar", "norm"]
    assert {r.task for r in rows if r.reading == "norm" and r.task} == {"digits/norm_dropout"}
    assert claims.claim_verdicts(rows)[1] == "holds in part"  # the default reading
    assert claims.claim_verdicts(rows, "norm")[1] == "does not hold"
    d = claims.claims_json(rows)
    assert d["verdicts_by_reading"]["norm"]["1"] == "does not hold" and d["verdicts"]["1"] == "holds in part"
    md = claims.claims_markdown(rows)
    assert md.count("| claim | paper |") == 10 and "Under the baselines' dropout after every normalization" in md
    assert "Rests on 2 training seeds per method and 30 chips" in md and "One training seed" not in md
    assert claims.rows_from_json(json.loads(json.dumps(d))) == rows


def test_one_seed_says_what_it_cannot_tell():
    nn = _noisy(np.random.default_rng(11), [0.9, 0.5, 0.3], 20, 0.05)
    rows = claims.evaluate_claims(Results(tasks={"t": _task({"nn": nn, "proposed": nn + 0.1})}), n_boot=50)
    md = claims.claims_markdown(rows)
    assert "Rests on 1 training seed per method and 20 chips" in md
    assert "**One training seed**" in md and "best of single training runs" in md


def _co2(ff: dict, naive=None):
    rng = np.random.default_rng(12)
    v = {m: ff[m] * (1.0 + np.asarray(LEVELS)[:, None, None]) + 0.001 * rng.normal(size=(3, 2, 20)) for m in ff}
    return _seeded_task(v, metric="rmse", kind="additive", naive=naive, fault_free=ff)


NAIVE = {"persistence": 0.04, "seasonal_naive": 0.08, "seasonal_drift": 0.09}


def test_forecasts_are_measured_only_among_methods_that_beat_the_naive_forecasts():
    t = _co2({"nn": 0.037, "spindrop": 0.030, "spatial_spindrop": 0.02, "proposed": 0.025}, NAIVE)  # nn: 0.037 >= 0.036
    rows = [r for r in claims.evaluate_claims(Results(tasks={"co2": t}), n_boot=100) if r.claim in (5, 10)]
    assert all(r.naive_rmse == 0.04 and "persistence" in r.note for r in rows)
    nn = _row([r for r in rows if r.claim == 5], "nn")
    assert nn.verdict == "not measured" and "does not beat persistence/seasonal-naive" in nn.note
    strongest = _row([r for r in rows if r.claim == 5], "strongest")  # among spindrop and spatial_spindrop
    best = [min(t.methods[m].sweeps["bf"][i].mean for m in ("spindrop", "spatial_spindrop")) for i in (1, 2)]
    red = [100 * (1 - t.methods["proposed"].sweeps["bf"][i].mean / b) for i, b in zip((1, 2), best)]
    assert strongest.measured == pytest.approx(max(red)) and strongest.verdict != "not measured"
    (ff,) = [r for r in rows if r.claim == 10]
    assert ff.baseline_value == pytest.approx(0.02) and "kept out" in ff.note and "nn" in ff.note
    assert "best naive RMSE" in claims.claims_markdown(rows)


@pytest.mark.parametrize("ff", [{"nn": 0.02, "proposed": 0.037}, {"nn": 0.05, "spindrop": 0.04, "proposed": 0.02}])
def test_co2_claims_are_not_measured_when_the_proposed_method_or_every_baseline_fails_the_naive_bar(ff):
    rows = claims.evaluate_claims(Results(tasks={"co2": _co2(ff, NAIVE)}), n_boot=100)
    mine = [r for r in rows if r.claim in (5, 10)]
    assert mine and all(
        r.verdict == "not measured" and "does not beat persistence/seasonal-naive" in r.note for r in mine
    )
    assert claims.claim_verdicts(rows)[5] == "not measured" and claims.claim_verdicts(rows)[10] == "not measured"
    assert "does not beat" in "\n".join(claims.summary(rows))
    # Without stored naive RMSEs the same task is measured as before.
    assert (
        claims.claim_verdicts(claims.evaluate_claims(Results(tasks={"co2": _co2(ff)}), n_boot=100))[10]
        != "not measured"
    )
