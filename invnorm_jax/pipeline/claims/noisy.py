"""The proposed method against training with the device model (``noisy_training``): not a paper claim.

In detail: docs/pipeline.md (`invnorm_jax.pipeline.claims.noisy`).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from invnorm_jax.pipeline.claims.bootstrap import boot_means, stack_levels, up_to_interval
from invnorm_jax.pipeline.claims.measure import EFFECT_RANGE, effect
from invnorm_jax.pipeline.claims.scope import DEFAULT_READING, PROPOSED, task_reading
from invnorm_jax.pipeline.results import Results

NOISY = "noisy_training"
COMPARISON_VERDICTS = ("proposed better", "mixed", "noisy_training better", "no difference")


@dataclasses.dataclass
class ComparisonRow:
    """The proposed method vs ``noisy_training`` on one sweep of one task.

    ``measured`` is the proposed method's "up to" advantage (largest over the faulty levels, at
    ``best_level``) and ``reverse`` noisy_training's (at ``reverse_level``), each with its 95 %
    band interval (None without per-chip values); in ``unit``: "pp" of the metric (accuracy,
    mIoU) or "%" RMSE reduction. ``proposed_value`` / ``noisy_value`` are the metrics at
    ``best_level`` (% for shares).
    """

    task: str
    sweep: str
    kind: str
    unit: str
    measured: float
    best_level: float
    interval: tuple[float, float] | None
    reverse: float
    reverse_level: float
    reverse_interval: tuple[float, float] | None
    verdict: str
    note: str = ""
    proposed_value: float | None = None
    noisy_value: float | None = None


def comparison_verdict(interval: tuple[float, float], reverse_interval: tuple[float, float]) -> str:
    """The verdict from the lower ends of both "up to" intervals (> 0: significantly better somewhere).

    >>> comparison_verdict((1.0, 5.0), (-6.0, -1.0)), comparison_verdict((-1.0, 2.0), (-2.0, 1.0))
    ('proposed better', 'no difference')
    """
    ahead, behind = interval[0] > 0, reverse_interval[0] > 0
    if ahead and behind:
        return "mixed"
    return "proposed better" if ahead else "noisy_training better" if behind else "no difference"


def _up_to(gain: bool, point: np.ndarray, boot: np.ndarray | None, a: int, b: int):
    """Method ``a``'s up-to advantage over ``b``: (value, level index, interval or None)."""
    gains = effect(gain, point[a], point[b])
    best = int(np.nanargmax(gains))
    interval = None
    if boot is not None:
        band, _ = up_to_interval(gains, effect(gain, boot[a], boot[b]))
        interval = tuple(float(v) for v in np.clip(band, *EFFECT_RANGE["gain" if gain else "reduction"]))
    return float(gains[best]), best, interval


def evaluate_noisy_training(results: Results, *, n_boot: int = 2000, seed: int = 0) -> list[ComparisonRow]:
    """A :class:`ComparisonRow` per task and sweep where both the proposed method and noisy_training ran.

    The same draws as the claims (``two_level_weights(seeds, chips, n_boot, seed)``) pair the
    training seeds and the chips. Empty when no task has both methods. Neither method depends on
    the baselines' dropout site, so a task under another reading whose config also ran under the
    default reading is left out (its rows would repeat the default's).
    """
    rows = []
    default_names = {t.config.get("name") for t in results.tasks.values() if task_reading(t) == DEFAULT_READING}
    for task, t in results.tasks.items():
        if PROPOSED not in t.methods or NOISY not in t.methods:
            continue
        if task_reading(t) != DEFAULT_READING and t.config.get("name") in default_names - {None}:
            continue
        for name, info in t.sweeps.items():
            if not all(name in t.methods[m].sweeps for m in (PROPOSED, NOISY)):
                continue
            levels, values, note, _ = stack_levels(t, name, [PROPOSED, NOISY])
            if not levels:
                continue
            gain = t.higher_is_better
            point = values.mean(axis=(2, 3))  # [method, level]
            boot = boot_means(values, n_boot, seed)  # [method, level, B]
            measured, best, interval = _up_to(gain, point, boot, 0, 1)
            reverse, worst, reverse_interval = _up_to(gain, point, boot, 1, 0)
            word = comparison_verdict(interval or (measured, measured), reverse_interval or (reverse, reverse))
            scale = 100.0 if gain else 1.0
            rows.append(
                ComparisonRow(
                    task,
                    name,
                    info.kind,
                    "pp" if gain else "%",
                    measured,
                    float(levels[best]),
                    interval,
                    reverse,
                    float(levels[worst]),
                    reverse_interval,
                    word,
                    note.rstrip("; "),
                    scale * float(point[0, best]),
                    scale * float(point[1, best]),
                )
            )
    return rows


def _num(v: float | None) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{v:.2f}"


def _ci(interval) -> str:
    return "–" if interval is None else f"{_num(interval[0])} to {_num(interval[1])}"


def comparison_markdown(rows: list[ComparisonRow]) -> str:
    """The section of ``claims.md`` for these rows ("" when there are none)."""
    if not rows:
        return ""
    head = [
        "task",
        "sweep",
        "kind",
        "proposed ahead by up to",
        "95 % CI",
        "at level",
        "noisy_training ahead by up to",
        "95 % CI",
        "at level",
        "proposed / noisy_training",
        "verdict",
        "note",
    ]
    lines = [
        "## The proposed method vs training with the device model (not a paper claim)",
        "",
        "The run has `noisy_training` (the `nn` network trained with weight noise, docs/noisy_training.md). "
        "The paper gives no number for this comparison, so there is no paper value and no claim verdict: each "
        'row measures both methods\' "up to" advantage over the other (best faulty level, 95 % bootstrap '
        "band over training seeds and chips, both paired) and reads the verdict from the intervals' lower "
        "ends alone: "
        "**proposed better** / **noisy_training better** (only that one is significantly ahead at some "
        "level), **mixed** (both, at different levels), **no difference** (neither). noisy_training is not "
        "a baseline of the paper's claims above.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in rows:
        cells = [
            r.task,
            r.sweep,
            r.kind,
            f"{_num(r.measured)} {r.unit}",
            _ci(r.interval),
            f"{r.best_level:g}",
            f"{_num(r.reverse)} {r.unit}",
            _ci(r.reverse_interval),
            f"{r.reverse_level:g}",
            f"{_num(r.proposed_value)} / {_num(r.noisy_value)}",
            r.verdict,
            r.note.replace("|", "/"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def comparison_json(rows: list[ComparisonRow]) -> list[dict]:
    """JSON-ready rows (non-finite numbers become None, intervals lists)."""
    out = []
    for r in rows:
        d = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in dataclasses.asdict(r).items()}
        for k in ("interval", "reverse_interval"):
            d[k] = None if d[k] is None else [None if not math.isfinite(v) else float(v) for v in d[k]]
        out.append(d)
    return out


def comparison_rows_from_json(items: list[dict]) -> list[ComparisonRow]:
    """The rows of :func:`comparison_json` (a parsed ``claims.json``'s ``"noisy_training"``)."""
    return [
        ComparisonRow(**dict(d, **{k: None if d[k] is None else tuple(d[k]) for k in ("interval", "reverse_interval")}))
        for d in items
    ]
