"""The results schema: a round trip through JSON, versions, and damaged files."""

import json

import pytest

from invnorm_jax.pipeline import results as R


def _results():
    level = R.Level(level=0.1, mean=0.5, std=0.1, chips=[0.4, 0.6])
    ood = R.OODResult(
        threshold="mean",
        q=None,
        calibration="chip",
        domain="raw",
        num_test=3,
        fault=None,
        num_samples={"proposed": 5},
        shifts={
            "rotation": R.OODShift(
                stages=[0.0], methods={"proposed": {"healthy": [{"stage": 0.0, **dict.fromkeys(R.OOD_ROW_KEYS, 0.5)}]}}
            )
        },
    )
    task = R.TaskResult(
        metric="accuracy",
        higher_is_better=True,
        sweeps={"bit_flip": R.SweepInfo("bit_flip", "weights")},
        methods={
            "proposed": R.MethodResult(
                fault_free=0.9, num_chips=2, num_samples=5, sweeps={"bit_flip": [level]}, seconds={"train": 1.0}
            )
        },
        config={"name": "digits"},
        ood=ood,
    )
    return R.Results(tasks={"digits": task}, settings={"variant": "smoke"})


def test_round_trip_is_exact(tmp_path):
    original = _results()
    path = R.save(original, tmp_path)
    assert path.name == "results.json"
    loaded = R.load(tmp_path)
    assert loaded == original
    assert json.loads(path.read_text())["version"] == R.SCHEMA_VERSION


def test_another_version_says_so(tmp_path):
    d = R.to_dict(_results())
    d["version"] = 1
    (tmp_path / "results.json").write_text(json.dumps(d))
    with pytest.raises(R.ResultsError, match=r"schema version 1, and this invnorm-jax reads version 2"):
        R.load(tmp_path)
    del d["version"]  # files of invnorm-jax 0.1 had none: version 1
    (tmp_path / "results.json").write_text(json.dumps(d))
    with pytest.raises(R.ResultsError, match="version 1"):
        R.load(tmp_path / "results.json")


def test_missing_field_is_named_with_its_path(tmp_path):
    d = R.to_dict(_results())
    del d["tasks"]["digits"]["methods"]["proposed"]["num_chips"]
    (tmp_path / "results.json").write_text(json.dumps(d))
    with pytest.raises(R.ResultsError, match=r"tasks.digits.methods.proposed lacks 'num_chips'"):
        R.load(tmp_path)
    d = R.to_dict(_results())
    del d["tasks"]["digits"]["ood"]["shifts"]["rotation"]["methods"]["proposed"]["healthy"][0]["nll"]
    (tmp_path / "results.json").write_text(json.dumps(d))
    with pytest.raises(R.ResultsError, match=r"a row lacks \['nll'\]"):
        R.load(tmp_path)


def test_damaged_and_missing_files(tmp_path):
    (tmp_path / "results.json").write_text('{"tasks": ')
    with pytest.raises(R.ResultsError, match="not valid JSON"):
        R.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="invnorm-jax sweep"):
        R.load(tmp_path / "nothing")
