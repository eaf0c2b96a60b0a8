"""Metrics of predictive performance and uncertainty, and their per-chip summary.

Conventions: ``probs`` are class probabilities ``[batch, classes]`` of the *MC-averaged*
prediction (average the per-sample probabilities with :func:`mc_average` first),
``probs_samples`` are per-sample probabilities ``[samples, batch, classes]``, ``labels`` are
integer class indices ``[batch]``. Everything is ``jax.numpy``, jit- and vmap-safe, so
:func:`per_chip_summary` can vmap a metric over the chip axis. Natural logarithms throughout.

The paper reports every metric per chip (one realization of the hardware faults) and then the
mean and standard deviation over 100 chips: that is :func:`per_chip_summary`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import xlogy

from invnorm_jax.errors import ArgumentError

# Probabilities are clipped here before the log so a confident miss costs -log(1e-12) ~ 27.6
# nats instead of inf, which would swamp a mean over inputs or chips.
LOG_EPS = 1e-12


def mc_average(probs_samples: jax.Array, axis: int = 0) -> jax.Array:
    """Bayesian model average of per-sample predictions: :math:`\\bar p = \\frac1T \\sum_t p_t`.

    >>> mc_average(jnp.array([[[1.0, 0.0]], [[0.0, 1.0]]])).tolist()
    [[0.5, 0.5]]
    """
    return jnp.mean(probs_samples, axis=axis)


def accuracy(probs_or_logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Share of inputs whose arg-max class is the label: :math:`\\frac1N\\sum_i [\\arg\\max_k p_{ik} = y_i]`.

    Works on probabilities or logits (same arg-max), and on any leading shape.

    >>> float(accuracy(jnp.array([[0.9, 0.1], [0.2, 0.8]]), jnp.array([0, 0])))
    0.5
    """
    return jnp.mean(jnp.argmax(probs_or_logits, axis=-1) == labels)


def per_input_nll(probs: jax.Array, labels: jax.Array, *, eps: float = LOG_EPS) -> jax.Array:
    """Negative log-likelihood of each input's label: :math:`-\\log \\max(p_{i, y_i}, \\epsilon)`.

    >>> [round(float(v), 4) for v in per_input_nll(jnp.array([[0.5, 0.5], [0.25, 0.75]]), jnp.array([0, 1]))]
    [0.6931, 0.2877]
    """
    p = jnp.take_along_axis(probs, labels[..., None].astype(jnp.int32), axis=-1)[..., 0]
    return -jnp.log(jnp.maximum(p, eps))


def nll(probs: jax.Array, labels: jax.Array, *, eps: float = LOG_EPS) -> jax.Array:
    """Mean NLL of the MC-averaged prediction: :math:`\\frac1N\\sum_i -\\log \\bar p_{i, y_i}`.

    >>> round(float(nll(jnp.array([[0.5, 0.5], [0.25, 0.75]]), jnp.array([0, 1]))), 4)
    0.4904
    """
    return jnp.mean(per_input_nll(probs, labels, eps=eps))


def predictive_entropy(mean_probs: jax.Array) -> jax.Array:
    """Per-input entropy of the averaged prediction: :math:`H[\\bar p_i] = -\\sum_k \\bar p_{ik}\\log\\bar p_{ik}`.

    Total uncertainty (aleatoric + epistemic); ``0 log 0 = 0``. Returns shape ``[batch]``.

    >>> [round(float(v), 4) for v in predictive_entropy(jnp.array([[0.5, 0.5], [0.25, 0.75]]))]
    [0.6931, 0.5623]
    """
    return -jnp.sum(xlogy(mean_probs, mean_probs), axis=-1)


def mutual_information(probs_samples: jax.Array) -> jax.Array:
    """Per-input epistemic uncertainty (BALD), samples on axis 0.

    .. math:: I_i = H\\big[\\tfrac1T\\textstyle\\sum_t p_{ti}\\big] - \\tfrac1T\\sum_t H[p_{ti}]

    Zero when every sample agrees. Takes ``[samples, batch, classes]``; returns ``[batch]``.

    Raises:
      ArgumentError: fewer than 3 axes (``[batch, classes]`` has no samples to disagree).

    >>> round(float(mutual_information(jnp.array([[[1.0, 0.0]], [[0.0, 1.0]]]))[0]), 4)
    0.6931
    """
    if jnp.ndim(probs_samples) < 3:
        raise ArgumentError(
            f"mutual_information: probs_samples has shape {tuple(jnp.shape(probs_samples))}: expected "
            "[samples, batch, classes], the MC samples' probabilities (one sample: probs[None], which gives 0)."
        )
    total = predictive_entropy(mc_average(probs_samples, axis=0))
    expected = jnp.mean(predictive_entropy(probs_samples), axis=0)
    return total - expected


def ece(probs: jax.Array, labels: jax.Array, num_bins: int = 15) -> jax.Array:
    """Expected calibration error with ``num_bins`` equal-width confidence bins.

    .. math:: \\mathrm{ECE} = \\sum_b \\frac{|B_b|}{N}\\,|\\mathrm{acc}(B_b) - \\mathrm{conf}(B_b)|
              = \\frac1N \\sum_b \\Big|\\sum_{i\\in B_b} ([\\hat y_i = y_i] - c_i)\\Big|

    with confidence :math:`c_i = \\max_k p_{ik}` and bin ``b`` holding
    :math:`c_i \\in (b/M, (b+1)/M]`.

    >>> round(float(ece(jnp.array([[0.9, 0.1], [0.6, 0.4]]), jnp.array([0, 1]), num_bins=10)), 4)
    0.35
    """
    conf = jnp.max(probs, axis=-1)
    correct = (jnp.argmax(probs, axis=-1) == labels).astype(conf.dtype)
    # ceil(c*M) - 1 puts c on a bin's right edge into that bin, i.e. bins are (lo, hi].
    bin_idx = jnp.clip(jnp.ceil(conf * num_bins).astype(jnp.int32) - 1, 0, num_bins - 1)
    gap = jnp.zeros(num_bins, conf.dtype).at[bin_idx].add(correct - conf)
    return jnp.sum(jnp.abs(gap)) / conf.shape[0]


def brier(probs: jax.Array, labels: jax.Array) -> jax.Array:
    """Multi-class Brier score: :math:`\\frac1N\\sum_i\\sum_k (p_{ik} - [k = y_i])^2` (0 best, 2 worst).

    >>> round(float(brier(jnp.array([[0.75, 0.25]]), jnp.array([0]))), 4)
    0.125
    """
    onehot = jax.nn.one_hot(labels, probs.shape[-1], dtype=probs.dtype)
    return jnp.mean(jnp.sum((probs - onehot) ** 2, axis=-1))


def iou_per_class(pred_labels: jax.Array, labels: jax.Array, num_classes: int, mask=None) -> jax.Array:
    """Intersection over union per class, :math:`\\mathrm{TP}_k / (\\mathrm{TP}_k + \\mathrm{FP}_k + \\mathrm{FN}_k)`.

    Pixels where ``mask`` is false (e.g. outside DRIVE's field of view) are ignored. A class
    absent from both prediction and labels has no defined IoU: NaN.

    >>> iou_per_class(jnp.array([0, 1, 1]), jnp.array([0, 0, 1]), 2).tolist()
    [0.5, 0.5]
    """
    pred = pred_labels.reshape(-1).astype(jnp.int32)
    true = labels.reshape(-1).astype(jnp.int32)
    weight = jnp.ones(pred.shape, jnp.float32) if mask is None else mask.reshape(-1).astype(jnp.float32)
    confusion = jnp.zeros(num_classes * num_classes, jnp.float32).at[true * num_classes + pred].add(weight)
    confusion = confusion.reshape(num_classes, num_classes)  # rows: truth, columns: prediction
    tp = jnp.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - tp
    return jnp.where(union > 0, tp / jnp.where(union > 0, union, 1.0), jnp.nan)


def miou(pred_labels: jax.Array, labels: jax.Array, num_classes: int, mask=None) -> jax.Array:
    """Mean IoU over the classes present in prediction or labels (see :func:`iou_per_class`).

    >>> round(float(miou(jnp.array([0, 1, 1, 1]), jnp.array([0, 0, 1, 1]), 2)), 4)
    0.5833
    """
    return jnp.nanmean(iou_per_class(pred_labels, labels, num_classes, mask))


def rmse(pred: jax.Array, target: jax.Array) -> jax.Array:
    """Root mean squared error :math:`\\sqrt{\\frac1N\\sum_i (\\hat y_i - y_i)^2}` over all elements.

    >>> float(rmse(jnp.array([1.0, 3.0]), jnp.array([0.0, 0.0])))
    2.2360680103302
    """
    return jnp.sqrt(jnp.mean((pred - target) ** 2))


def _check_chip_outputs(outputs, labels) -> None:
    """Raise unless ``outputs`` is ``[chips, samples, batch, ...]`` with one row per label."""
    shape = tuple(np.shape(outputs))
    if len(shape) < 3:
        raise ArgumentError(
            f"outputs.shape={shape}: expected [chips, samples, batch, ...] as simulate_chips returns (at least 3 "
            "axes); one chip's [samples, batch, ...] outputs are outputs[None], and a reduce_fn's [chips, batch] "
            "values are averaged directly, e.g. .mean(axis=1)."
        )
    label_shape = tuple(np.shape(labels))
    if label_shape and label_shape[0] != shape[2]:
        raise ArgumentError(
            f"outputs has {shape[2]} examples (axis 2 of {shape}) but labels has {label_shape[0]} "
            f"(axis 0 of {label_shape}): they must be the same inputs."
        )


def per_chip_summary(
    outputs: jax.Array,
    labels: jax.Array,
    metric_fn: Callable[[jax.Array, jax.Array], jax.Array],
    *,
    ddof: int = 0,
    vectorize: bool = True,
) -> dict[str, jax.Array]:
    """A metric per chip on its MC-averaged prediction, and its mean and std over chips.

    .. math:: m_c = \\mathrm{metric}\\big(\\tfrac1T\\textstyle\\sum_t o_{c,t}, y\\big), \\quad
              \\text{mean} = \\tfrac1C\\sum_c m_c, \\quad \\text{std} = \\sqrt{\\tfrac{1}{C - \\text{ddof}}\\sum_c (m_c - \\text{mean})^2}

    Args:
      outputs: ``[chips, samples, batch, ...]`` per-sample probabilities or regression outputs.
      labels: targets shared by every chip (``[batch]`` labels or ``[batch, ...]`` targets).
      metric_fn: ``metric_fn(mean_output, labels) -> scalar``, e.g. :func:`nll` or
        ``functools.partial(miou, num_classes=2)`` on arg-maxed outputs.
      ddof: delta degrees of freedom of the std over chips.
      vectorize: vmap ``metric_fn`` over chips (it must be traceable); False loops in Python.

    Returns:
      ``{"per_chip": [chips], "mean": scalar, "std": scalar}``.

    Raises:
      ArgumentError: ``outputs`` of fewer than 3 axes, or another number of examples than ``labels``.

    >>> out = jnp.array([[[[1.0, 0.0]]], [[[0.0, 1.0]]]])   # 2 chips, 1 sample, 1 input
    >>> per_chip_summary(out, jnp.array([0]), accuracy)["per_chip"].tolist()
    [1.0, 0.0]
    """
    _check_chip_outputs(outputs, labels)
    mean_outputs = mc_average(outputs, axis=1)
    if vectorize:
        per_chip = jax.vmap(lambda o: metric_fn(o, labels))(mean_outputs)
    else:
        per_chip = jnp.stack([jnp.asarray(metric_fn(o, labels)) for o in mean_outputs])
    return {"per_chip": per_chip, "mean": jnp.mean(per_chip), "std": jnp.std(per_chip, ddof=ddof)}


def classification_metrics(probs_samples: jax.Array, labels: jax.Array, *, num_bins: int = 15) -> dict[str, jax.Array]:
    """Every classification metric of one ``[samples, batch, classes]`` tensor.

    Accuracy, NLL, ECE and Brier score are of the MC-averaged prediction; ``entropy`` and
    ``mutual_information`` are means over inputs of :func:`predictive_entropy` and
    :func:`mutual_information`.

    >>> m = classification_metrics(jnp.full((3, 4, 2), 0.5), jnp.zeros(4, jnp.int32))
    >>> round(float(m["nll"]), 4), round(float(m["mutual_information"]), 4)
    (0.6931, 0.0)
    """
    mean_probs = mc_average(probs_samples, axis=0)
    return {
        "accuracy": accuracy(mean_probs, labels),
        "nll": nll(mean_probs, labels),
        "entropy": jnp.mean(predictive_entropy(mean_probs)),
        "mutual_information": jnp.mean(mutual_information(probs_samples)),
        "ece": ece(mean_probs, labels, num_bins),
        "brier": brier(mean_probs, labels),
    }


# ------------------------------------------------------------------------------ task metrics


@dataclasses.dataclass(frozen=True)
class TaskMetric:
    """What an experiment's headline metric is: its training loss, direction and display.

    Attributes:
      name: ``"accuracy"``, ``"rmse"`` or ``"miou"``.
      loss: the training loss of :data:`invnorm_jax.train.LOSSES` that goes with it.
      higher_is_better: the direction of "better".
      classification: outputs are logits over classes (OOD detection applies).
      unit: how a report labels it.
      scale: factor for display (100 for shares shown in %).
    """

    name: str
    loss: str
    higher_is_better: bool
    classification: bool
    unit: str
    scale: float


TASK_METRICS = {
    "accuracy": TaskMetric("accuracy", "xent", True, True, "accuracy %", 100.0),
    "rmse": TaskMetric("rmse", "mse", False, False, "RMSE", 1.0),
    "miou": TaskMetric("miou", "seg_xent", True, True, "mIoU %", 100.0),
}


def chip_counts(outputs: jax.Array, labels, metric: str, mask=None) -> jax.Array:
    """Per-chip sufficient statistics of a task metric: ``[chips, k]`` sums that add over slices.

    The streaming form of :func:`per_chip_summary` for the task metrics of
    :data:`TASK_METRICS`: evaluate a test set slice by slice, add each slice's counts, and
    finish with :func:`metric_from_counts`; the result equals the metric of the whole set.
    The prediction of a chip is its MC average: of the softmax probabilities for classifiers,
    of the outputs for regression.

    Args:
      outputs: ``[chips, samples, batch, ...]`` logits (classification) or predictions.
      labels: ``[batch, ...]`` labels or regression targets.
      metric: a key of :data:`TASK_METRICS`.
      mask: ``[batch, ...]`` bool, the positions that count (mIoU only; e.g. DRIVE's FOV).

    Returns:
      accuracy: ``[chips, 2]`` (correct, count); rmse: ``[chips, 2]`` (squared error sum,
      count); miou: ``[chips, 2K]`` (per-class intersections, then unions).

    >>> out = jnp.array([[[[2.0, 0.0], [0.0, 1.0]]]])        # 1 chip, 1 sample, 2 inputs
    >>> metric_from_counts(np.asarray(chip_counts(out, jnp.array([0, 0]), "accuracy")), "accuracy").tolist()
    [0.5]
    """
    labels = jnp.asarray(labels)
    if metric == "rmse":
        err = jnp.square(outputs.mean(axis=1) - labels.reshape(outputs.shape[2:]))
        per_chip = err.reshape(err.shape[0], -1)
        return jnp.stack([per_chip.sum(1), jnp.full(per_chip.shape[:1], per_chip.shape[1], per_chip.dtype)], 1)
    pred = jnp.argmax(mc_average(jax.nn.softmax(outputs, axis=-1), axis=1), axis=-1)
    if metric == "accuracy":
        correct = (pred == labels).reshape(pred.shape[0], -1).astype(jnp.float32)
        return jnp.stack([correct.sum(1), jnp.full(correct.shape[:1], correct.shape[1], jnp.float32)], 1)
    if metric != "miou":
        raise ArgumentError(f"metric={metric!r} is unknown; expected one of {tuple(TASK_METRICS)}.")
    num_classes = outputs.shape[-1]
    valid = jnp.ones(labels.shape, bool) if mask is None else jnp.asarray(mask, bool)
    p = jax.nn.one_hot(pred, num_classes, dtype=bool) & valid[None, ..., None]
    t = jax.nn.one_hot(labels, num_classes, dtype=bool) & valid[..., None]
    axes = tuple(range(1, p.ndim - 1))
    inter = jnp.sum(p & t[None], axis=axes, dtype=jnp.float32)
    union = jnp.sum(p | t[None], axis=axes, dtype=jnp.float32)
    return jnp.concatenate([inter, union], axis=1)


def metric_from_counts(counts: np.ndarray, metric: str) -> np.ndarray:
    """The per-chip metric ``[chips]`` from summed :func:`chip_counts` (float64 numpy).

    mIoU is the mean IoU over the classes present in prediction or labels, as :func:`miou`.
    """
    counts = np.asarray(counts, np.float64)
    if metric == "accuracy":
        return counts[:, 0] / counts[:, 1]
    if metric == "rmse":
        return np.sqrt(counts[:, 0] / counts[:, 1])
    inter, union = np.split(counts, 2, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nanmean(np.where(union > 0, inter / union, np.nan), axis=1)
