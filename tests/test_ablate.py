"""Ablations: the rows a config gets, the paired comparison against a reference, and one smoke run."""

import json

import numpy as np
import pytest

from invnorm_jax.pipeline import ablate, cli
from invnorm_jax.pipeline import config as config_lib
from invnorm_jax.pipeline.results import Level, MethodResult, SweepInfo, TaskResult


def _task(chips_by_level):
    rows = [
        Level(level=lv, mean=float(np.mean(c)), std=float(np.std(c)), chips=list(c)) for lv, c in chips_by_level.items()
    ]
    return TaskResult(
        metric="accuracy",
        higher_is_better=True,
        sweeps={"bit_flip": SweepInfo("bit_flip", "weights")},
        methods={
            "proposed": MethodResult(
                fault_free=0.9, num_chips=len(rows[0].chips), num_samples=5, sweeps={"bit_flip": rows}
            )
        },
    )


def test_compare_is_paired_over_chips_and_skips_level_zero():
    rng = np.random.default_rng(0)
    n = 400
    base = {0.0: np.full(n, 0.9), 0.1: rng.uniform(0.5, 0.9, n), 0.2: rng.uniform(0.2, 0.6, n)}
    shift = rng.normal(0.02, 0.01, n)  # a small per-chip gain on top of a large between-chip spread
    variant = {0.0: np.full(n, 0.1), 0.1: base[0.1] + shift, 0.2: base[0.2] + shift}
    r = ablate.compare(_task(base), _task(variant), "proposed", "bit_flip")
    # Reference in float64: the mean over faulty levels per chip, then the paired difference.
    d = shift
    assert r["change"] == pytest.approx(d.mean(), abs=1e-12)
    half = 1.96 * d.std(ddof=1) / np.sqrt(n)
    assert (r["low"], r["high"]) == pytest.approx((d.mean() - half, d.mean() + half), abs=1e-12)
    assert r["low"] > 0  # pairing sees the gain the between-chip spread would hide
    assert r["default"] == pytest.approx(np.mean((base[0.1] + base[0.2]) / 2))


def test_rows_follow_the_config():
    digits = {a.name: a for a in ablate.ablations_for(config_lib.load_config("digits"))}
    assert {
        "mode=element",
        "init std 0.55",
        "T=1 (deterministic)",
        "T=10",
        "T=20",
        "rate 0.1",
        "rate 0.2",
        "rate 0.5",
        "per-inference additive",
    } == set(digits)
    assert digits["mode=element"].training and not digits["T=10"].training
    assert digits["mode=element"].methods == ("proposed",)
    assert digits["per-inference additive"].sweeps == ("additive",)
    co2 = {a.name for a in ablate.ablations_for(config_lib.load_config("co2"))}
    assert "mode=element" not in co2 and "T=10" in co2  # no ResNet sites, no pre-activation sweep
    assert "norm on gates" in co2 and "norm on gates" not in digits
    assert not any(n.startswith("per-inference") for n in co2)
    for a in ablate.ablations_for(config_lib.load_config("digits")):  # every override is a valid config
        config_lib.load_config("digits", overrides=a.overrides)


@pytest.mark.parametrize("variant, rates", [("full", {0.1, 0.2, 0.5}), ("quick", {0.1, 0.5}), ("smoke", {0.1})])
def test_rate_and_read_noise_rows_are_the_same_for_every_method(variant, rates):
    config = config_lib.load_config("digits", variant)
    rows = ablate.ablations_for(config)
    rate_rows = [a for a in rows if a.family == "rate"]
    assert {a.value for a in rate_rows} == rates and config.rate == 0.3  # the default is not a row of its own
    for a in rate_rows:
        # One override for all three dropout methods (nn has no rate): nothing differs per method.
        assert a.methods == ("spindrop", "spatial_spindrop", "proposed") and a.training
        assert a.overrides == (f"rate={a.value}",)
        assert config_lib.load_config("digits", variant, a.overrides).rate == a.value
    noise = [a for a in rows if a.name.startswith("per-inference")]
    assert [(a.methods, a.training) for a in noise] == [(("nn", "spindrop", "spatial_spindrop", "proposed"), False)]
    # A subset of methods keeps the rows to that subset, and a missing proposed method drops its own rows.
    few = ablate.ablations_for(config_lib.load_config("digits", variant, ["methods=nn,spindrop"]))
    assert {a.methods for a in few} == {("spindrop",), ("nn", "spindrop")}


def test_table_puts_the_methods_of_one_ablation_side_by_side():
    rng = np.random.default_rng(1)
    methods = ("spindrop", "proposed")

    def task(offset):
        t = _task({0.0: np.full(8, 0.9), 0.2: rng.uniform(0.4, 0.8, 8) + offset})
        t.methods = dict.fromkeys(methods, t.methods["proposed"])
        return t

    rows = [
        ablate.Ablation(f"rate {r:g}", "", methods, (f"rate={r}",), True, family="rate", value=r) for r in (0.1, 0.5)
    ]
    jobs = [(a, m, None) for a in rows for m in methods][::-1]  # the jobs' order is not the table's
    tasks = [task(0.05 * i) for i in range(len(jobs))]
    table = ablate._table(rows, jobs, tasks, task(0.0))
    assert [(r["ablation"], r["method"]) for r in table] == [(a.name, m) for a in rows for m in methods]
    assert [r["value"] for r in table] == [0.1, 0.1, 0.5, 0.5] and {r["family"] for r in table} == {"rate"}
    for r, t in zip(table, [tasks[jobs.index((a, m, None))] for a in rows for m in methods]):
        assert r["variant"] == pytest.approx(np.mean(t.methods[r["method"]].sweeps["bit_flip"][1].chips))


@pytest.mark.slow
def test_ablate_smoke_writes_the_table(tmp_path, capsys):
    out = tmp_path / "abl"
    assert (
        cli.main(
            [
                "ablate",
                "--task",
                "digits",
                "--smoke",
                "--out",
                str(out),
                "--no-progress",
                "--config.sweeps.bit_flip.levels=(0, 0.2)",
                "--config.train.steps=4",
            ]
        )
        == 0
    )
    result = json.loads((out / "ablation.json").read_text())
    names = {r["ablation"] for r in result["rows"]}
    assert {"mode=element", "T=1 (deterministic)", "rate 0.1", "per-inference additive"} <= names
    methods = {(r["ablation"], r["method"]) for r in result["rows"]}
    assert {("rate 0.1", m) for m in ("spindrop", "spatial_spindrop", "proposed")} <= methods
    assert {("per-inference additive", m) for m in ("nn", "spindrop", "spatial_spindrop", "proposed")} <= methods
    for r in result["rows"]:
        assert r["low"] <= r["change"] <= r["high"] and r["num_chips"] == 4
    assert (out / "ablation.png").read_bytes().startswith(b"\x89PNG")
    md = (out / "ablation.md").read_text()
    assert "| mode=element | proposed |" in md and "| rate 0.1 | spatial_spindrop | bit_flip |" in md
    # Eval-only rows re-used the default checkpoints; the saved training config was kept.
    saved = json.loads((out / "default" / "proposed" / "config.json").read_text())
    assert saved["eval"]["num_samples"] == 2 and not saved["eval"]["deterministic"]
