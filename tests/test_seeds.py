"""Several training seeds: what a seed changes (the model), what it keeps (the chips), how results pool."""

import numpy as np
import pytest

from invnorm_jax.pipeline import experiment, study
from invnorm_jax.pipeline.config import load_config
from invnorm_jax.pipeline.evaluation import eval_seed
from invnorm_jax.pipeline.results import Level, MethodResult, OODResult, OODShift, TaskResult, pool_seeds


def test_a_training_seed_keeps_the_chips_and_its_own_folder(tmp_path):
    config = load_config("digits:smoke")
    seeded = experiment.with_seed(config, config.seed + 2)
    assert seeded.seed == config.seed + 2 and config.seed == 0  # a copy: the original is untouched
    assert eval_seed(seeded) == eval_seed(config)  # chip i is the same chip for every training seed
    assert experiment.seed_workdir(tmp_path, "nn", 0) == tmp_path / "nn"  # a one-seed run's checkpoints serve
    assert experiment.seed_workdir(tmp_path, "nn", 2) == tmp_path / "seed2" / "nn"
    for bad in (0, -1, 1.5, True, "3"):
        with pytest.raises(ValueError, match="seeds="):
            experiment.check_seeds(bad)


def test_pooled_seeds_keep_every_seed_and_pool_the_statistics():
    rng = np.random.default_rng(0)
    values = rng.uniform(size=(3, 2, 5))  # [seed, level, chip]

    def entry(s):
        rows = [Level(lv, float(v.mean()), float(v.std()), v.tolist()) for lv, v in zip((0.1, 0.2), values[s])]
        return MethodResult(float(s), 5, 2, {"bf": rows}, {"train": 1.0})

    pooled = pool_seeds([entry(s) for s in range(3)])
    for i in range(2):
        level = pooled.sweeps["bf"][i]
        np.testing.assert_array_equal(level.matrix(), values[:, i])
        assert level.chips == values[0, i].tolist()
        assert level.mean == pytest.approx(values[:, i].mean()) and level.std == pytest.approx(values[:, i].std())
    assert pooled.fault_free == pytest.approx(1.0) and pooled.fault_free_seeds == [0.0, 1.0, 2.0]
    assert pooled.seconds == {"train": 3.0}
    with pytest.raises(ValueError, match="levels differ"):
        other = entry(1)
        other.sweeps["bf"][0].level = 0.3
        pool_seeds([entry(0), other])


@pytest.mark.slow
def test_two_seeds_train_two_models_on_the_same_chips(tmp_path):
    config = load_config("digits:smoke")
    one = experiment.run_task(config, tmp_path, methods=["nn"], ood=False, progress=False, workers=1)
    two = experiment.run_task(config, tmp_path, methods=["nn"], ood=False, progress=False, workers=1, seeds=2)
    assert two.seeds == [0, 1] and one.seeds == [0]
    assert (tmp_path / "seed1" / "nn" / "checkpoints").is_dir()
    for name, rows in two.methods["nn"].sweeps.items():
        for r1, r2 in zip(one.methods["nn"].sweeps[name], rows):
            if r2.level == 0:
                continue
            matrix = r2.matrix()
            assert matrix.shape == (2, config.eval.num_chips)
            np.testing.assert_array_equal(matrix[0], r1.chips)  # seed 0 is the one-seed run, value for value
    first, second = two.methods["nn"].fault_free_seeds
    assert first == one.methods["nn"].fault_free


def test_the_study_runs_every_task_under_both_readings_and_shares_nn_and_proposed():
    configs = study.study_configs("smoke")
    assert set(configs) == {t if r == "crossbar" else f"{t}@{r}" for t in study.STUDY_TASKS for r in study.READINGS}
    for name, config in configs.items():
        assert config.dropout_site == ("norm" if "@" in name else "crossbar")
        assert set(config.methods) == (
            {"spindrop", "spatial_spindrop"} if "@" in name else {"nn", "spindrop", "spatial_spindrop", "proposed"}
        )
    only = study.study_configs("smoke", tasks=("digits",), methods=["nn"])
    assert list(only) == ["digits"]  # nn does not depend on the reading: no second task


def test_share_readings_copies_the_shared_methods_and_their_ood_rows():
    def method(v):
        return MethodResult(v, 2, 1, {})

    def ood(methods):
        return OODResult(
            "mean",
            None,
            "chip",
            "raw",
            4,
            None,
            dict.fromkeys(methods, 1),
            {"rotation": OODShift([0.0], {m: {"healthy": [{"m": m}]} for m in methods})},
        )

    base = TaskResult(
        "accuracy",
        True,
        {},
        {"nn": method(0.9), "spindrop": method(0.8), "proposed": method(0.95)},
        ood=ood(["nn", "spindrop", "proposed"]),
    )
    other = TaskResult("accuracy", True, {}, {"spindrop": method(0.7)}, ood=ood(["spindrop"]))
    out = study.share_readings({"digits": base, "digits@norm": other})
    shared = out["digits@norm"]
    assert {m: e.fault_free for m, e in shared.methods.items()} == {"nn": 0.9, "proposed": 0.95, "spindrop": 0.7}
    rows = shared.ood.shifts["rotation"].methods
    assert rows["spindrop"]["healthy"][0]["m"] == "spindrop" and rows["nn"]["healthy"][0]["m"] == "nn"
    assert set(shared.ood.num_samples) == {"nn", "spindrop", "proposed"}


def test_the_earlier_placement_reevaluates_only_the_preactivation_sweeps():
    configs = study.study_configs("smoke")
    earlier = study.placement_configs(configs)
    assert set(earlier) == {"digits", "digits@norm", "digits_deep", "digits_deep@norm"}  # binary nets only
    for name, config in earlier.items():
        assert config.model.kwargs.preactivation_site == study.EARLIER_PLACEMENT
        assert config.sweeps and all(s.site == "preactivation" for s in config.sweeps.values())
        assert not config.ood.shifts and config.methods == configs[name].methods
        assert configs[name].model.kwargs.preactivation_site == "normalized"  # the study's own are untouched


@pytest.mark.slow
def test_study_command_writes_both_readings_seeds_and_the_earlier_placement(tmp_path):
    import json
    import subprocess
    import sys

    from invnorm_jax.pipeline.results import load

    out = tmp_path / "study"
    # Its own process: a study compiles many programs, which this long-lived test process need not keep.
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "invnorm_jax.pipeline.cli",
            "study",
            "--smoke",
            "--tasks",
            "digits",
            "--seeds",
            "2",
            "--out",
            str(out),
            "--no-progress",
            "--no-ood",
        ],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = load(out)
    assert set(results.tasks) == {"digits", "digits@norm"}
    assert results.tasks["digits@norm"].methods["nn"] == results.tasks["digits"].methods["nn"]  # shared, not retrained
    assert not (out / "digits@norm" / "nn").exists()
    level = results.tasks["digits"].methods["spindrop"].sweeps["bit_flip"][-1]
    assert level.matrix().shape == (2, 4)
    claims = json.loads((out / "claims.json").read_text())
    assert set(claims["verdicts_by_reading"]) == {"crossbar", "norm"}
    placed = load(out / "preactivation_norm_output")
    assert set(placed.tasks["digits"].sweeps) == {"additive"}
