"""Tests of the OOD study (scoring in ``invnorm_jax.ood``, the study in ``invnorm_jax.pipeline.ood_eval``; Fig. 7).

Behaviour, not lines: the detection rate and AUROC of a stage equal hand-computed values; a
model without any confidence (uniform probabilities) detects nothing at the mean-NLL
threshold, healthy or faulty; the stages of every shift are batched into one input array with
unchanged stages pointing at the unshifted block; and ``invnorm-jax ood`` writes the study into
``results.json`` (``tasks.<task>.ood``), ``report.md`` and a PNG for trained smoke models.
"""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from invnorm_jax import ood
from invnorm_jax.errors import ConfigError
from invnorm_jax.faults import Fault
from invnorm_jax.pipeline import cli, experiment, ood_eval
from invnorm_jax.pipeline import config as config_lib

ROW_KEYS = {
    "stage",
    "accuracy",
    "nll",
    "entropy",
    "mutual_information",
    "ece",
    "detection_rate",
    "auroc_nll",
    "auroc_entropy",
    "nll_threshold",
}


def test_stage_metrics_equal_hand_computed_values():
    # In: NLL -log 0.9, -log 0.8 -> threshold (mean) 0.164. Out: NLL 0.693, 0.051, 2.303.
    p_in = np.array([[[0.9, 0.1], [0.8, 0.2]]])
    p_out = np.array([[[0.5, 0.5], [0.95, 0.05], [0.1, 0.9]]])
    row = ood.shift_metrics(p_in, p_out, [0, 0], [0, 0, 0])
    assert row["nll_threshold"] == pytest.approx(-(math.log(0.9) + math.log(0.8)) / 2, rel=1e-6)
    assert row["detection_rate"] == pytest.approx(2 / 3)
    # Out-in pairs with a higher NLL: 0.693 beats both, 0.051 none, 2.303 both -> 4 of 6.
    assert row["auroc_nll"] == pytest.approx(4 / 6)
    # Entropies in: H(.9)=0.325, H(.8)=0.500; out: 0.693 (beats both), 0.199 (none), 0.325 (ties one).
    assert row["auroc_entropy"] == pytest.approx(2.5 / 6)
    assert row["accuracy"] == pytest.approx(2 / 3)  # the 0.5/0.5 tie goes to class 0
    assert row["nll"] == pytest.approx(-(math.log(0.5) + math.log(0.95) + math.log(0.1)) / 3, rel=1e-5)
    assert row["mutual_information"] == pytest.approx(0.0, abs=1e-6)  # one sample: no disagreement
    # The 0.5-quantile of the in-distribution NLLs is their median (0.164 here too), a 0.99-quantile
    # sits just under -log 0.8 = 0.223: only the 0.693 and 2.303 inputs exceed either.
    q = ood.shift_metrics(p_in, p_out, [0, 0], [0, 0, 0], threshold="quantile", q=0.99)
    assert q["nll_threshold"] == pytest.approx(np.quantile([-math.log(0.9), -math.log(0.8)], 0.99))
    assert q["detection_rate"] == pytest.approx(2 / 3)


def test_mutual_information_and_entropy_of_disagreeing_samples():
    # Two samples, certain but opposite: mean prediction uniform, MI = entropy = log 2.
    p = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])
    row = ood.shift_metrics(p, p, [0], [0])
    assert row["entropy"] == pytest.approx(math.log(2), rel=1e-6)
    assert row["mutual_information"] == pytest.approx(math.log(2), rel=1e-6)
    assert row["auroc_nll"] == 0.5 and row["detection_rate"] == 0.0  # identical sets: chance, no detection


class UniformModel(nnx.Module):
    """Zero logits (uniform probabilities) for every input: no confidence, no uncertainty signal."""

    def __init__(self, classes: int = 10):
        self.classes = classes

    def __call__(self, x, *, key=None, train=False, deterministic=False, faults=None):
        return jnp.zeros((x.shape[0], self.classes), jnp.float32)


def test_uniform_model_detects_nothing_at_the_mean_nll_threshold():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(24, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 10, 24).astype(np.int32)
    stages = {"rotation": (0.0, 42.0, 84.0), "uniform_noise": (0.0, 0.6, 1.2)}
    result = ood_eval.evaluate_shifts(
        UniformModel(), x, y, stages, num_samples=2, key=jax.random.key(0), fault=Fault("bit_flip", 0.1), num_chips=3
    )
    for name in stages:
        for kind in ("healthy", "faulty"):
            rows = result[name][kind]
            assert [r["stage"] for r in rows] == list(stages[name])
            for r in rows:
                assert r["detection_rate"] == 0.0
                assert r["nll"] == pytest.approx(math.log(10), rel=1e-6)
                assert r["auroc_nll"] == 0.5 and r["auroc_entropy"] == 0.5
        assert result[name]["faulty"][-1]["detection_rate_std"] == 0.0


def test_stages_are_batched_with_unchanged_stages_pointing_at_the_reference():
    x = np.random.default_rng(1).normal(size=(5, 8, 8, 1)).astype(np.float32)
    stages = {"rotation": (0.0, 7.0, 90.0), "uniform_noise": (0.0, 0.5)}
    x_all, blocks = ood_eval.shifted_inputs(x, stages, key=jax.random.key(0), mean=0.3, std=0.4)
    assert blocks == {"rotation": [0, 1, 2], "uniform_noise": [0, 3]}
    assert x_all.shape == (4 * 5, 8, 8, 1)
    np.testing.assert_array_equal(x_all[:5], x)
    # Rotation acts on the de-standardized images: 90 degrees is exact, the border is the blank 0.
    np.testing.assert_allclose(x_all[10:15], np.rot90(x, axes=(1, 2)), atol=1e-5)
    raw_noise = (x_all[15:20] * 0.4 + 0.3) - (x * 0.4 + 0.3)
    assert np.all(np.abs(raw_noise) <= 0.5 + 1e-5) and np.abs(raw_noise).max() > 0.3


def test_settings_reject_unknown_shifts_and_regression_tasks():
    with pytest.raises(ConfigError, match="ood.shifts='no_such_shift' is unknown"):
        config_lib.load_config("digits:smoke", overrides=["ood.shifts=no_such_shift"])
    with pytest.raises(ConfigError, match="no key 'ood.num_chip'"):
        config_lib.load_config("digits:smoke", overrides=["ood.num_chip=3"])
    with pytest.raises(ConfigError, match="classifier"):
        config_lib.load_config("co2:smoke", overrides=["ood.shifts=gaussian_noise"])
    config = config_lib.load_config("digits:smoke", overrides=["ood.num_chips=3"])
    assert config.ood.num_chips == 3 and config.ood.threshold == "mean"
    assert ood_eval.shift_stages(config.ood)["rotation"] == ood.ROTATION_STAGES


def test_cli_ood_of_a_regression_task_fails_before_training(tmp_path, capsys):
    assert cli.main(["ood", "--task", "co2", "--smoke", "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    assert "no OOD study" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # nothing trained, nothing written


@pytest.mark.slow
def test_cli_ood_writes_results_markdown_and_png(tmp_path, capsys):
    config = config_lib.load_config("digits:smoke")
    split = experiment.load_data(config)
    for method in config.methods:
        experiment.train_method(config, method, split, tmp_path / method, progress=False)
    assert cli.main(["ood", "--task", "digits", "--smoke", "--out", str(tmp_path), "--no-progress", "--no-train"]) == 0
    capsys.readouterr()

    task = json.loads((tmp_path / "results.json").read_text())["tasks"]["digits"]
    results = task["ood"]
    assert results["threshold"] == "mean" and task["sweeps"] == {}
    assert results["fault"]["kind"] == "bit_flip" and isinstance(results["fault"]["num_chips"], int)
    assert set(results["shifts"]) == {"rotation", "uniform_noise"}
    assert results["shifts"]["rotation"]["stages"] == [7.0 * i for i in range(13)]
    assert results["num_samples"]["nn"] == 1
    for entry in results["shifts"].values():
        assert set(entry["methods"]) == set(config.methods)
        for rows in entry["methods"].values():
            for kind in ("healthy", "faulty"):
                assert [r["stage"] for r in rows[kind]] == entry["stages"]
                for r in rows[kind]:
                    want = ROW_KEYS | ({f"{k}_std" for k in ROW_KEYS - {"stage"}} if kind == "faulty" else set())
                    assert set(r) == want
                    assert all(isinstance(v, float) for v in r.values())
                    assert 0.0 <= r["detection_rate"] <= 1.0 and 0.0 <= r["accuracy"] <= 1.0
                    assert 0.0 <= r["auroc_nll"] <= 1.0 and 0.0 <= r["auroc_entropy"] <= 1.0
            # Stage 0 is the unshifted test set: by definition no separation.
            assert rows["healthy"][0]["auroc_nll"] == 0.5
        nn_rows = entry["methods"]["nn"]["healthy"]  # deterministic: one sample, no disagreement
        assert all(r["mutual_information"] == pytest.approx(0.0, abs=1e-6) for r in nn_rows)

    md = (tmp_path / "report.md").read_text()
    assert "## Out-of-distribution detection" in md and "At the largest stage" in md
    assert "| 84° |" in md and "Proposed" in md
    assert (tmp_path / "digits_ood.png").read_bytes().startswith(b"\x89PNG")
