"""The proposed method vs noisy_training in the claims report, and reports of five methods.

Expectations are computed here by hand (numpy means over the known per-chip values); the paper's
claims are checked to be untouched by a fifth method by comparing with the same run without it.
"""

import json

import numpy as np
import pytest
from matplotlib.colors import to_rgba

from invnorm_jax.pipeline import claims, report
from invnorm_jax.pipeline.claims import noisy as claims_noisy
from invnorm_jax.pipeline.results import Level, MethodResult, Results, SweepInfo, TaskResult

LEVELS = (0.0, 0.1, 0.2, 0.3)
BASE = ("nn", "spindrop", "spatial_spindrop", "proposed")
JSON_KEYS = {
    "version",
    "confidence",
    "fault_free_tolerance",
    "naive_margin",
    "claims",
    "rows",
    "verdicts",
    "verdicts_by_reading",
}


def _method(values, fault_free=0.9) -> MethodResult:
    """``values``: ``{sweep: [level, chip]}``."""
    sweeps = {
        name: [
            Level(lv, float(np.mean(r)), float(np.std(r)), [float(x) for x in r])
            for lv, r in zip(LEVELS, np.asarray(v, float))
        ]
        for name, v in values.items()
    }
    return MethodResult(fault_free, len(next(iter(sweeps.values()))[0].chips), 1, sweeps)


def _noisy(rng, means, chips=30, sd=0.03):
    return np.asarray(means, float)[:, None] + sd * rng.normal(size=(len(means), chips))


def _ood(rates: dict):
    from invnorm_jax.pipeline.results import OODResult, OODShift

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
    return OODResult("mean", None, "chip", "raw", 100, None, dict.fromkeys(rates, 1), {"uniform_noise": shift})


def _results(noisy: dict | None = None, seed: int = 3) -> Results:
    """Accuracy (bit-flip + additive) and RMSE (bit-flip) tasks of the four methods, plus ``noisy``:
    ``{task: {sweep: means}}`` for noisy_training (None: without it)."""
    rng = np.random.default_rng(seed)
    acc_means = {
        "nn": [0.9, 0.5, 0.3, 0.2],
        "spindrop": [0.9, 0.6, 0.4, 0.3],
        "spatial_spindrop": [0.9, 0.6, 0.5, 0.3],
        "proposed": [0.9, 0.8, 0.7, 0.5],
    }
    acc = {m: {s: _noisy(rng, v) for s in ("bf", "add")} for m, v in acc_means.items()}
    rmse = {
        m: {"bf": _noisy(rng, v, sd=0.01)}
        for m, v in {"nn": [1.0, 1.5, 2.0, 2.5], "proposed": [1.0, 1.2, 1.4, 1.6]}.items()
    }
    rates = {"proposed": (0.1, 0.5, 0.7), "nn": (0.1, 0.2, 0.3)}
    ff = dict.fromkeys(acc, 0.9)
    if noisy is not None:
        acc["noisy_training"] = {s: _noisy(rng, v) for s, v in noisy["digits"].items()}
        rmse["noisy_training"] = {s: _noisy(rng, v, sd=0.01) for s, v in noisy["co2"].items()}
        rates["noisy_training"], ff["noisy_training"] = (0.1, 0.95, 0.99), 0.99  # better than every baseline
    digits = TaskResult(
        "accuracy",
        True,
        {"bf": SweepInfo("bit_flip", "weights"), "add": SweepInfo("additive", "weights")},
        {m: _method(v, ff[m]) for m, v in acc.items()},
        ood=_ood(rates),
    )
    co2 = TaskResult(
        "rmse", False, {"bf": SweepInfo("bit_flip", "weights")}, {m: _method(v, 1.0) for m, v in rmse.items()}
    )
    return Results(tasks={"digits": digits, "co2": co2})


# noisy_training far ahead of every method at every faulty level (bit-flips), crossing the
# proposed method on the additive sweep, and behind it on the LSTM.
STRONG = {"digits": {"bf": [0.9, 0.95, 0.95, 0.95], "add": [0.9, 0.95, 0.5, 0.3]}, "co2": {"bf": [1.0, 1.6, 1.9, 2.2]}}


def test_paper_claims_are_untouched_by_noisy_training():
    """Even a noisy_training better than everything (sweeps, OOD, fault-free) changes no claim row."""
    without = claims.evaluate_claims(_results(), n_boot=200)
    assert claims.evaluate_claims(_results(STRONG), n_boot=200) == without
    assert all("noisy_training" not in r.note for r in without)


def test_runs_without_noisy_training_write_exactly_the_claims(tmp_path):
    r = _results()
    rows = claims.evaluate_claims(r, n_boot=200)
    assert claims_noisy.evaluate_noisy_training(r, n_boot=200) == []
    md, js = claims.write_claims(r, tmp_path, n_boot=200)
    assert md.read_text() == claims.claims_markdown(rows)
    assert json.loads(js.read_text()) == json.loads(json.dumps(claims.claims_json(rows)))
    assert set(json.loads(js.read_text())) == JSON_KEYS
    assert "noisy_training" not in md.read_text() and "device model" not in md.read_text()


def test_comparison_is_the_up_to_advantage_both_ways_by_hand(tmp_path):
    r = _results(STRONG)
    rows = {(x.task, x.sweep): x for x in claims_noisy.evaluate_noisy_training(r, n_boot=400)}
    assert set(rows) == {("digits", "bf"), ("digits", "add"), ("co2", "bf")}
    for (task, sweep), row in rows.items():
        t = r.tasks[task]
        p = np.array([lv.chips for lv in t.methods["proposed"].sweeps[sweep]])[1:].mean(axis=1)
        b = np.array([lv.chips for lv in t.methods["noisy_training"].sweeps[sweep]])[1:].mean(axis=1)
        ahead, behind = (100 * (p - b), 100 * (b - p)) if t.higher_is_better else (100 * (1 - p / b), 100 * (1 - b / p))
        assert row.measured == pytest.approx(ahead.max()) and row.best_level == LEVELS[1 + ahead.argmax()]
        assert row.reverse == pytest.approx(behind.max()) and row.reverse_level == LEVELS[1 + behind.argmax()]
        assert row.unit == ("pp" if t.higher_is_better else "%") and row.kind == t.sweeps[sweep].kind
        assert row.interval[0] <= row.measured <= row.interval[1]
        assert row.reverse_interval[0] <= row.reverse <= row.reverse_interval[1]
    # 30 chips, sd 0.03, gaps of 15 pp or more: every verdict is clear-cut.
    assert rows["digits", "bf"].verdict == "noisy_training better"
    assert rows["digits", "add"].verdict == "mixed"  # ahead at 0.1, behind at 0.2 and 0.3
    assert rows["co2", "bf"].verdict == "proposed better"
    # Both files carry the rows; claims.json reads back.
    md, js = claims.write_claims(r, tmp_path, n_boot=400)
    d = json.loads(js.read_text())
    back = claims_noisy.comparison_rows_from_json(d["noisy_training"])
    assert back == claims_noisy.evaluate_noisy_training(r, n_boot=400)
    assert "## The proposed method vs training with the device model (not a paper claim)" in md.read_text()
    assert md.read_text().count("| digits | ") >= 2 and "mixed" in md.read_text()


def test_identical_methods_are_no_difference_and_the_band_is_the_claims_band():
    same = {"digits": {s: [0.9, 0.8, 0.7, 0.5] for s in ("bf", "add")}, "co2": {"bf": [1.0, 1.2, 1.4, 1.6]}}
    r = _results(same)
    for task in ("digits", "co2"):
        t = r.tasks[task]
        t.methods["noisy_training"] = t.methods["proposed"]
    rows = claims_noisy.evaluate_noisy_training(r, n_boot=100)
    assert [x.verdict for x in rows] == ["no difference"] * 3
    assert all(x.measured == 0.0 and x.interval == (0.0, 0.0) for x in rows)
    # A difference: the band of the proposed method's advantage is the simultaneous max-t band
    # over levels from the documented draws, computed here by a plain loop.
    rng = np.random.default_rng(9)
    c, n_boot, seed = 12, 300, 4
    p, b = _noisy(rng, [0.9, 0.7, 0.66, 0.5], c, 0.1), _noisy(rng, [0.9, 0.6, 0.62, 0.5], c, 0.1)
    task = TaskResult(
        "accuracy",
        True,
        {"bf": SweepInfo("bit_flip", "weights")},
        {"proposed": _method({"bf": p}), "noisy_training": _method({"bf": b})},
    )
    (row,) = claims_noisy.evaluate_noisy_training(Results(tasks={"t": task}), n_boot=n_boot, seed=seed)
    idx = np.random.default_rng(seed).integers(0, c, size=(n_boot, c))
    boot = np.array([[100 * (p[i, idx[k]].mean() - b[i, idx[k]].mean()) for i in (1, 2, 3)] for k in range(n_boot)])
    point = np.array([100 * (p[i].mean() - b[i].mean()) for i in (1, 2, 3)])
    se = boot.std(axis=0)
    crit = np.quantile([max(abs(boot[k] - point) / se) for k in range(n_boot)], 0.95)
    assert row.interval == pytest.approx((max(point - crit * se), max(point + crit * se)))
    assert "only 12 chips" in row.note


def test_report_of_five_methods(tmp_path):
    r = _results(STRONG)
    r.tasks["digits"].methods["unnamed"] = r.tasks["digits"].methods["nn"]  # a method with no colour of its own
    fig = report.plot_task("digits", r.tasks["digits"], tmp_path / "d.png")
    ax = fig.axes[0]
    labels = [line.get_label() for line in ax.lines]
    assert labels == [report.METHOD_LABELS.get(m, m) for m in r.tasks["digits"].methods]
    assert "Noisy training" in [t.get_text() for t in ax.get_legend().get_texts()]
    colors = [to_rgba(line.get_color()) for line in ax.lines]
    assert len(set(colors)) == len(colors)  # every method its own colour
    assert colors[4] == to_rgba(report.METHOD_COLORS["noisy_training"])
    for line, band in zip(ax.lines, ax.collections):  # each band the colour of its line
        assert to_rgba(band.get_facecolor()[0], 1.0) == to_rgba(line.get_color(), 1.0)
    del r.tasks["digits"].methods["unnamed"]
    assert "| Noisy training |" in report.table1(r)
    assert report.robustness_table(r.tasks["digits"], "bf").splitlines()[0].count("|") == 7  # level + 5 methods
    path = report.write_report(r, tmp_path / "run")
    text = path.read_text()
    assert "NN and Noisy training are deterministic: 1 sample" in text
    assert "(not a paper claim)" in text and (tmp_path / "run" / "digits_ood.png").is_file()
    assert "NN is deterministic: 1 sample" in report.markdown(_results(), tmp_path)


def test_importing_the_report_leaves_the_plotting_backend_alone():
    """A notebook's inline backend survives ``import invnorm_jax.pipeline.report`` (its plots use no pyplot)."""
    import subprocess
    import sys

    code = (
        "import matplotlib; matplotlib.use('svg'); import invnorm_jax.pipeline.report; print(matplotlib.get_backend())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "svg"


def test_the_other_reading_of_the_same_config_adds_no_comparison_rows():
    """Neither method has the baselines' dropout: the norm reading's copy of a task repeats the default's rows."""
    r = _results(STRONG)
    for name, t in list(r.tasks.items()):
        t.config = {"name": name, "dropout_site": "crossbar"}
        r.tasks[name + "/norm_dropout"] = TaskResult(
            t.metric, t.higher_is_better, t.sweeps, dict(t.methods), config={"name": name, "dropout_site": "norm"}
        )
    rows = claims_noisy.evaluate_noisy_training(r, n_boot=100)
    assert {x.task for x in rows} == {"digits", "co2"}
    del r.tasks["digits"]  # no default twin left: the norm reading's task is compared
    assert "digits/norm_dropout" in {x.task for x in claims_noisy.evaluate_noisy_training(r, n_boot=100)}
