"""Per-chip task metrics (streaming counts) against the independent metrics functions, and the runner."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from invnorm_jax import metrics
from invnorm_jax.faults import Fault
from invnorm_jax.models import build_model
from invnorm_jax.pipeline import evaluation


@pytest.fixture
def outputs():
    rng = np.random.default_rng(0)
    return jnp.asarray(rng.normal(size=(3, 4, 5, 6, 7, 2)).astype(np.float32))  # chips, T, batch, H, W, classes


def _chip_metric(outputs, labels, metric, mask=None):
    return metrics.metric_from_counts(np.asarray(metrics.chip_counts(outputs, labels, metric, mask)), metric)


def _mc_pred(out):
    return np.asarray(jnp.argmax(jax.nn.softmax(out, -1).mean(1), -1))


def test_miou_counts_match_metrics_miou(outputs):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, size=(5, 6, 7))
    mask = rng.random((5, 6, 7)) > 0.3
    got = _chip_metric(outputs, labels, "miou", mask)
    pred = _mc_pred(outputs)
    want = [float(metrics.miou(jnp.asarray(p), jnp.asarray(labels), 2, mask=jnp.asarray(mask))) for p in pred]
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_accuracy_and_rmse_per_chip(outputs):
    flat = outputs[:, :, :, 0, 0, :]  # [chips, T, batch, classes]
    labels = np.array([0, 1, 1, 0, 1])
    want = [(p == labels).mean() for p in _mc_pred(flat)]
    np.testing.assert_allclose(_chip_metric(flat, labels, "accuracy"), want)
    target = np.arange(5.0).reshape(5, 1)
    reg = outputs[:, :, :, 0, 0, :1]
    want = [np.sqrt(np.mean((np.asarray(r).mean(0) - target) ** 2)) for r in reg]
    np.testing.assert_allclose(_chip_metric(reg, target, "rmse"), want, rtol=1e-5)


def test_sliced_evaluation_equals_whole_batch():
    model = build_model(
        "resnet", "proposed", in_channels=1, num_classes=10, widths=(8, 8), blocks=(1, 1), rngs=nnx.Rngs(0)
    )
    x = np.asarray(jax.random.normal(jax.random.key(0), (12, 8, 8, 1)))
    y = np.arange(12) % 10
    kw = dict(fault=Fault("bit_flip", 0.2), num_chips=3, num_samples=2, key=jax.random.key(1), deterministic=True)
    whole = evaluation.per_chip_metric(model, x, y, "accuracy", **kw)
    sliced = evaluation.per_chip_metric(model, x, y, "accuracy", batch_size=5, **kw)
    np.testing.assert_allclose(sliced, whole)
    assert whole.shape == (3,)


def test_counts_of_slices_add_up_to_the_whole_set(outputs):
    flat = outputs[:, :, :, 0, 0, :]
    labels = np.array([0, 1, 1, 0, 1])
    whole = metrics.chip_counts(flat, labels, "accuracy")
    parts = metrics.chip_counts(flat[:, :, :2], labels[:2], "accuracy") + metrics.chip_counts(
        flat[:, :, 2:], labels[2:], "accuracy"
    )
    np.testing.assert_array_equal(np.asarray(parts), np.asarray(whole))
    # And the per-chip accuracy equals per_chip_summary's on the MC-averaged probabilities.
    summary = metrics.per_chip_summary(jax.nn.softmax(flat, -1), jnp.asarray(labels), metrics.accuracy)
    np.testing.assert_allclose(metrics.metric_from_counts(np.asarray(whole), "accuracy"), summary["per_chip"])
    with pytest.raises(ValueError, match="metric='f1'"):
        metrics.chip_counts(flat, labels, "f1")


@pytest.mark.parametrize("method", ["proposed", "nn"])
def test_level_zero_reuses_the_fault_free_run_and_agrees_with_simulating_it(method):
    from invnorm_jax.data.common import Split
    from invnorm_jax.pipeline.config import load_config

    config = load_config("digits:smoke")
    config.eval.num_chips, config.eval.num_samples = 4, 3
    model = build_model("resnet", method, in_channels=1, num_classes=10, widths=(8, 8), blocks=(1, 1), rngs=nnx.Rngs(0))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 8, 8, 1)).astype(np.float32)
    split = Split(x, np.arange(20) % 10, x, np.arange(20) % 10, num_classes=10)
    reused = evaluation.evaluate_method(model, config, split, method, progress=False)
    simulated = evaluation.evaluate_method(model, config, split, method, progress=False, reuse_fault_free=False)
    for name, rows in reused.sweeps.items():
        assert rows[0].level == 0.0 and rows[0].chips == [reused.fault_free] * 4
        np.testing.assert_allclose(simulated.sweeps[name][0].chips, rows[0].chips, atol=1e-6)
        for a, b in zip(rows[1:], simulated.sweeps[name][1:]):
            assert a.chips == b.chips  # the other levels are simulated either way
