"""The paper's claims measured on a run: the registry, the statistics and the verdicts.

In detail: docs/pipeline.md (`invnorm_jax.pipeline.claims.measure`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from invnorm_jax.pipeline.claims.bootstrap import boot_means, stack_levels, up_to_interval
from invnorm_jax.pipeline.claims.scope import (
    BASELINES,
    DROPOUT_METHODS,
    NN,
    PROPOSED,
    naive_bar,
    readings,
    task_reading,
)
from invnorm_jax.pipeline.results import Results, TaskResult

VARIATION_KINDS = ("additive", "multiplicative", "uniform")
VERDICTS = ("holds", "holds in part", "does not hold", "not measured")
#: Claim 10 ("comparable"): the proposed method may trail the best baseline's fault-free metric
#: by at most 1 percentage point (accuracy, mIoU) or have at most a 5 % higher RMSE.
FAULT_FREE_TOLERANCE = {"pp": 1.0, "%": 5.0}
#: The range an effect can take (pp of accuracy; % RMSE reduction): the interval is clipped to it.
EFFECT_RANGE = {"gain": (-100.0, 100.0), "reduction": (-np.inf, 100.0)}


@dataclasses.dataclass(frozen=True)
class Claim:
    """One quantitative claim of the paper and how it is measured.

    Attributes:
      id: 1..10, as numbered in docs/claims.md.
      group: the heading its table goes under.
      text: what the paper states (paraphrased; the value is the paper's own).
      paper_value: the paper's number in ``unit`` (``None``: a qualitative claim, 10).
      measure: ``"gain"`` (percentage points of accuracy), ``"reduction"`` (``1 - rmse_p / rmse_b``,
        in %), ``"detection"`` (the proposed method's OOD detection rate, %) or ``"fault_free"``.
      metrics: the task metrics it applies to.
      kinds: the sweep kinds it applies to (gain, reduction).
      baseline: the claim's own baseline: ``"nn"``, ``"dropout"`` (the stronger dropout BayNN at
        each level) or ``"strongest"`` (the best of every baseline at each level).
      shift: the OOD shift (detection).
    """

    id: int
    group: str
    text: str
    paper_value: float | None
    measure: str
    metrics: tuple[str, ...]
    kinds: tuple[str, ...] = ()
    baseline: str = "strongest"
    shift: str | None = None

    @property
    def unit(self) -> str:
        return "pp" if self.measure == "gain" else "%"


_BF, _VAR = "Bit-flips: classification accuracy", "Variation: classification accuracy"
_LSTM, _OOD = "LSTM (regression): RMSE", "Out-of-distribution detection"
CLAIMS: tuple[Claim, ...] = (
    Claim(
        1,
        _BF,
        "Accuracy improved by up to 58.11 % over the conventional NN under bit-flip faults.",
        58.11,
        "gain",
        ("accuracy",),
        ("bit_flip",),
        "nn",
    ),
    Claim(
        2,
        _BF,
        "Accuracy improved by up to 42.06 % over the dropout BayNNs (SpinDrop, Spatial-SpinDrop) "
        "under bit-flip faults.",
        42.06,
        "gain",
        ("accuracy",),
        ("bit_flip",),
        "dropout",
    ),
    Claim(
        3,
        _VAR,
        "Accuracy improved by up to 53.55 % over the conventional NN under conductance variation.",
        53.55,
        "gain",
        ("accuracy",),
        VARIATION_KINDS,
        "nn",
    ),
    Claim(
        4,
        _VAR,
        "Accuracy improved by up to 55.62 % over the dropout BayNNs under conductance variation.",
        55.62,
        "gain",
        ("accuracy",),
        VARIATION_KINDS,
        "dropout",
    ),
    Claim(
        5,
        _LSTM,
        "LSTM RMSE lower by up to 30.2 % under additive variation.",
        30.2,
        "reduction",
        ("rmse",),
        ("additive",),
    ),
    Claim(
        6,
        _LSTM,
        "LSTM RMSE lower by up to 46.7 % under multiplicative variation.",
        46.7,
        "reduction",
        ("rmse",),
        ("multiplicative",),
    ),
    Claim(7, _LSTM, "LSTM RMSE lower by up to 51.84 % under bit-flips.", 51.84, "reduction", ("rmse",), ("bit_flip",)),
    Claim(
        8,
        _OOD,
        "OOD (uniform noise) detected at a rate of up to 55.03 %.",
        55.03,
        "detection",
        ("accuracy", "miou"),
        shift="uniform_noise",
    ),
    Claim(
        9,
        _OOD,
        "OOD (rotation) detected at a rate of up to 78.95 %.",
        78.95,
        "detection",
        ("accuracy", "miou"),
        shift="rotation",
    ),
    Claim(
        10,
        "Fault-free (Table I)",
        "Fault-free metric comparable to the baselines.",
        None,
        "fault_free",
        ("accuracy", "miou", "rmse"),
    ),
)


@dataclasses.dataclass
class ClaimRow:
    """One measurement of a claim: a task, a sweep (or OOD shift) and a baseline.

    ``baseline`` is ``"nn"``, ``"spindrop"``, ``"spatial_spindrop"``, ``"dropout"`` (the
    stronger dropout BayNN at each level) or ``"strongest"`` (the best baseline at each level);
    ``headline`` marks the row that answers the claim as the paper states it. ``measured``,
    ``paper_value`` and ``interval`` are in ``unit`` ("pp": percentage points, "%"); the
    ``*_value`` fields are the metrics at ``best_level`` (% for shares); ``relative`` is the
    up-to relative accuracy gain ``(acc_p - acc_b) / acc_b`` in % (gain claims only). A claim
    with nothing to measure in the run is one row with ``task=None`` and verdict "not measured".
    ``reading`` is where the task's baselines put their dropout (:data:`READINGS`); ``num_seeds`` and
    ``num_chips`` are the training seeds and chips the row rests on (None: not a sweep of chips);
    ``naive_rmse`` is a forecast's best naive RMSE (:data:`NAIVE_MARGIN`).
    """

    claim: int
    task: str | None
    sweep: str | None
    baseline: str | None
    paper_value: float | None
    measured: float | None
    unit: str
    best_level: float | None = None
    interval: tuple[float, float] | None = None
    verdict: str = "not measured"
    note: str = ""
    headline: bool = False
    proposed_value: float | None = None
    baseline_value: float | None = None
    relative: float | None = None
    interval_percentile: tuple[float, float] | None = None
    reading: str = "crossbar"
    num_seeds: int | None = None
    num_chips: int | None = None
    naive_rmse: float | None = None


def verdict(measured: float, interval: tuple[float, float] | None, paper_value: float) -> str:
    """The verdict on an "up to" claim from its measured value and 95 % interval (docs/claims.md).

    ``lo``, ``hi`` are the interval's ends (both the point value when there is no interval):
    "holds" when ``lo > 0`` and ``hi >= paper_value``; "holds in part" when ``lo > 0`` and
    ``hi < paper_value``; "does not hold" when ``lo <= 0``.

    >>> verdict(60.0, (50.0, 70.0), 58.11), verdict(10.0, (5.0, 15.0), 58.11), verdict(1.0, (-1.0, 3.0), 58.11)
    ('holds', 'holds in part', 'does not hold')
    """
    lo, hi = interval if interval is not None else (measured, measured)
    if not lo > 0:
        return "does not hold"
    return "holds" if hi >= paper_value else "holds in part"


def effect(gain: bool, p: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``p``'s advantage over ``b`` at each level (same shape as ``p``): percentage points
    (``gain``, a metric where higher is better) or the RMSE reduction ``1 - p / b`` in %."""
    if gain:
        return 100.0 * (p - b)
    with np.errstate(divide="ignore", invalid="ignore"):
        return 100.0 * (1.0 - p / b)


def _level_effect(claim: Claim, p: np.ndarray, b: np.ndarray) -> np.ndarray:
    """:func:`effect` in the claim's measure."""
    return effect(claim.measure == "gain", p, b)


def _pick(means: np.ndarray, members: list[int], higher: bool) -> tuple[np.ndarray, np.ndarray]:
    """The best of ``members`` (rows of ``means [method, level, x]``) per level and replicate, and which."""
    sub = means[members]
    which = np.argmax(sub, axis=0) if higher else np.argmin(sub, axis=0)
    return np.take_along_axis(sub, which[None], axis=0)[0], np.asarray(members)[which]


def _sweep_rows(
    claim: Claim, task: str, t: TaskResult, name: str, n_boot: int, seed: int, exclude=frozenset()
) -> list[ClaimRow]:
    present = [m for m in BASELINES if m in t.methods and name in t.methods[m].sweeps and m not in exclude]
    dropout = [m for m in DROPOUT_METHODS if m in present]
    own = {"nn": [NN] if NN in present else [], "dropout": dropout, "strongest": present}[claim.baseline]
    if not own:
        return []
    singles = [(m, [m]) for m in own]  # the claim's baseline(s) one by one, then the strongest of all
    specs = ([("dropout", dropout)] if claim.baseline == "dropout" else []) + singles + [("strongest", present)]
    methods = [PROPOSED] + present
    levels, values, note, (num_seeds, num_chips) = stack_levels(t, name, methods)
    if not levels:
        return []
    point = values.mean(axis=(2, 3))[..., None]  # [method, level, 1]
    boot = boot_means(values, n_boot, seed)  # [method, level, B]: seeds and chips resampled, paired
    higher, scale = t.higher_is_better, 100.0 if claim.measure == "gain" else 1.0
    out = []
    for spec, members in specs:
        idx = [methods.index(m) for m in members]
        base, which = _pick(point, idx, higher)
        effect = _level_effect(claim, point[0], base)[:, 0]
        best = int(np.nanargmax(effect))
        interval = pct = None
        if boot is not None:  # the strongest baseline is picked anew inside every replicate
            interval, pct = up_to_interval(effect, _level_effect(claim, boot[0], _pick(boot, idx, higher)[0]))
            interval = tuple(float(v) for v in np.clip(interval, *EFFECT_RANGE[claim.measure]))
        measured = float(effect[best])
        extra = note
        if len(members) > 1:
            extra += f"strongest at level {levels[best]:g}: {methods[int(which[best, 0])]}; "
        relative = None
        if claim.measure == "gain":
            with np.errstate(divide="ignore", invalid="ignore"):
                rel = 100.0 * (point[0, :, 0] - base[:, 0]) / base[:, 0]
            relative = float(np.nanmax(rel)) if np.isfinite(rel).any() else None
        out.append(
            ClaimRow(
                claim.id,
                task,
                name,
                spec,
                claim.paper_value,
                measured,
                claim.unit,
                float(levels[best]),
                interval,
                verdict(measured, interval, claim.paper_value),
                extra.rstrip("; "),
                headline=spec == claim.baseline,
                proposed_value=scale * float(point[0, best, 0]),
                baseline_value=scale * float(base[best, 0]),
                relative=relative,
                interval_percentile=pct,
                num_seeds=num_seeds,
                num_chips=num_chips,
            )
        )
    return out


def _ood_rows(claim: Claim, task: str, t: TaskResult) -> list[ClaimRow]:
    shift = t.ood.shifts[claim.shift]
    rates = {
        m: [r["detection_rate"] for r in kinds["healthy"]] for m, kinds in shift.methods.items() if "healthy" in kinds
    }
    shifted = [i for i, s in enumerate(shift.stages) if s != 0]
    if PROPOSED not in rates or not shifted:
        return []
    best = max(shifted, key=lambda i: rates[PROPOSED][i])
    measured = 100.0 * rates[PROPOSED][best]
    rivals = {m: 100.0 * max(r[i] for i in shifted) for m, r in rates.items() if m in BASELINES}  # the paper's
    rival = max(rivals, key=rivals.get) if rivals else None
    note = (
        f"the first training seed's healthy model, one value per stage: no interval; at the largest stage "
        f"({shift.stages[-1]:g}): "
        f"{100.0 * rates[PROPOSED][-1]:.2f} %"
    )
    if 0.0 in shift.stages:
        note += f"; false-alarm rate (stage 0): {100.0 * rates[PROPOSED][shift.stages.index(0.0)]:.2f} %"
    if rival is not None:
        note += f"; best baseline: {rival}"
    if measured >= claim.paper_value:
        word = "holds"
    elif rival is not None and measured > rivals[rival]:
        word = "holds in part"
    else:
        word = "does not hold"
    return [
        ClaimRow(
            claim.id,
            task,
            claim.shift,
            "strongest",
            claim.paper_value,
            measured,
            "%",
            float(shift.stages[best]),
            None,
            word,
            note,
            headline=True,
            proposed_value=measured,
            baseline_value=None if rival is None else rivals[rival],
            num_seeds=1,
        )
    ]


def _fault_free_rows(claim: Claim, task: str, t: TaskResult, exclude=frozenset()) -> list[ClaimRow]:
    present = {m: t.methods[m].fault_free for m in BASELINES if m in t.methods and m not in exclude}
    if PROPOSED not in t.methods or not present:
        return []
    higher = t.higher_is_better
    rival = (max if higher else min)(present, key=present.get)
    p, b = t.methods[PROPOSED].fault_free, present[rival]
    unit = "pp" if higher else "%"
    gap = 100.0 * (p - b) if higher else 100.0 * (1.0 - p / b)
    scale = 100.0 if higher else 1.0
    word = "holds" if gap >= -FAULT_FREE_TOLERANCE[unit] else "does not hold"
    seeds = len(t.methods[PROPOSED].fault_free_seeds or [0])
    what = "one value" if seeds == 1 else f"the mean of {seeds} training seeds"
    return [
        ClaimRow(
            claim.id,
            task,
            None,
            "strongest",
            None,
            gap,
            unit,
            None,
            None,
            word,
            f"healthy model: {what}, no interval; best baseline: {rival}; "
            f"criterion: gap >= -{FAULT_FREE_TOLERANCE[unit]:g} {unit}",
            headline=True,
            proposed_value=scale * p,
            baseline_value=scale * b,
            num_seeds=seeds,
        )
    ]


def _not_measured(claim: Claim, reading: str) -> ClaimRow:
    what = {
        "gain": "a sweep of kind {kinds}",
        "reduction": "a sweep of kind {kinds}",
        "detection": "an OOD study with the {shift} shift",
        "fault_free": "a fault-free metric",
    }[claim.measure]
    what = what.format(kinds=" / ".join(claim.kinds), shift=claim.shift)
    return ClaimRow(
        claim.id,
        None,
        None,
        None,
        claim.paper_value,
        None,
        claim.unit,
        reading=reading,
        note=f"not measured in this run: no task with metric {' / '.join(claim.metrics)}, {what}, "
        "the proposed method and its baseline",
    )


def _task_rows(claim: Claim, task: str, t: TaskResult, n_boot: int, seed: int) -> list[ClaimRow]:
    """The rows of one claim on one task, a forecast's measured only among methods that beat the naive forecasts."""
    bar = naive_bar(t) if claim.measure in ("reduction", "fault_free") else None
    exclude = frozenset(bar.flagged) if bar else frozenset()
    blocked = bar.blocking(t) if bar else None
    if claim.measure == "detection":
        return _ood_rows(claim, task, t) if t.ood is not None and claim.shift in t.ood.shifts else []
    sweeps = (
        [None]
        if claim.measure == "fault_free"
        else [
            name for name, info in t.sweeps.items() if info.kind in claim.kinds and name in t.methods[PROPOSED].sweeps
        ]
    )
    rows = []
    for name in sweeps:
        if blocked:
            rows.append(
                ClaimRow(
                    claim.id,
                    task,
                    name,
                    claim.baseline,
                    claim.paper_value,
                    None,
                    claim.unit,
                    note=blocked,
                    headline=True,
                )
            )
            continue
        if name is None:
            rows += _fault_free_rows(claim, task, t, exclude)
            kept_out = [m for m in BASELINES if m in exclude]
            for row in rows if kept_out else []:
                row.note += f"; kept out (they do not beat the naive forecasts): {', '.join(kept_out)}"
            continue
        rows += _sweep_rows(claim, task, t, name, n_boot, seed, exclude)
        rows += [
            ClaimRow(claim.id, task, name, m, claim.paper_value, None, claim.unit, note=bar.reason(m))
            for m in BASELINES
            if m in exclude and name in t.methods[m].sweeps
        ]
    for row in rows if bar else []:
        row.naive_rmse = bar.rmse
        row.note = f"best naive forecast: {bar.name} {bar.rmse:.4g}" + (f"; {row.note}" if row.note else "")
    return rows


def evaluate_claims(results: Results, *, n_boot: int = 2000, seed: int = 0) -> list[ClaimRow]:
    """Every claim of :data:`CLAIMS` measured on ``results``: rows in reading, claim, task, sweep order.

    Each reading of the baselines' dropout present in ``results`` (:func:`task_reading`, the
    default first) gets every claim, measured on that reading's tasks. Sweep claims (1-7) get a
    row per applicable task and sweep and per baseline: the claim's own (headline), each single
    baseline it names, and the strongest baseline at each level. The measured value is the best
    level's effect (the paper's "up to"); its 95 % interval comes from ``n_boot`` two-level
    resamples of the training seeds and the chips (:func:`two_level_weights`, seeded by
    ``seed``), see :func:`up_to_interval`. A forecast with naive RMSEs is measured only among
    the methods that beat them (:func:`naive_bar`). A claim with nothing to measure under a
    reading gets one "not measured" row.

    >>> from invnorm_jax.pipeline.results import Level, MethodResult, SweepInfo, TaskResult
    >>> def method(faulty):  # 4 chips, 0.9 at level 0 and ``faulty`` at level 0.1
    ...     levels = [Level(0.0, 0.9, 0.0, [0.9] * 4), Level(0.1, faulty, 0.0, [faulty] * 4)]
    ...     return MethodResult(0.9, 4, 1, {"bf": levels})
    >>> task = TaskResult("accuracy", True, {"bf": SweepInfo("bit_flip", "weights")},
    ...                   {"nn": method(0.5), "proposed": method(0.8)})
    >>> row = evaluate_claims(Results(tasks={"digits": task}))[0]
    >>> row.claim, row.baseline, round(row.measured, 2), row.best_level, row.verdict, row.reading
    (1, 'nn', 30.0, 0.1, 'holds in part', 'crossbar')
    """
    rows = []
    for reading in readings(results):
        tasks = {k: t for k, t in results.tasks.items() if task_reading(t) == reading}
        for claim in CLAIMS:
            found = [
                row
                for task, t in tasks.items()
                if t.metric in claim.metrics and PROPOSED in t.methods
                for row in _task_rows(claim, task, t, n_boot, seed)
            ]
            for row in found:
                row.reading = reading
            rows += found or [_not_measured(claim, reading)]
    return rows
