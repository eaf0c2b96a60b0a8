"""Methods trained and evaluated side by side (``run_task``'s worker threads): the same results as
one at a time, a stop that reaches every worker at a step boundary, and clear errors."""

import dataclasses
import threading

import numpy as np
import pytest
from test_interrupt import CONFIG, _data, _model

from invnorm_jax import checkpoint
from invnorm_jax.errors import ArgumentError
from invnorm_jax.pipeline import experiment
from invnorm_jax.pipeline.config import load_config
from invnorm_jax.train import Checkpointer, train

METHODS = ("nn", "proposed")


def _without_seconds(task) -> dict:
    methods = {m: {k: v for k, v in dataclasses.asdict(r).items() if k != "seconds"} for m, r in task.methods.items()}
    return {"methods": methods, "sweeps": task.sweeps}


def test_methods_side_by_side_give_the_results_of_one_at_a_time(tmp_path):
    config = load_config("digits:smoke", overrides=["eval.num_chips=3"])
    one = experiment.run_task(config, tmp_path / "one", methods=METHODS, ood=False, progress=False, workers=1)
    two = experiment.run_task(config, tmp_path / "two", methods=METHODS, ood=False, progress=False, workers=2)
    assert list(two.methods) == list(METHODS)  # the config's order, whichever finished first
    assert _without_seconds(one) == _without_seconds(two)
    assert all(r.sweeps for r in two.methods.values())


@pytest.mark.slow  # trains two models (about 20 s)
def test_ood_studies_run_in_the_workers_and_equal_the_serial_study(tmp_path):
    """Each method's OOD study runs in its worker right after its sweeps; collected, it is the study
    ood_eval.run_ood makes of the same models one after the other."""
    from invnorm_jax.pipeline.evaluation import num_samples_of
    from invnorm_jax.pipeline.ood_eval import run_ood

    config = load_config("digits:smoke", overrides=["eval.num_chips=2"])
    task = experiment.run_task(config, tmp_path, methods=METHODS, sweeps=False, progress=False, workers=2)
    models = {m: experiment.load_trained(config, m, tmp_path / m) for m in METHODS}
    serial = run_ood(
        config,
        models,
        experiment.load_data(config),
        progress=False,
        num_samples={m: num_samples_of(config, m) for m in METHODS},
    )
    got, want = (dict(dataclasses.asdict(r), seconds=None) for r in (task.ood, serial))
    assert list(task.ood.num_samples) == list(METHODS) and task.ood.seconds > 0
    assert got == want


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_a_bad_worker_count_says_what_is_allowed(monkeypatch, value):
    monkeypatch.setenv("INVNORM_WORKERS", value)
    with pytest.raises(ArgumentError, match="INVNORM_WORKERS.*positive integer"):
        experiment.method_workers(4)


def test_worker_count_from_the_environment_and_capped_by_the_methods(monkeypatch):
    monkeypatch.setenv("INVNORM_WORKERS", "3")
    assert [experiment.method_workers(n) for n in (1, 2, 5)] == [1, 2, 3]
    monkeypatch.delenv("INVNORM_WORKERS")
    assert 1 <= experiment.method_workers(4) <= 2


def test_a_stop_request_ends_a_worker_thread_at_a_step_with_its_checkpoint(tmp_path):
    """A worker sees the main thread's stop after the step under way, saves it and raises
    KeyboardInterrupt; the main thread itself is never stopped by it; the run resumes."""
    x, y = _data()
    caught = []

    def work():
        try:
            train(_model(), x, y, CONFIG, workdir=tmp_path, progress=False)
        except KeyboardInterrupt:
            caught.append(True)

    checkpoint.request_stop()
    try:
        checkpoint.raise_if_stopped()  # the main thread: no effect
        thread = threading.Thread(target=work)
        thread.start()
        thread.join(timeout=300)
    finally:
        checkpoint.clear_stop()
    assert caught == [True]
    assert Checkpointer(tmp_path).latest_step() == 1  # the first step, whole
    history = train(_model(), x, y, CONFIG, workdir=tmp_path, progress=False)
    assert history["start_step"] == 1 and len(history["losses"]) == CONFIG.steps - 1


def test_an_error_in_one_method_stops_the_others_and_leaves_no_thread(tmp_path, monkeypatch):
    real = experiment.train_method
    started = threading.Event()

    def train_method(config, method, split, wd, *, progress=True):
        if method == "nn":
            started.wait(timeout=120)  # the other method is training: it must be stopped
            raise ValueError("nn failed")
        started.set()
        return real(config, method, split, wd, progress=progress)

    monkeypatch.setattr(experiment, "train_method", train_method)
    config = load_config("digits:quick", overrides=["eval.num_chips=2"])
    with pytest.raises(ValueError, match="nn failed"):
        experiment.run_task(config, tmp_path, methods=METHODS, ood=False, progress=False, workers=2)
    assert not checkpoint._STOP.is_set()
    assert not [t for t in threading.enumerate() if t.name.startswith("invnorm-method")]
    # proposed stopped early (quick trains 200 steps) with its last whole step saved.
    step = Checkpointer(tmp_path / "proposed").latest_step()
    assert step is not None and step < config.train.steps
    assert np.isfinite(step)
