"""The main job end to end: `invnorm-jax demo` on a tiny setting writes a complete report."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from invnorm_jax.nn import PAPER_METHODS as METHODS
from invnorm_jax.pipeline import cli
from invnorm_jax.pipeline import results as results_lib

pytestmark = pytest.mark.slow

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    code = cli.main(
        [
            "demo",
            "--smoke",
            "--tasks",
            "digits",
            "co2",
            "--out",
            str(out),
            "--no-progress",
            "--no-ood",
            "--config.eval.num_chips=3",
        ]
    )
    assert code == 0
    return out


def test_demo_writes_every_file(demo_run):
    for name in (
        "results.json",
        "config.json",
        "results.csv",
        "report.md",
        "digits_robustness.png",
        "co2_robustness.png",
    ):
        assert (demo_run / name).is_file(), name
    for task in ("digits", "co2"):
        for method in METHODS:
            assert any((demo_run / task / method / "checkpoints").iterdir()), (task, method)
            saved = json.loads((demo_run / task / method / "config.json").read_text())
            assert saved["name"] == task and saved["eval"]["num_chips"] == 3
            lines = (demo_run / task / method / "metrics.jsonl").read_text().splitlines()
            assert json.loads(lines[-1])["step"] == saved["train"]["steps"]
    report = (demo_run / "report.md").read_text()
    assert "Table I" in report and "| digits (accuracy %) |" in report and "| co2 (RMSE) |" in report


def test_plots_are_valid_pngs(demo_run):
    for png in demo_run.glob("*.png"):
        data = png.read_bytes()
        assert data[:8] == PNG and len(data) > 1000, png
        assert data[12:16] == b"IHDR"


def test_saved_config_shows_the_override(demo_run):
    saved = json.loads((demo_run / "config.json").read_text())
    assert set(saved) == {"digits", "co2"}
    assert all(c["eval"]["num_chips"] == 3 and c["overrides"] == ["eval.num_chips=3"] for c in saved.values())
    results = results_lib.load(demo_run)
    assert results.settings["overrides"] == ["eval.num_chips=3"]
    assert results.tasks["digits"].config["eval"]["num_chips"] == 3


def test_results_schema_and_level_zero_equals_fault_free(demo_run):
    results = json.loads((demo_run / "results.json").read_text())
    assert results["version"] == results_lib.SCHEMA_VERSION
    assert set(results["tasks"]) == {"digits", "co2"}
    expected = {
        "digits": ("accuracy", True, {"bit_flip", "additive"}),
        "co2": ("rmse", False, {"bit_flip", "additive", "multiplicative", "uniform"}),
    }
    for task, (metric, higher, kinds) in expected.items():
        t = results["tasks"][task]
        assert t["metric"] == metric and t["higher_is_better"] is higher
        assert set(t["methods"]) == set(METHODS)
        for _method, m in t["methods"].items():
            assert np.isfinite(m["fault_free"])
            assert set(m["sweeps"]) == kinds
            for _kind, rows in m["sweeps"].items():
                assert rows[0]["level"] == 0.0
                for row in rows:
                    assert set(row) == {"level", "mean", "std", "chips", "seeds"}
                    assert row["seeds"] is None  # one training seed: no per-seed rows
                    assert len(row["chips"]) == m["num_chips"]
                    assert abs(np.mean(row["chips"]) - row["mean"]) < 1e-9
                # Level 0 is the fault-free model on every chip, with the same MC sample keys.
                assert rows[0]["chips"] == pytest.approx([m["fault_free"]] * m["num_chips"], abs=1e-6)
                assert rows[0]["std"] == pytest.approx(0.0, abs=1e-6)


def test_csv_has_a_row_per_level(demo_run):
    results = json.loads((demo_run / "results.json").read_text())
    rows = (demo_run / "results.csv").read_text().strip().splitlines()
    expected = sum(
        1 + sum(len(v) for v in m["sweeps"].values()) for t in results["tasks"].values() for m in t["methods"].values()
    )
    assert len(rows) == 1 + expected


def test_rerun_reuses_checkpoints_and_gives_the_same_numbers(demo_run, tmp_path):
    before = json.loads((demo_run / "results.json").read_text())
    code = cli.main(
        [
            "demo",
            "--smoke",
            "--tasks",
            "digits",
            "--methods",
            "proposed",
            "--out",
            str(demo_run),
            "--no-progress",
            "--no-ood",
            "--config.eval.num_chips=3",
        ]
    )
    assert code == 0
    after = json.loads((demo_run / "results.json").read_text())
    a, b = (r["tasks"]["digits"]["methods"]["proposed"] for r in (after, before))
    assert a.pop("seconds")["train"] < b.pop("seconds")["train"]  # loaded, not trained again
    assert a == b


def test_sweep_on_a_workdir_trained_with_another_config_names_the_keys(demo_run, tmp_path, capsys):
    args = [
        "sweep",
        "--config",
        "digits:smoke",
        "--workdir",
        str(demo_run / "digits"),
        "--out",
        str(tmp_path),
        "--no-progress",
        "--method",
        "proposed",
    ]
    assert cli.main(args + ["--config.train.steps=9", "--config.seed=1"]) == 2
    err = capsys.readouterr().err
    assert "trained with a different config" in err and "seed: 0 -> 1" in err and "train.steps: 8 -> 9" in err
    # Evaluation settings are free to change: the same checkpoints, 2 chips.
    assert cli.main(args + ["--config.eval.num_chips=2"]) == 0
    assert results_lib.load(tmp_path).tasks["digits"].methods["proposed"].num_chips == 2


def test_cli_end_to_end_at_xla_default_optimization_level(tmp_path):
    # The test session compiles at level 0 (conftest.py); users get XLA's default.
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    cmd = [
        sys.executable,
        "-m",
        "invnorm_jax.pipeline.cli",
        "demo",
        "--smoke",
        "--tasks",
        "digits",
        "--methods",
        "nn",
        "proposed",
        "--no-ood",
        "--out",
        str(tmp_path / "run"),
        "--no-progress",
    ]
    done = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    task = results_lib.load(tmp_path / "run").tasks["digits"]
    for m in task.methods.values():
        assert 0.0 <= m.fault_free <= 1.0
        for rows in m.sweeps.values():
            assert rows[0].chips == pytest.approx([m.fault_free] * m.num_chips, abs=1e-6)


def test_unknown_config_is_a_clear_cli_error(capsys):
    assert cli.main(["train", "--config", "no_such_experiment"]) == 2
    assert "config 'no_such_experiment' not found" in capsys.readouterr().err
