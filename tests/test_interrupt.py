"""Interruptions lose nothing: killed training and sweeps resume to the same numbers, bit for bit.

Fast tests interrupt in-process (Ctrl-C delivered as a real SIGINT, a save stopped before orbax
renames its folder, a sweep stopped after some levels); the slow ones SIGKILL a real
subprocess and compare the resumed run with an uninterrupted one leaf by leaf.
"""

import json
import logging
import os
import pathlib
import signal
import subprocess
import sys
import time
from unittest import mock

import jax
import numpy as np
import optax
import pytest
from flax import nnx
from orbax.checkpoint._src.path import atomicity

from invnorm_jax.checkpoint import UNFINISHED_SUFFIX
from invnorm_jax.errors import CheckpointCorruptError, CheckpointIncompatibleError, CheckpointMissingError
from invnorm_jax.models import build_model
from invnorm_jax.pipeline import evaluation, experiment
from invnorm_jax.pipeline.config import load_config
from invnorm_jax.train import Checkpointer, TrainConfig, make_optimizer, train

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG = TrainConfig(steps=8, batch_size=16, learning_rate=1e-2, checkpoint_every=2, log_every=3, seed=3)


def _data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n).astype(np.int32)
    x = rng.normal(0, 1, (n, 8, 8, 1)).astype(np.float32) + y[:, None, None, None] / 3.0
    return x, y


def _model(widths=(4, 4)):
    return build_model(
        "resnet", "proposed", in_channels=1, num_classes=10, widths=widths, blocks=(1, 1), rngs=nnx.Rngs(0)
    )


def _leaves(tree):
    return jax.tree_util.tree_flatten_with_path(tree)[0]


def assert_bit_identical(a, b):
    """Every leaf of two pytrees has the same path, dtype, shape and bytes."""
    la, lb = _leaves(a), _leaves(b)
    assert [p for p, _ in la] == [p for p, _ in lb]
    for (path, u), (_, v) in zip(la, lb):
        u, v = np.asarray(u), np.asarray(v)
        assert u.dtype == v.dtype and np.array_equal(u, v), jax.tree_util.keystr(path)


def _state(model, optimizer=None):
    tree = {"model": nnx.to_pure_dict(nnx.state(model))}
    if optimizer is not None:
        tree["optimizer"] = nnx.to_pure_dict(nnx.state(optimizer))
    return tree


@pytest.fixture(scope="module")
def straight():
    """The uninterrupted run of CONFIG: its final model."""
    x, y = _data()
    model = _model()
    train(model, x, y, CONFIG, progress=False)
    return model


@pytest.fixture
def default_sigint():
    """Python's own SIGINT handler (KeyboardInterrupt) for the test, whatever ran before it."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_mid_step_saves_that_step_and_resumes_bit_identical(tmp_path, straight, default_sigint):
    x, y = _data()

    def interrupt_at_step_5(batch, rng):  # a real SIGINT, delivered while step 5 (index 4) is being built
        if interrupt_at_step_5.calls == 4:
            os.kill(os.getpid(), signal.SIGINT)
        interrupt_at_step_5.calls += 1
        return batch

    interrupt_at_step_5.calls = 0
    with pytest.raises(KeyboardInterrupt):
        train(_model(), x, y, CONFIG, workdir=tmp_path, progress=False, augment=interrupt_at_step_5)
    # The interrupt waited for step 5 to finish: its checkpoint holds 5 whole steps.
    assert Checkpointer(tmp_path).latest_step() == 5
    resumed = _model()
    out = train(resumed, x, y, CONFIG, workdir=tmp_path, progress=False, augment=lambda b, rng: b)
    assert out["start_step"] == 5 and len(out["losses"]) == 3
    assert_bit_identical(_state(straight), _state(resumed))


class _Killed(BaseException):
    """Stands for the process dying: nothing after it runs."""


@pytest.fixture
def warnings():
    """The library's log records (a handler of its own: the CLI stops propagation to the root)."""
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logger = logging.getLogger("invnorm_jax")
    logger.addHandler(handler)
    yield lambda: "\n".join(r.getMessage() for r in records)
    logger.removeHandler(handler)


def test_kill_during_a_save_keeps_the_previous_checkpoint(tmp_path, straight, warnings):
    x, y = _data()

    async def die_before_rename(self):
        raise _Killed("killed while saving")

    real_save = Checkpointer.save

    def save(self, step, *args, **kwargs):
        if step == 6:  # orbax has written the data into a temporary folder; the rename never comes
            with mock.patch.object(atomicity.AtomicRenameTemporaryPath, "finalize", die_before_rename):
                return real_save(self, step, *args, **kwargs)
        return real_save(self, step, *args, **kwargs)

    with mock.patch.object(Checkpointer, "save", save), pytest.raises(_Killed):
        train(_model(), x, y, CONFIG, workdir=tmp_path, progress=False)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["4", "6" + UNFINISHED_SUFFIX] or names == ["2", "4", "6" + UNFINISHED_SUFFIX]
    assert Checkpointer(tmp_path).unfinished_saves() == [6]

    loaded = _model()
    assert Checkpointer(tmp_path).restore(loaded) == 4
    assert "step 6" in warnings() and "not finished" in warnings() and "restoring step 4" in warnings()
    # The rerun resumes from step 4, replaces the leftover folder, and ends as if never stopped.
    resumed = _model()
    assert train(resumed, x, y, CONFIG, workdir=tmp_path, progress=False)["start_step"] == 4
    assert_bit_identical(_state(straight), _state(resumed))
    assert not any(UNFINISHED_SUFFIX in p.name for p in (tmp_path / "checkpoints").iterdir())


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A workdir with the checkpoints of a short run (steps 2 and 4 kept) and its config.json."""
    workdir = tmp_path_factory.mktemp("finished")
    x, y = _data()
    train(_model(), x, y, CONFIG, workdir=workdir, progress=False, stop_after=4)
    (workdir / "config.json").write_text("{}")
    return workdir


def _damaged_copy(src, dst, how):
    import shutil

    shutil.copytree(src, dst)
    data = [f for f in (dst / "checkpoints" / "4").rglob("*") if f.is_file()]
    for f in data:
        if how == "garbage":
            f.write_bytes(b"garbage")
        elif f.parent.name == "d":  # the array chunks, cut in half
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    return dst


@pytest.mark.parametrize("how", ["garbage", "truncated"])
def test_corrupt_checkpoint_says_damaged_and_which_folder_to_delete(tmp_path, finished_run, how):
    workdir = _damaged_copy(finished_run, tmp_path / "run", how)
    with pytest.raises(CheckpointCorruptError) as err:
        Checkpointer(workdir).restore(_model())
    text = str(err.value)
    assert "damaged" in text and f"delete {workdir / 'checkpoints' / '4'}" in text
    assert "resume from step 2" in text  # the checkpoint before it is the way back


def test_incompatible_checkpoint_names_the_shape_and_does_not_suggest_deleting(finished_run):
    with pytest.raises(CheckpointIncompatibleError) as err:
        Checkpointer(finished_run).restore(_model(widths=(4, 8)))
    text = str(err.value)
    assert "the model differs" in text and "model/" in text and "[3, 3, 4, 8]" in text
    assert "delete" not in text and str(finished_run / "config.json") in text
    # The model fits but the optimizer state does not: the message points at train.optimizer.
    model = _model()
    sgd = nnx.Optimizer(model, optax.sgd(0.1, momentum=0.9), wrt=nnx.Param)
    with pytest.raises(CheckpointIncompatibleError, match=r"optimizer state differs.*train\.optimizer") as err:
        Checkpointer(finished_run).restore(model, sgd)
    assert "delete" not in str(err.value)


def test_missing_checkpoint_says_train_first(tmp_path, finished_run):
    with pytest.raises(CheckpointMissingError, match="no checkpoint in .*train first") as err:
        Checkpointer(tmp_path).restore(_model())
    assert "delete" not in str(err.value)
    with pytest.raises(CheckpointMissingError, match=r"no complete checkpoint of step 3 .*\[2, 4\]"):
        Checkpointer(finished_run).restore(_model(), step=3)
    # Only an unfinished save: still missing, and the message says why.
    (tmp_path / "checkpoints" / f"2{UNFINISHED_SUFFIX}").mkdir(parents=True)
    with pytest.raises(CheckpointMissingError, match="unfinished save of step 2"):
        Checkpointer(tmp_path).restore(_model())


# ------------------------------------------------------------------------------ sweeps

SWEEP_OVERRIDES = [
    "methods=proposed",
    "eval.num_chips=3",
    "eval.num_samples=2",
    "eval.max_test=8",
    "model.kwargs.widths=(4,4)",
    "sweeps.bit_flip.levels=0,0.1,0.2,0.3,0.4",
]


@pytest.fixture(scope="module")
def sweep_setup():
    config = load_config("digits:smoke", overrides=SWEEP_OVERRIDES)
    split = experiment.load_data(config)
    return config, split, experiment.make_model(config, "proposed")


class _Counter:
    """Stands in for evaluation.per_chip_metric: records each (fault kind, level), raises after ``fail_after``.

    ``simulate``: call the real function; else return stand-in values (a function of the call's
    arguments), for tests of what is cached rather than of what is computed.
    """

    def __init__(self, fail_after=None, simulate=True):
        self.calls, self.fail_after, self.simulate, self.real = [], fail_after, simulate, evaluation.per_chip_metric

    def __call__(self, *args, **kwargs):
        if self.fail_after is not None and len(self.calls) == self.fail_after:
            raise KeyboardInterrupt
        self.calls.append((kwargs["fault"].kind, kwargs.get("level")))
        if self.simulate:
            return self.real(*args, **kwargs)
        return np.sqrt(np.arange(kwargs["num_chips"]) + (kwargs.get("level") or 0.0) + kwargs["num_samples"])


def _evaluate(setup, monkeypatch, cache, fail_after=None, config=None, simulate=True, model=None):
    config = config or setup[0]
    counter = _Counter(fail_after, simulate)
    monkeypatch.setattr(evaluation, "per_chip_metric", counter)
    try:
        return evaluation.evaluate_method(
            model or setup[2], config, setup[1], "proposed", sweeps=["bit_flip"], progress=False, cache=cache
        ), counter.calls
    finally:
        monkeypatch.undo()


def test_interrupted_sweep_resumes_without_redoing_finished_levels(tmp_path, sweep_setup, monkeypatch):
    # Stand-in per-chip values (irrational: every digit must survive the JSON round trip); the
    # slow test below does the same with the real simulator.
    reference, calls = _evaluate(sweep_setup, monkeypatch, cache=None, simulate=False)
    assert calls == [("additive", None)] + [("bit_flip", v) for v in (0.1, 0.2, 0.3, 0.4)]
    cache = evaluation.LevelCache(tmp_path / "levels")
    with pytest.raises(KeyboardInterrupt):
        _evaluate(sweep_setup, monkeypatch, cache, fail_after=3, simulate=False)  # fault-free, 0.1, 0.2 done
    assert len(list(cache.folder.glob("*.json"))) == 3 and not list(cache.folder.glob(".*"))
    resumed, calls = _evaluate(sweep_setup, monkeypatch, cache, simulate=False)
    assert calls == [("bit_flip", 0.3), ("bit_flip", 0.4)]
    assert resumed == reference  # every chip's value, mean and std, exactly
    again, calls = _evaluate(sweep_setup, monkeypatch, cache, simulate=False)
    assert calls == [] and again == reference


@pytest.mark.parametrize(
    "override, recomputed",
    [
        ("eval.num_chips=4", ["fault-free", 0.1, 0.2, 0.3, 0.4]),
        ("eval.num_samples=1", ["fault-free", 0.1, 0.2, 0.3, 0.4]),
        ("seed=1", ["fault-free", 0.1, 0.2, 0.3, 0.4]),
        ("eval.deterministic=True", ["fault-free", 0.1, 0.2, 0.3, 0.4]),
        # A new fault kind is another compiled program (evaluation.program_faults), which may round
        # differently: the fault-free run too is computed again. Additive pre-activation noise (the
        # other sweep's) and bit-flips (the OOD fault's) stay in the program: the fault-free run is kept.
        ("sweeps.bit_flip.kind=stuck_at", ["fault-free", 0.1, 0.2, 0.3, 0.4]),
        ("sweeps.bit_flip.site=preactivation", [0.1, 0.2, 0.3, 0.4]),
        ("sweeps.bit_flip.levels=0,0.1,0.25", [0.25]),  # chip i is the same chip at every level: 0.1 is kept
    ],
)
def test_a_different_evaluation_never_reuses_cached_levels(tmp_path, sweep_setup, monkeypatch, override, recomputed):
    cache = evaluation.LevelCache(tmp_path / "levels")
    _evaluate(sweep_setup, monkeypatch, cache, simulate=False)
    if override.startswith("sweeps.bit_flip.site"):
        override = "sweeps.bit_flip.kind=additive"  # bit flips have no pre-activation site
        other = load_config(
            "digits:smoke", overrides=[*SWEEP_OVERRIDES, override, "sweeps.bit_flip.site=preactivation"]
        )
    else:
        other = load_config("digits:smoke", overrides=[*SWEEP_OVERRIDES, override])
    _, calls = _evaluate(sweep_setup, monkeypatch, cache, config=other, simulate=False)
    assert [level if kind == other.sweeps.bit_flip.kind else "fault-free" for kind, level in calls] == recomputed
    _, calls = _evaluate(sweep_setup, monkeypatch, cache, config=other, simulate=False)
    assert calls == []


def test_retrained_weights_and_damaged_files_are_not_reused(tmp_path, sweep_setup, monkeypatch, warnings):
    cache = evaluation.LevelCache(tmp_path / "levels")
    _evaluate(sweep_setup, monkeypatch, cache, simulate=False)
    other = nnx.merge(*nnx.split(sweep_setup[2]))  # one weight changed: another trained model
    kernel = other.blocks[0].conv1.kernel
    kernel[...] = kernel[...].at[0, 0, 0, 0].add(1.0)
    _, calls = _evaluate(sweep_setup, monkeypatch, cache, simulate=False, model=other)
    assert len(calls) == 5
    for f in cache.folder.glob("*.json"):
        f.write_text(f.read_text()[:20])
    _, calls = _evaluate(sweep_setup, monkeypatch, cache, simulate=False)
    assert len(calls) == 5 and "damaged sweep result" in warnings()


# ------------------------------------------------------------------------------ real kills (slow)


def _env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def _kill_when(proc, ready, timeout=120.0):
    """SIGKILL ``proc`` as soon as ``ready()``; fails if it ended (or timed out) before."""
    deadline = time.time() + timeout
    while not ready():
        assert proc.poll() is None, f"the run ended before it could be killed:\n{proc.stderr.read()}"
        assert time.time() < deadline, "timed out waiting for the run to get far enough"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL


TRAIN_SCRIPT = """
import sys, time
sys.path.insert(0, {tests!r})
from test_interrupt import CONFIG, _data, _model
from invnorm_jax.train import TrainConfig, train
import dataclasses

def slow(batch, rng):  # identity, slow enough that the kill lands mid-run
    time.sleep(0.15)
    return batch

x, y = _data()
config = dataclasses.replace(CONFIG, steps=24, checkpoint_every=4)
train(_model(), x, y, config, workdir=sys.argv[1], progress=False, augment=slow)
"""


@pytest.mark.slow
def test_sigkilled_training_resumes_bit_identical(tmp_path):
    import dataclasses

    script = tmp_path / "run.py"
    script.write_text(TRAIN_SCRIPT.format(tests=str(ROOT / "tests")))
    workdir = tmp_path / "run"
    ckpts = workdir / "checkpoints"

    def has_checkpoint():
        return ckpts.is_dir() and any(p.name.isdigit() and int(p.name) > 0 for p in ckpts.iterdir())

    proc = subprocess.Popen([sys.executable, str(script), str(workdir)], env=_env(), stderr=subprocess.PIPE, text=True)
    _kill_when(proc, has_checkpoint)
    killed_at = Checkpointer(workdir).latest_step()
    assert 0 < killed_at < 24
    subprocess.run([sys.executable, str(script), str(workdir)], env=_env(), check=True, capture_output=True)

    x, y = _data()
    config = dataclasses.replace(CONFIG, steps=24, checkpoint_every=4)
    straight = _model()
    train(straight, x, y, config, workdir=tmp_path / "straight", progress=False)
    # Model and optimizer state (moments, step count) of both final checkpoints, leaf by leaf.
    final = []
    for folder in (workdir, tmp_path / "straight"):
        model = _model()
        optimizer = nnx.Optimizer(model, make_optimizer(config), wrt=nnx.Param)
        assert Checkpointer(folder).restore(model, optimizer) == 24
        final.append(_state(model, optimizer))
    assert_bit_identical(*final)
    assert_bit_identical(_state(straight), {"model": final[0]["model"]})
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 24


SWEEP_SCRIPT = """
import sys, time
from invnorm_jax.pipeline import cli, evaluation
real = evaluation.per_chip_metric
def slow(*args, **kwargs):  # the real computation, slow enough that the kill lands mid-sweep
    time.sleep(0.5)
    return real(*args, **kwargs)
evaluation.per_chip_metric = slow
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_sigkilled_sweep_resumes_without_redoing_finished_levels(tmp_path, monkeypatch):
    from invnorm_jax.pipeline import cli

    overrides = [*SWEEP_OVERRIDES, "train.steps=4", "sweeps.additive.levels=0,0.5,1.0"]
    config = load_config("digits:smoke", overrides=overrides)
    split = experiment.load_data(config)
    experiment.train_method(config, "proposed", split, tmp_path / "run" / "proposed", progress=False)
    args = [
        "sweep",
        "--config",
        "digits:smoke",
        "--workdir",
        str(tmp_path / "run"),
        "--no-progress",
        *[f"--config.{o}" for o in overrides],
    ]
    script = tmp_path / "sweep.py"
    script.write_text(SWEEP_SCRIPT)
    levels = tmp_path / "run" / "proposed" / "sweep_levels"
    proc = subprocess.Popen([sys.executable, str(script), *args], env=_env(), stderr=subprocess.PIPE, text=True)
    _kill_when(proc, lambda: levels.is_dir() and len(list(levels.glob("*.json"))) >= 3)
    done = len(list(levels.glob("*.json")))
    total = 1 + 4 + 2  # fault-free, bit_flip 0.1..0.4, additive 0.5 and 1.0
    assert 3 <= done < total

    counter = _Counter()
    monkeypatch.setattr(evaluation, "per_chip_metric", counter)
    assert cli.main(args) == 0
    monkeypatch.undo()
    assert len(counter.calls) == total - done
    resumed = json.loads((tmp_path / "run" / "results.json").read_text())["tasks"]["digits"]["methods"]["proposed"]
    model = experiment.load_trained(config, "proposed", tmp_path / "run" / "proposed")
    straight = evaluation.evaluate_method(model, config, split, "proposed", progress=False)
    assert resumed["fault_free"] == straight.fault_free
    assert resumed["sweeps"] == {k: [vars(r) for r in rows] for k, rows in straight.sweeps.items()}


# ------------------------------------------------------------------------------ same seed, same numbers (slow)

#: The fields of results.json that measure time, not results.
TIMING_FIELDS = ("settings.wall_seconds", "tasks.*.methods.*.seconds", "tasks.*.ood.seconds")


def _without_timing(results: dict) -> dict:
    """A copy of ``results`` without the fields of :data:`TIMING_FIELDS` (each must be there)."""
    results = json.loads(json.dumps(results))

    def drop(node, keys):
        if len(keys) == 1:
            assert keys[0] in node, keys
            del node[keys[0]]
            return
        children = node.values() if keys[0] == "*" else [node[keys[0]]]
        for child in children:
            if child is not None:
                drop(child, keys[1:])

    for field in TIMING_FIELDS:
        drop(results, field.split("."))
    return results


@pytest.mark.slow
def test_same_seed_gives_bit_identical_results(tmp_path):
    from invnorm_jax.pipeline import cli

    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        assert (
            cli.main(
                [
                    "demo",
                    "--smoke",
                    "--tasks",
                    "digits",
                    "--methods",
                    "proposed",
                    "--out",
                    str(out),
                    "--no-progress",
                    "--config.eval.num_chips=3",
                    "--config.ood.num_chips=2",
                ]
            )
            == 0
        )
        runs.append(out)
    a, b = (json.loads((out / "results.json").read_text()) for out in runs)
    assert a["tasks"]["digits"]["ood"] is not None and a["tasks"]["digits"]["methods"]["proposed"]["sweeps"]
    assert _without_timing(a) == _without_timing(b)
    config = load_config("digits:smoke")
    for method in ("proposed",):
        trained = [experiment.load_trained(config, method, out / "digits" / method) for out in runs]
        assert_bit_identical(_state(trained[0]), _state(trained[1]))
        losses = [
            [r["loss"] for r in map(json.loads, (out / "digits" / method / "metrics.jsonl").read_text().splitlines())]
            for out in runs
        ]
        assert losses[0] == losses[1]


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.records = []

    def emit(self, record):
        self.records.append(record)


def test_a_damaged_checkpoint_is_one_error_not_also_an_orbax_log(tmp_path, finished_run):
    import orbax.checkpoint as ocp

    workdir = _damaged_copy(finished_run, tmp_path / "run", "garbage")
    absl_log, seen = logging.getLogger("absl"), _Records()
    absl_log.addHandler(seen)
    try:
        # Control: orbax itself logs an error for this folder when it lists the steps.
        ocp.CheckpointManager(workdir / "checkpoints", options=ocp.CheckpointManagerOptions(create=False)).close()
        assert any("_CHECKPOINT_METADATA" in r.getMessage() for r in seen.records)
        seen.records.clear()
        with pytest.raises(CheckpointCorruptError, match="damaged"):
            Checkpointer(workdir).restore(_model())
        assert seen.records == []
    finally:
        absl_log.removeHandler(seen)


def test_restoring_creates_no_folder(tmp_path):
    workdir = tmp_path / "never_trained"
    ckpt = Checkpointer(workdir)
    assert ckpt.latest_step() is None
    with pytest.raises(CheckpointMissingError):
        ckpt.restore(_model())
    ckpt.close()
    assert not workdir.exists()
    x, y = _data()
    train(_model(), x, y, CONFIG, workdir=workdir, progress=False, stop_after=2)  # training still makes it
    assert Checkpointer(workdir).latest_step() == 2 and (workdir / "metrics.jsonl").is_file()
