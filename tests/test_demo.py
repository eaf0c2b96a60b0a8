"""The main job end to end: `invnorm-jax demo` on a tiny setting writes a complete report."""

import json

import numpy as np
import pytest

from invnorm_jax import cli
from invnorm_jax.nn import METHODS

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    code = cli.main(["demo", "--smoke", "--tasks", "digits", "co2", "--out", str(out), "--no-progress", "--no-ood"])
    assert code == 0
    return out


def test_demo_writes_every_file(demo_run):
    for name in ("results.json", "results.csv", "report.md", "digits_robustness.png", "co2_robustness.png"):
        assert (demo_run / name).is_file(), name
    for task in ("digits", "co2"):
        for method in METHODS:
            assert any((demo_run / task / method / "checkpoints").iterdir()), (task, method)
    report = (demo_run / "report.md").read_text()
    assert "Table I" in report and "| digits (accuracy %) |" in report and "| co2 (RMSE) |" in report


def test_plots_are_valid_pngs(demo_run):
    for png in demo_run.glob("*.png"):
        data = png.read_bytes()
        assert data[:8] == PNG and len(data) > 1000, png
        assert data[12:16] == b"IHDR"


def test_results_schema_and_level_zero_equals_fault_free(demo_run):
    results = json.loads((demo_run / "results.json").read_text())
    assert set(results["tasks"]) == {"digits", "co2"}
    expected = {"digits": ("accuracy", True, {"bit_flip", "additive"}),
                "co2": ("rmse", False, {"additive", "multiplicative", "uniform"})}
    for task, (metric, higher, kinds) in expected.items():
        t = results["tasks"][task]
        assert t["metric"] == metric and t["higher_is_better"] is higher
        assert set(t["methods"]) == set(METHODS)
        for method, m in t["methods"].items():
            assert np.isfinite(m["fault_free"])
            assert set(m["sweeps"]) == kinds
            for kind, rows in m["sweeps"].items():
                assert rows[0]["level"] == 0.0
                for row in rows:
                    assert set(row) == {"level", "mean", "std", "chips"}
                    assert len(row["chips"]) == m["num_chips"]
                    assert abs(np.mean(row["chips"]) - row["mean"]) < 1e-9
                # Level 0 is the fault-free model on every chip, with the same MC sample keys.
                assert rows[0]["chips"] == pytest.approx([m["fault_free"]] * m["num_chips"], abs=1e-6)
                assert rows[0]["std"] == pytest.approx(0.0, abs=1e-6)


def test_csv_has_a_row_per_level(demo_run):
    results = json.loads((demo_run / "results.json").read_text())
    rows = (demo_run / "results.csv").read_text().strip().splitlines()
    expected = sum(1 + sum(len(v) for v in m["sweeps"].values())
                   for t in results["tasks"].values() for m in t["methods"].values())
    assert len(rows) == 1 + expected


def test_rerun_reuses_checkpoints_and_gives_the_same_numbers(demo_run, tmp_path):
    before = json.loads((demo_run / "results.json").read_text())
    code = cli.main(["demo", "--smoke", "--tasks", "digits", "--methods", "proposed", "--out", str(demo_run),
                     "--no-progress", "--no-ood"])
    assert code == 0
    after = json.loads((demo_run / "results.json").read_text())
    a, b = (r["tasks"]["digits"]["methods"]["proposed"] for r in (after, before))
    assert a.pop("seconds")["train"] < b.pop("seconds")["train"]  # loaded, not trained again
    assert a == b


def test_unknown_config_is_a_clear_cli_error(capsys):
    assert cli.main(["train", "--config", "no_such_experiment"]) == 2
    assert "config 'no_such_experiment' not found" in capsys.readouterr().err
