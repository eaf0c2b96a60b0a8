"""Out-of-distribution (OOD) shifts and detection (the paper's Fig. 7).

The shifts (rotation, uniform and Gaussian noise, the :data:`SHIFTS` registry and
:func:`register_shift`) are in :mod:`invnorm_jax.ood.shifts` and re-exported here.

Detection follows the paper: a shifted input is flagged when its NLL under the MC-averaged
prediction exceeds a threshold set on in-distribution data (their mean NLL by default).
:func:`auroc` gives the threshold-free view.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from scipy.stats import rankdata

from invnorm_jax import metrics
from invnorm_jax.errors import ArgumentError
from invnorm_jax.metrics import per_input_nll
from invnorm_jax.ood.shifts import (  # noqa: F401  (re-exported: the shifts belong to the OOD study)
    NOISE_STAGES,
    ROTATION_STAGES,
    SHIFTS,
    Shift,
    gaussian_noise_shift,
    register_shift,
    rotate,
    uniform_noise_shift,
)

# ------------------------------------------------------------------------------ detection


def nll_threshold(nll_in_dist, kind: str = "mean", *, q: float = 0.95) -> float:
    """Detection threshold from the per-input NLL of in-distribution data.

    ``kind="mean"`` (the paper): :math:`\\tau = \\frac1N\\sum_i \\mathrm{NLL}_i`;
    ``kind="quantile"``: the ``q``-quantile, so about ``1 - q`` of in-distribution inputs are
    flagged. Computed in float64 so identical NLLs give a threshold equal to them.

    Args:
      nll_in_dist: per-input NLL of in-distribution inputs, ``[N]``.
      kind: ``"mean"`` or ``"quantile"``.
      q: the quantile for ``kind="quantile"``, in ``[0, 1]``.

    Returns:
      The threshold ``tau`` as a float.

    Raises:
      ValueError: an unknown ``kind`` or ``q`` outside ``[0, 1]``.

    >>> nll_threshold([1.0, 2.0, 3.0])
    2.0
    """
    v = np.asarray(nll_in_dist, dtype=np.float64)
    if kind == "mean":
        return float(np.mean(v))
    if kind == "quantile":
        if not 0.0 <= q <= 1.0:
            raise ArgumentError(f"q={q!r} is out of range: expected 0 <= q <= 1.")
        return float(np.quantile(v, q))
    raise ArgumentError(f"kind={kind!r} is unknown; expected 'mean' or 'quantile'.")


def detection_rate(nll_shifted, threshold: float) -> float:
    """Share of shifted inputs flagged as OOD: :math:`\\frac1N\\sum_i [\\mathrm{NLL}_i > \\tau]`.

    Args:
      nll_shifted: per-input NLL of the shifted inputs, ``[N]``.
      threshold: ``tau``, e.g. from :func:`nll_threshold`.

    Returns:
      The share in ``[0, 1]``.

    >>> detection_rate([0.5, 1.5, 2.5, 3.5], 2.0)
    0.5
    """
    v = np.asarray(nll_shifted, dtype=np.float64)
    return float(np.mean(v > threshold))


def auroc(scores_in, scores_out) -> float:
    """Area under the ROC curve of separating OOD from in-distribution by a score (higher = more OOD).

    Via the Mann-Whitney U statistic with average ranks for ties:

    .. math:: \\mathrm{AUROC} = \\frac{U}{n_\\text{in} n_\\text{out}}
              = P(s_\\text{out} > s_\\text{in}) + \\tfrac12 P(s_\\text{out} = s_\\text{in}),
              \\quad U = \\sum_{j \\in \\text{out}} r_j - \\frac{n_\\text{out}(n_\\text{out} + 1)}{2}

    Args:
      scores_in: scores of in-distribution inputs, ``[N_in]``.
      scores_out: scores of shifted (OOD) inputs, ``[N_out]``.

    Returns:
      The AUROC in ``[0, 1]``; 0.5 when the scores do not separate the two sets.

    >>> auroc([0.1, 0.2], [0.3, 0.2])
    0.875
    """
    s_in = np.asarray(scores_in, dtype=np.float64).reshape(-1)
    s_out = np.asarray(scores_out, dtype=np.float64).reshape(-1)
    if s_in.size == 0 or s_out.size == 0:
        raise ArgumentError(f"auroc needs both score sets non-empty, got {s_in.size} in and {s_out.size} out.")
    ranks = rankdata(np.concatenate([s_in, s_out]), method="average")
    u = ranks[s_in.size :].sum() - s_out.size * (s_out.size + 1) / 2.0
    return float(u / (s_in.size * s_out.size))


# -------------------------------------------------------------------------------- scoring


@dataclasses.dataclass(frozen=True)
class Scores:
    """One chip's MC-averaged prediction on one set of inputs: summaries and per-input scores.

    ``nll``, ``entropy`` and ``mutual_information`` are ``[N]``, one per input; see :func:`scores`.

    >>> s = Scores(accuracy=1.0, ece=0.0, nll=np.zeros(2), entropy=np.zeros(2), mutual_information=np.zeros(2))
    >>> s.accuracy, s.nll.shape
    (1.0, (2,))
    """

    accuracy: float
    ece: float
    nll: np.ndarray  # [N], per input
    entropy: np.ndarray  # [N]
    mutual_information: np.ndarray  # [N]


@functools.partial(jax.jit, static_argnames="from_logits")
def _score_blocks(outputs, labels, from_logits: bool = True):
    """Scores of ``[chips, T, blocks, N, K]`` outputs against ``labels`` ``[N]``, in one compiled call."""
    probs = jax.nn.softmax(outputs, axis=-1) if from_logits else outputs
    mean = metrics.mc_average(probs, axis=1)
    y = jnp.broadcast_to(labels, mean.shape[:-1])
    entropy = metrics.predictive_entropy(mean)
    mi = metrics.mutual_information(jnp.moveaxis(probs, 1, 0))
    per_block = jax.vmap(jax.vmap(lambda p, t: (metrics.accuracy(p, t), metrics.ece(p, t))))
    acc, ece = per_block(mean, y)
    return acc, ece, metrics.per_input_nll(mean, y), entropy, mi


def block_scores(outputs, labels, num_blocks: int, *, from_logits: bool = True) -> list[list[Scores]]:
    """``[chip][block]`` :class:`Scores` of ``[chips, T, num_blocks * N, K]`` outputs.

    The inputs are ``num_blocks`` sets of ``N`` (e.g. the stages of every shift, stacked);
    ``labels`` ``[N]`` are the same for every block.

    Args:
      outputs: ``[chips, T, num_blocks * N, K]`` logits (or probabilities).
      labels: ``[N]`` int labels, shared by every block.
      num_blocks: how many sets of ``N`` inputs ``outputs`` holds.
      from_logits: False if ``outputs`` are probabilities already.

    Returns:
      ``scores[chip][block]``, each a :class:`Scores`.

    >>> logits = np.zeros((3, 2, 2 * 10, 10))  # 3 chips, T=2, two blocks of 10 inputs, 10 classes
    >>> table = block_scores(logits, np.zeros(10, int), num_blocks=2)
    >>> len(table), len(table[0]), table[0][1].nll.shape, round(float(table[0][1].nll[0]), 4)  # NLL = log 10
    (3, 2, (10,), 2.3026)
    """
    c, t, mn, k = outputs.shape
    shaped = jnp.reshape(jnp.asarray(outputs, jnp.float32), (c, t, num_blocks, mn // num_blocks, k))
    acc, ece, nll, entropy, mi = (np.asarray(a) for a in _score_blocks(shaped, jnp.asarray(labels), from_logits))
    return [
        [Scores(float(acc[i, b]), float(ece[i, b]), nll[i, b], entropy[i, b], mi[i, b]) for b in range(num_blocks)]
        for i in range(c)
    ]


def scores(probs_samples, labels) -> Scores:
    """:class:`Scores` of per-sample probabilities ``[T, N, K]`` against ``labels`` ``[N]``.

    >>> p = np.array([[[0.9, 0.1], [0.2, 0.8]], [[0.7, 0.3], [0.4, 0.6]]])  # T=2 samples, 2 inputs
    >>> s = scores(p, [0, 0])
    >>> s.accuracy, np.round(s.nll.astype(np.float64), 4).tolist()  # -log of the mean probability of the label
    (0.5, [0.2231, 1.204])
    """
    return block_scores(jnp.asarray(probs_samples)[None], labels, 1, from_logits=False)[0][0]


def stage_row(ref: Scores, shifted: Scores, tau: float) -> dict:
    """Every metric of one stage: ``shifted`` inputs, ``ref`` the unshifted ones, NLL threshold ``tau``.

    .. math:: \\mathrm{DR} = \\frac1N\\sum_i [\\mathrm{NLL}_i > \\tau], \\qquad
              \\mathrm{AUROC} = P(s_\\text{shifted} > s_\\text{ref}) + \\tfrac12 P(s_\\text{shifted} = s_\\text{ref})

    Returns:
      ``{"accuracy", "nll", "entropy", "mutual_information", "ece", "detection_rate",
      "auroc_nll", "auroc_entropy", "nll_threshold"}``, every value a float.

    >>> zero = np.zeros(2)
    >>> ref = Scores(1.0, 0.0, np.array([0.1, 0.2]), zero, zero)
    >>> shifted = Scores(0.5, 0.1, np.array([0.3, 2.0]), zero, zero)
    >>> row = stage_row(ref, shifted, tau=1.0)
    >>> row["detection_rate"], row["auroc_nll"], round(row["nll"], 2)
    (0.5, 1.0, 1.15)
    """
    return {
        "accuracy": shifted.accuracy,
        "nll": float(np.mean(shifted.nll, dtype=np.float64)),
        "entropy": float(np.mean(shifted.entropy, dtype=np.float64)),
        "mutual_information": float(np.mean(shifted.mutual_information, dtype=np.float64)),
        "ece": shifted.ece,
        "detection_rate": detection_rate(shifted.nll, tau),
        "auroc_nll": auroc(ref.nll, shifted.nll),
        "auroc_entropy": auroc(ref.entropy, shifted.entropy),
        "nll_threshold": float(tau),
    }


def shift_metrics(probs_in, probs_out, labels_in, labels_out, *, threshold: str = "mean", q: float = 0.95) -> dict:
    """One stage's metrics from per-sample probabilities ``[T, N, K]`` of unshifted and shifted inputs.

    Args:
      probs_in: ``[T, N_in, K]`` per-sample probabilities of the unshifted inputs.
      probs_out: ``[T, N_out, K]`` of the shifted inputs.
      labels_in: ``[N_in]`` labels.
      labels_out: ``[N_out]`` labels.
      threshold: ``kind`` of :func:`nll_threshold`.
      q: its quantile.

    Returns:
      The row of :func:`stage_row`.

    >>> p_in = np.array([[[0.9, 0.1], [0.8, 0.2]]])            # T=1, 2 inputs
    >>> p_out = np.array([[[0.5, 0.5], [0.95, 0.05], [0.1, 0.9]]])
    >>> row = shift_metrics(p_in, p_out, [0, 0], [0, 0, 0])
    >>> round(row["detection_rate"], 4), round(row["auroc_nll"], 4)
    (0.6667, 0.6667)
    """
    ref, out = scores(probs_in, labels_in), scores(probs_out, labels_out)
    return stage_row(ref, out, nll_threshold(ref.nll, threshold, q=q))


def summarize_chips(per_chip: list[dict]) -> dict:
    """Mean over chips of every key of the rows, and ``<key>_std`` (population std).

    >>> summarize_chips([{"accuracy": 0.75}, {"accuracy": 0.25}])
    {'accuracy': 0.5, 'accuracy_std': 0.25}
    """
    row = {}
    for k in per_chip[0]:
        v = np.array([r[k] for r in per_chip], np.float64)
        row[k], row[f"{k}_std"] = float(v.mean()), float(v.std())
    return row


__all__ = [
    "NOISE_STAGES",
    "ROTATION_STAGES",
    "SHIFTS",
    "Scores",
    "Shift",
    "auroc",
    "block_scores",
    "detection_rate",
    "gaussian_noise_shift",
    "nll_threshold",
    "per_input_nll",
    "register_shift",
    "rotate",
    "scores",
    "shift_metrics",
    "stage_row",
    "summarize_chips",
    "uniform_noise_shift",
]
