"""Ablations: the rows a config gets, the paired comparison against a reference, and one smoke run."""

import json

import numpy as np
import pytest

from invnorm_jax import ablate, cli
from invnorm_jax import config as config_lib
from invnorm_jax.results import Level, MethodResult, SweepInfo, TaskResult


def _task(chips_by_level):
    rows = [Level(level=lv, mean=float(np.mean(c)), std=float(np.std(c)), chips=list(c))
            for lv, c in chips_by_level.items()]
    return TaskResult(metric="accuracy", higher_is_better=True, sweeps={"bit_flip": SweepInfo("bit_flip", "weights")},
                      methods={"proposed": MethodResult(fault_free=0.9, num_chips=len(rows[0].chips), num_samples=5,
                                                        sweeps={"bit_flip": rows})})


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
    assert {"mode=element", "init std 0.55", "T=1 (deterministic)", "T=10", "T=20", "spindrop rate 0.1",
            "spatial_spindrop rate 0.1", "per-inference additive"} == set(digits)
    assert digits["mode=element"].training and not digits["T=10"].training
    assert digits["per-inference additive"].sweeps == ("additive",)
    co2 = {a.name for a in ablate.ablations_for(config_lib.load_config("co2"))}
    assert "mode=element" not in co2 and "T=10" in co2  # no ResNet sites, no pre-activation sweep
    assert "norm on gates" in co2 and "norm on gates" not in digits
    for a in ablate.ablations_for(config_lib.load_config("digits")):  # every override is a valid config
        config_lib.load_config("digits", overrides=a.overrides)


@pytest.mark.slow
def test_ablate_smoke_writes_the_table(tmp_path, capsys):
    out = tmp_path / "abl"
    assert cli.main(["ablate", "--task", "digits", "--smoke", "--out", str(out), "--no-progress",
                     "--config.sweeps.bit_flip.levels=(0, 0.2)", "--config.train.steps=4"]) == 0
    result = json.loads((out / "ablation.json").read_text())
    names = {r["ablation"] for r in result["rows"]}
    assert {"mode=element", "T=1 (deterministic)", "per-inference additive"} <= names
    for r in result["rows"]:
        assert r["low"] <= r["change"] <= r["high"] and r["num_chips"] == 4
    assert (out / "ablation.png").read_bytes().startswith(b"\x89PNG")
    assert "| mode=element | proposed |" in (out / "ablation.md").read_text()
    # Eval-only rows re-used the default checkpoints; the saved training config was kept.
    saved = json.loads((out / "default" / "proposed" / "config.json").read_text())
    assert saved["eval"]["num_samples"] == 2 and not saved["eval"]["deterministic"]
