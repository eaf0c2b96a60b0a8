"""Metrics on small cases whose expected values are worked out by hand (float64 numpy)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from invnorm_jax import metrics as M


def close(a, b, tol=1e-6):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=tol, atol=tol)


def test_accuracy_on_probs_and_logits():
    probs = jnp.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    labels = jnp.array([0, 1, 1, 0])
    close(M.accuracy(probs, labels), 0.5)
    close(M.accuracy(jnp.log(probs) + 3.0, labels), 0.5)


def test_mc_average_and_nll():
    samples = jnp.array([[[0.5, 0.5], [0.0, 1.0]], [[0.5, 0.5], [0.5, 0.5]]])  # [2, 2, 2]
    mean = M.mc_average(samples)
    close(mean, [[0.5, 0.5], [0.25, 0.75]])
    close(M.mc_average(jnp.moveaxis(samples, 0, 1), axis=1), mean)
    # -(log 0.5 + log 0.75) / 2
    close(M.nll(mean, jnp.array([0, 1])), -(np.log(0.5) + np.log(0.75)) / 2)
    close(M.per_input_nll(mean, jnp.array([1, 0])), [-np.log(0.5), -np.log(0.25)])


def test_nll_of_zero_probability_is_finite():
    value = M.nll(jnp.array([[1.0, 0.0]]), jnp.array([1]))
    close(value, -np.log(M.LOG_EPS), tol=1e-4)


def test_predictive_entropy():
    probs = jnp.array([[0.25, 0.25, 0.25, 0.25], [1.0, 0.0, 0.0, 0.0], [0.5, 0.25, 0.25, 0.0]])
    # uniform over 4: log 4; one-hot: 0; 0.5 log 2 + 2 * 0.25 log 4 = 1.5 log 2
    close(M.predictive_entropy(probs), [np.log(4.0), 0.0, 1.5 * np.log(2.0)])


def test_mutual_information():
    agree = jnp.tile(jnp.array([[[0.7, 0.3]]]), (5, 1, 1))
    close(M.mutual_information(agree), [0.0], tol=1e-6)
    disagree = jnp.array([[[1.0, 0.0]], [[0.0, 1.0]]])
    close(M.mutual_information(disagree), [np.log(2.0)])
    # A general case against a float64 numpy reference: H(mean) - mean(H).
    p = np.array([[[0.6, 0.3, 0.1]], [[0.2, 0.5, 0.3]], [[0.1, 0.1, 0.8]]])
    h = lambda q: -np.sum(q * np.log(q), axis=-1)
    close(M.mutual_information(jnp.asarray(p, jnp.float32)), h(p.mean(0)) - h(p).mean(0), tol=1e-5)


def test_ece_four_examples_by_hand():
    # 5 bins of width 0.2. Confidences 0.95 (right), 0.85 (wrong) in (0.8, 1.0]:
    # acc 0.5, conf 0.9 -> |gap| 0.4, weight 2/4. Confidences 0.55, 0.52 (both right) in
    # (0.4, 0.6]: acc 1, conf 0.535 -> |gap| 0.465, weight 2/4. ECE = 0.2 + 0.2325 = 0.4325.
    conf = jnp.array([0.95, 0.85, 0.55, 0.52])
    probs = jnp.stack([conf, 1.0 - conf], axis=-1)
    labels = jnp.array([0, 1, 0, 0])
    close(M.ece(probs, labels, num_bins=5), 0.4325, tol=1e-6)


def test_ece_gaps_do_not_cancel_across_bins_and_perfect_calibration_is_zero():
    # Bin (0.6, 0.8]: 0.7 right (+0.3). Bin (0.8, 1.0]: 0.9 wrong (-0.9). ECE = (0.3 + 0.9)/2.
    probs = jnp.array([[0.7, 0.3], [0.9, 0.1]])
    close(M.ece(probs, jnp.array([0, 1]), num_bins=5), 0.6)
    close(M.ece(jnp.array([[1.0, 0.0], [0.0, 1.0]]), jnp.array([0, 1])), 0.0)


def test_brier():
    probs = jnp.array([[0.75, 0.25], [0.75, 0.25]])
    # label 0: 0.25^2 + 0.25^2 = 0.125; label 1: 0.75^2 + 0.75^2 = 1.125
    close(M.brier(probs, jnp.array([0, 1])), (0.125 + 1.125) / 2)


def test_miou_by_hand_with_mask_and_absent_class():
    pred = jnp.array([[0, 1], [1, 1]])
    true = jnp.array([[0, 0], [1, 1]])
    # class 0: TP 1, FP 0, FN 1 -> 1/2; class 1: TP 2, FP 1, FN 0 -> 2/3
    close(M.iou_per_class(pred, true, 2), [0.5, 2.0 / 3.0])
    close(M.miou(pred, true, 2), (0.5 + 2.0 / 3.0) / 2)
    # An extra class absent from both is ignored, not counted as IoU 0 (or 1).
    close(M.miou(pred, true, 3), (0.5 + 2.0 / 3.0) / 2)
    # Masking out the one wrong pixel makes the segmentation perfect.
    mask = jnp.array([[True, False], [True, True]])
    close(M.miou(pred, true, 2, mask=mask), 1.0)


def test_rmse():
    close(M.rmse(jnp.array([1.0, 3.0, -2.0]), jnp.array([0.0, 0.0, 0.0])), np.sqrt(14.0 / 3.0))


def test_per_chip_summary_accuracy():
    # [chips=3, samples=2, batch=2, classes=2]
    a = [[0.9, 0.1], [0.2, 0.8]]
    b = [[0.1, 0.9], [0.2, 0.8]]
    outputs = jnp.array([[a, a], [a, b], [b, b]])
    labels = jnp.array([0, 1])
    # chip 0: both right (1.0); chip 1: mean of a, b is [0.5, 0.5] -> argmax 0 -> right (1.0);
    # chip 2: first wrong (0.5)
    summary = M.per_chip_summary(outputs, labels, M.accuracy)
    assert summary["per_chip"].shape == (3,)
    close(summary["per_chip"], [1.0, 1.0, 0.5])
    close(summary["mean"], 2.5 / 3)
    close(summary["std"], np.std([1.0, 1.0, 0.5]))
    close(M.per_chip_summary(outputs, labels, M.accuracy, ddof=1)["std"], np.std([1.0, 1.0, 0.5], ddof=1))
    looped = M.per_chip_summary(outputs, labels, M.accuracy, vectorize=False)
    close(looped["per_chip"], summary["per_chip"])


def test_per_chip_summary_regression_and_jit():
    # [chips=2, samples=2, batch=3]: MC means [1, 1, 1] and [0, 2, 4] against target [1, 2, 3]
    outputs = jnp.array([[[0.0, 0.0, 0.0], [2.0, 2.0, 2.0]], [[0.0, 2.0, 4.0], [0.0, 2.0, 4.0]]])
    target = jnp.array([1.0, 2.0, 3.0])
    summary = jax.jit(lambda o: M.per_chip_summary(o, target, M.rmse))(outputs)
    close(summary["per_chip"], [np.sqrt(5.0 / 3.0), np.sqrt(2.0 / 3.0)])


def test_per_chip_summary_miou():
    logits = jnp.zeros((2, 1, 4, 2)).at[0, 0, :, 1].set(1.0)  # chip 0 predicts 1 everywhere
    labels = jnp.array([0, 0, 1, 1])
    metric = lambda p, y: M.miou(jnp.argmax(p, -1), y, num_classes=2)
    # chip 0: class 0 IoU 0, class 1 IoU 2/4; chip 1 predicts 0: class 0 2/4, class 1 0
    close(M.per_chip_summary(logits, labels, metric)["per_chip"], [0.25, 0.25])


def test_classification_metrics_match_parts():
    key = jax.random.key(0)
    probs = jax.nn.softmax(jax.random.normal(key, (6, 20, 4)) * 2.0, axis=-1)
    labels = jax.random.randint(jax.random.key(1), (20,), 0, 4)
    m = jax.jit(M.classification_metrics)(probs, labels)
    mean = probs.mean(0)
    assert set(m) == {"accuracy", "nll", "entropy", "mutual_information", "ece", "brier"}
    close(m["accuracy"], M.accuracy(mean, labels))
    close(m["nll"], M.nll(mean, labels))
    close(m["entropy"], M.predictive_entropy(mean).mean())
    close(m["mutual_information"], M.mutual_information(probs).mean())
    close(m["ece"], M.ece(mean, labels))
    close(m["brier"], M.brier(mean, labels))
    assert float(m["mutual_information"]) > 0.0


@pytest.mark.parametrize("fn", [M.nll, M.brier, functools.partial(M.ece, num_bins=10)])
def test_perfect_one_hot_prediction_scores_zero(fn):
    probs = jax.nn.one_hot(jnp.array([2, 0, 1]), 3)
    close(fn(probs, jnp.array([2, 0, 1])), 0.0, tol=1e-6)
