"""The job order of ``run_tasks``: FLOP counts against hand counts, the job estimate against its
formula, longest first with more than one worker, the configs' order with one, and the same
results whichever order the jobs ran in."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from invnorm_jax.models import LSTMForecaster
from invnorm_jax.pipeline import experiment
from invnorm_jax.pipeline.config import load_config
from invnorm_jax.pipeline.ood_eval import shift_stages
from invnorm_jax.pipeline.schedule import dense_flops, forward_flops, job_flops, longest_first


def test_conv_and_matmul_flops_are_twice_the_multiply_adds():
    x, w = jnp.ones((2, 9, 7, 3)), jnp.ones((3, 5, 3, 4))
    conv = jax.make_jaxpr(
        lambda x, w: jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    )(x, w).jaxpr
    assert dense_flops(conv) == 2 * (2 * 9 * 7 * 4) * (3 * 5 * 3)
    matmul = jax.make_jaxpr(lambda a, b: jnp.einsum("bij,bjk->bik", a, b))(jnp.ones((6, 2, 3)), jnp.ones((6, 3, 5)))
    assert dense_flops(matmul.jaxpr) == 2 * 6 * 2 * 5 * 3


def test_a_scan_counts_its_body_once_per_step():
    def loop(h, w):
        return jax.lax.scan(lambda h, _: (h @ w, None), h, None, length=11)[0]

    jaxpr = jax.make_jaxpr(loop)(jnp.ones((1, 4)), jnp.ones((4, 4))).jaxpr
    assert dense_flops(jaxpr) == 11 * 2 * 4 * 4


@pytest.mark.parametrize("hidden,layers", [(8, 1), (5, 2)])
def test_lstm_forward_flops_equal_the_hand_count(hidden, layers):
    """Per step and layer: the input and recurrent projections to 4 * hidden gates; then the head."""
    steps = 13
    model = nnx.eval_shape(lambda: LSTMForecaster("proposed", hidden=hidden, num_layers=layers, rngs=nnx.Rngs(0)))
    per_step = sum(2 * ((1 if layer == 0 else hidden) + hidden) * 4 * hidden for layer in range(layers))
    want = steps * per_step + 2 * hidden * 1
    assert forward_flops(model, np.zeros((3, steps, 1), np.float32)) == want


def test_job_estimate_counts_training_faulty_levels_and_the_ood_study():
    c = load_config("digits", "quick")
    n, per_example = 360, 7.0
    faulty = sum(sum(v != 0 for v in s.levels) for s in c.sweeps.values())
    stages = sum(len(v) for v in shift_stages(c.ood).values())
    for method, samples in (("nn", 1), ("proposed", c.eval.num_samples)):
        want = per_example * (
            3 * c.train.steps * c.train.batch_size
            + (faulty * c.eval.num_chips + 1) * samples * n
            + stages * (1 + c.ood.num_chips) * samples * n
        )
        assert job_flops(c, method, per_example=per_example, num_test=n) == pytest.approx(want, rel=1e-12)


def test_longest_first_is_a_stable_sort_by_length():
    jobs = [("a", 1), ("b", 2), ("c", 3), ("d", 4)]
    length = {("a", 1): 2.0, ("b", 2): 5.0, ("c", 3): 2.0, ("d", 4): 9.0}.get
    assert longest_first(jobs, length) == [("d", 4), ("b", 2), ("a", 1), ("c", 3)]


class _Started(Exception):
    pass


@pytest.mark.parametrize("workers", [1, 2])
def test_run_tasks_hands_out_jobs_longest_first_with_workers(monkeypatch, tmp_path, workers):
    """Two workers: the CO2 LSTM's MC methods (5 samples x 100 chips x 17 levels x 432 windows of
    104 steps) before everything of digits; one worker: the configs' order. A job is (task,
    method, seed index); one seed here."""
    seen = []

    def in_workers(fn, items, n):
        seen.extend(items)
        raise _Started

    monkeypatch.setattr(experiment, "in_workers", in_workers)
    configs = {t: load_config(t) for t in ("digits", "co2")}
    with pytest.raises(_Started):
        experiment.run_tasks(configs, {t: tmp_path / t for t in configs}, workers=workers)
    natural = [(t, m, 0) for t in configs for m in configs[t].methods]
    if workers == 1:
        assert seen == natural
    else:
        assert sorted(seen) == sorted(natural)
        assert seen[:3] == [("co2", "spindrop", 0), ("co2", "spatial_spindrop", 0), ("co2", "proposed", 0)]
        assert seen[-1] == ("digits", "nn", 0)  # 1 sample, the smallest model's sweeps


def test_a_model_that_cannot_be_traced_leaves_its_jobs_unestimated_not_the_run_failed(monkeypatch, tmp_path):
    seen = []

    def in_workers(fn, items, n):
        seen.extend(items)
        raise _Started

    def untraceable(model, x):
        raise TypeError("__call__() got an unexpected keyword argument 'key'")

    monkeypatch.setattr(experiment, "in_workers", in_workers)
    monkeypatch.setattr(experiment, "forward_flops", untraceable)
    configs = {t: load_config(t) for t in ("digits", "co2")}
    with pytest.raises(_Started):
        experiment.run_tasks(configs, {t: tmp_path / t for t in configs}, workers=2)
    # Ordered by examples alone: within a task, the MC methods (5 samples) before the NN (1).
    assert sorted(seen) == sorted((t, m, 0) for t in configs for m in configs[t].methods)
    assert [m for t, m, _ in seen if t == "co2"][-1] == "nn"


def _strip(task) -> dict:
    d = dataclasses.asdict(task)
    for entry in d["methods"].values():
        entry.pop("seconds")
    return d


@pytest.mark.slow  # trains four smoke models (about 30 s)
def test_two_tasks_in_one_pool_give_each_tasks_own_results(tmp_path):
    methods = ("nn", "proposed")
    configs = {t: load_config(f"{t}:smoke", overrides=["eval.num_chips=2"]) for t in ("mnist1d", "co2")}
    alone = {
        t: experiment.run_task(c, tmp_path / "alone" / t, methods=methods, ood=False, progress=False, workers=1)
        for t, c in configs.items()
    }
    pooled = experiment.run_tasks(
        configs, {t: tmp_path / "pooled" / t for t in configs}, methods=methods, ood=False, progress=False, workers=2
    )
    assert list(pooled) == list(configs)
    for t in configs:
        assert list(pooled[t].methods) == list(methods)
        assert _strip(pooled[t]) == _strip(alone[t])
