"""The Table-I configs: recipes as documented, smoke runs end to end through the CLI, table1.py.

Every smoke run is marked slow (about a minute each on 2 CPU cores) and runs in the README's
test command, so that CI trains and sweeps each Table-I experiment end to end.
"""

import importlib.util
import json
import math
import pathlib

import numpy as np
import pytest

from invnorm_jax import data
from invnorm_jax.pipeline import cli
from invnorm_jax.pipeline import config as config_lib
from invnorm_jax.pipeline import datasets as config_datasets
from invnorm_jax.testing import get_synthetic

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "invnorm_jax" / "pipeline" / "configs"
PAPER_CONFIGS = ("cifar10_resnet18", "speech_m5", "co2_lstm", "drive_unet")


def _load_table1():
    spec = importlib.util.spec_from_file_location("table1", ROOT / "experiments" / "table1.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- recipes


@pytest.mark.parametrize("name", PAPER_CONFIGS)
@pytest.mark.parametrize("variant", ("full", "quick", "smoke"))
def test_every_variant_validates(name, variant):
    config = config_lib.load_config(name, variant)
    assert config["name"] == name and config["methods"] == ("nn", "spindrop", "spatial_spindrop", "proposed")
    assert config["rate"] == 0.3
    for sweep in config["sweeps"].values():
        assert sweep["levels"][0] == 0.0 and len(sweep["levels"]) >= 2
    if variant == "smoke":
        assert config["train"]["steps"] <= 5 and config["eval"]["num_chips"] <= 4
        assert config["eval"]["num_samples"] == 2 and config["eval"]["max_test"] <= 16
        assert all(len(s["levels"]) == 2 for s in config["sweeps"].values())
    else:
        assert config["eval"]["num_chips"] == 100


@pytest.mark.parametrize("name", PAPER_CONFIGS)
def test_docstring_has_the_exact_run_command(name):
    path = CONFIGS / f"{name}.py"
    doc = path.read_text()
    assert f"invnorm-jax train --config {name} --workdir runs/" in doc
    assert f"invnorm-jax sweep --config {name} --workdir runs/" in doc


def test_paper_scale_recipes():
    cifar = config_lib.load_config("cifar10_resnet18", "full")
    assert cifar["augment"] == "crop_flip" and cifar["dataset"]["kwargs"].to_dict() == {}
    model = cifar["model"]["kwargs"]
    assert model["widths"] == (64, 128, 256, 512) and model["blocks"] == (2, 2, 2, 2)
    t = cifar["train"]
    assert (t["optimizer"], t["learning_rate"], t["schedule"], t["batch_size"], t["weight_decay"]) == (
        "sgd",
        0.1,
        "cosine",
        128,
        1e-4,
    )
    assert t["steps"] == 400 * (50_000 // 128)
    assert max(cifar["sweeps"]["bit_flip"]["levels"]) == 0.3
    assert cifar["sweeps"]["additive"]["site"] == "preactivation"

    speech = config_lib.load_config("speech_m5", "full")
    assert speech["dataset"]["kwargs"]["source"] == "folder"  # 35 words, not TFDS's 12 classes
    assert speech["model"]["kwargs"]["num_classes"] == 35 and speech["model"]["kwargs"]["bits"] == 8
    assert 0 < max(speech["sweeps"]["bit_flip"]["levels"]) <= 0.05  # 8-bit codes: far smaller rates

    co2 = config_lib.load_config("co2_lstm", "full")
    assert {s["kind"] for s in co2["sweeps"].values()} == {"bit_flip", "additive", "multiplicative", "uniform"}
    assert co2["metric"] == "rmse"

    drive = config_lib.load_config("drive_unet", "full")
    assert drive["metric"] == "miou" and drive["model"]["kwargs"]["act_bits"] == 4
    assert drive["sweeps"]["bit_flip"]["kind"] == "bit_flip" and max(drive["sweeps"]["bit_flip"]["levels"]) == 0.3
    assert drive["sweeps"]["additive"]["site"] == "weights"  # binary weights, 4-bit (not sign) activations
    assert cifar["model"]["kwargs"]["preactivation_site"] == "normalized"  # x_hat: the same units for every method


@pytest.mark.parametrize("name", ("digits", "digits_deep", "mnist1d", "co2", *PAPER_CONFIGS))
def test_every_config_has_the_papers_fault_grid(name):
    config = config_lib.load_config(name)
    kinds = {(s.kind, s.site) for s in config.sweeps.values()}
    model = config.model.name
    want = {
        "resnet": {("bit_flip", "weights"), ("additive", "preactivation")},
        "m5": {("bit_flip", "weights"), ("additive", "weights")},
        "lstm": {
            ("bit_flip", "weights"),
            ("additive", "weights"),
            ("multiplicative", "weights"),
            ("uniform", "weights"),
        },
        "unet": {("bit_flip", "weights"), ("additive", "weights")},
    }[model]
    assert kinds == want
    for sweep in config.sweeps.values():
        levels = list(sweep.levels)
        assert levels == sorted(levels) and levels[0] == 0.0 and len(levels) >= 5


# --------------------------------------------------------------------------- synthetic data


def test_synthetic_stand_ins_have_the_real_shapes_and_labels():
    cifar = get_synthetic("cifar10", num_train=24, num_test=8)
    assert cifar.x_train.shape == (24, 32, 32, 3) and cifar.x_test.shape == (8, 32, 32, 3)
    assert cifar.num_classes == 10 and cifar.extras["synthetic"]

    speech = get_synthetic("speech_commands", clips_per_word=3)
    assert speech.class_names == data.SPEECH_COMMANDS_WORDS and speech.num_classes == 35
    assert speech.x_train.shape == (35, 8000, 1) and speech.x_val.shape == speech.x_test.shape == (35, 8000, 1)
    assert sorted(speech.y_test.tolist()) == list(range(35))
    assert np.abs(speech.x_train).max() > 0.1  # real audio, not silence

    drive = get_synthetic("drive", height=40, width=56, num_train=3, num_test=2, patch_size=16, num_patches=20)
    assert drive.x_train.shape == (20, 16, 16, 1) and drive.x_test.shape == (2, 48, 64, 1)
    fov = drive.extras["test_mask"]
    vessel = drive.y_test[fov].mean()
    assert 0.02 < vessel < 0.5  # some vessels, mostly background, inside the FOV only
    assert np.all(drive.y_test[~fov] == 0)


def test_synthetic_needs_a_downloaded_dataset():
    with pytest.raises(ValueError, match="no synthetic stand-in.*cifar10, drive, speech_commands"):
        config_datasets.get_dataset("co2", {"synthetic": True})
    with pytest.raises(ValueError, match="unknown dataset"):
        config_datasets.get_dataset("imagenet", {"synthetic": True})


# --------------------------------------------------------------------------- smoke runs through the CLI


def _run_smoke(name, tmp_path, capsys):
    common = ["--config", name, "--smoke", "--workdir", str(tmp_path), "--method", "proposed", "nn", "--no-progress"]
    for command in ("train", "sweep"):
        rc = cli.main([command, *common])
        assert rc == 0, f"`invnorm-jax {command}` failed: {capsys.readouterr().err[:1500]}"
    config = config_lib.load_config(name, "smoke")
    results = json.loads((tmp_path / "results.json").read_text())
    task = results["tasks"][name]
    assert task["metric"] == config["metric"] and results["settings"]["variant"] == "smoke"
    assert set(task["methods"]) == {"proposed", "nn"}
    assert set(task["sweeps"]) == set(config["sweeps"])
    for method, entry in task["methods"].items():
        assert (tmp_path / method / "checkpoints").is_dir()
        assert math.isfinite(entry["fault_free"])
        assert entry["num_chips"] == config["eval"]["num_chips"]
        assert entry["num_samples"] == (1 if method == "nn" else config["eval"]["num_samples"])
        for sweep, spec in config["sweeps"].items():
            rows = entry["sweeps"][sweep]
            assert [r["level"] for r in rows] == list(spec["levels"])
            for r in rows:
                assert len(r["chips"]) == config["eval"]["num_chips"]
                assert all(math.isfinite(v) for v in r["chips"]) and math.isfinite(r["std"])
                assert r["mean"] == pytest.approx(np.mean(r["chips"]), abs=1e-9)
            # A zero-level fault is no fault: every chip reproduces the fault-free run.
            assert rows[0]["mean"] == pytest.approx(entry["fault_free"], abs=1e-5)
            assert rows[0]["std"] == pytest.approx(0.0, abs=1e-5)
    assert (tmp_path / "report.md").is_file() and (tmp_path / "results.csv").is_file()
    return task


@pytest.mark.slow
def test_cifar10_smoke_end_to_end(tmp_path, capsys):
    task = _run_smoke("cifar10_resnet18", tmp_path, capsys)
    assert task["sweeps"]["additive"]["site"] == "preactivation"
    for entry in task["methods"].values():
        assert 0.0 <= entry["fault_free"] <= 1.0


@pytest.mark.slow
def test_co2_smoke_end_to_end(tmp_path, capsys):
    task = _run_smoke("co2_lstm", tmp_path, capsys)
    assert not task["higher_is_better"]
    for entry in task["methods"].values():
        assert entry["fault_free"] > 0.0  # an RMSE


@pytest.mark.slow
def test_speech_smoke_end_to_end(tmp_path, capsys):
    task = _run_smoke("speech_m5", tmp_path, capsys)
    for entry in task["methods"].values():
        assert 0.0 <= entry["fault_free"] <= 1.0


@pytest.mark.slow
def test_drive_smoke_end_to_end(tmp_path, capsys):
    task = _run_smoke("drive_unet", tmp_path, capsys)
    for entry in task["methods"].values():
        assert 0.0 < entry["fault_free"] <= 1.0  # mIoU inside the FOV


# --------------------------------------------------------------------------- table1.py


def _fake_results(task, metric, methods, variant="full"):
    sweep_rows = [
        {"level": 0.0, "mean": 0.5, "std": 0.0, "chips": [0.5, 0.5]},
        {"level": 0.1, "mean": 0.25, "std": 0.05, "chips": [0.2, 0.3]},
    ]
    return {
        "tasks": {
            task: {
                "metric": metric,
                "higher_is_better": metric != "rmse",
                "sweeps": {"bit_flip": {"kind": "bit_flip", "site": "weights"}},
                "methods": {
                    m: {
                        "fault_free": v,
                        "num_chips": 2,
                        "num_samples": 1 if m == "nn" else 10,
                        "sweeps": {"bit_flip": sweep_rows},
                    }
                    for m, v in methods.items()
                },
            }
        },
        "settings": {"variant": variant},
        "version": 2,
    }


def test_table1_collects_runs_into_one_table(tmp_path, capsys):
    table1 = _load_table1()
    a, b = tmp_path / "runs" / "cifar10", tmp_path / "runs" / "co2"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    # Methods written in a non-canonical order: the table puts them in the paper's order.
    (a / "results.json").write_text(
        json.dumps(_fake_results("cifar10_resnet18", "accuracy", {"proposed": 0.9012, "nn": 0.8534}))
    )
    (b / "results.json").write_text(
        json.dumps(_fake_results("co2_lstm", "rmse", {"nn": 0.51234, "proposed": 0.40001}, variant="smoke"))
    )
    out = tmp_path / "table1.md"
    assert table1.main([str(a), str(b / "results.json"), "--out", str(out), "--sweeps"]) == 0
    printed = capsys.readouterr().out
    assert "| task (metric) | NN | Proposed |" in printed
    assert "| cifar10_resnet18 (accuracy %) | 85.34 | 90.12 |" in printed
    assert "| co2_lstm (RMSE) | 0.5123 | 0.4000 |" in printed
    assert "`co2_lstm` (smoke)" in printed and "`cifar10_resnet18`" not in printed.split("Not paper scale")[1]
    assert "25.00 ± 5.00" in printed  # the sweep table of cifar10 at level 0.1
    assert out.read_text().strip() == printed.strip()

    # The same run twice: both rows kept, told apart by their folder.
    merged, runs = table1.collect([a, a])
    assert list(merged.tasks) == ["cifar10_resnet18", "cifar10_resnet18 [cifar10]"]
    assert list(runs) == list(merged.tasks)

    # A results.json of another schema version is named, not misread.
    old = json.loads((a / "results.json").read_text())
    del old["version"]
    (b / "results.json").write_text(json.dumps(old))
    assert table1.main([str(b)]) == 2
    assert "schema version 1" in capsys.readouterr().err


def test_table1_says_which_folder_has_no_results(tmp_path, capsys):
    table1 = _load_table1()
    empty = tmp_path / "runs" / "drive"
    empty.mkdir(parents=True)
    assert table1.main([str(empty)]) == 2
    err = capsys.readouterr().err
    assert str(empty) in err and "no results.json" in err and "invnorm-jax sweep" in err
    (empty / "evaluate.json").write_text("{}")
    with pytest.raises(table1.ResultsNotFoundError, match="evaluate.json"):
        table1.collect([empty])
    with pytest.raises(table1.ResultsNotFoundError, match="no such folder"):
        table1.collect([tmp_path / "missing"])
