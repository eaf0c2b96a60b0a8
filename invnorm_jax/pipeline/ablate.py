"""Ablations in one command: each a set of config overrides, run on the same chips as the defaults.

In detail: docs/pipeline.md (`invnorm_jax.pipeline.ablate`).
"""

from __future__ import annotations

import dataclasses
import pathlib
import time

import numpy as np

from invnorm_jax.pipeline import config as config_lib
from invnorm_jax.pipeline.experiment import in_workers, method_workers, run_task
from invnorm_jax.pipeline.report import write_ablation
from invnorm_jax.pipeline.results import TaskResult

#: The dropout rates every method with one is trained at, per config variant; the config's own
#: rate (0.3, the paper's) is the default they are compared with. The small variants keep the
#: two rates either side of it, so that a smoke or quick run trains few models.
RATES = {"full": (0.1, 0.2, 0.3, 0.5), "quick": (0.1, 0.5), "smoke": (0.1,)}
#: The methods that have a dropout rate (``nn`` has none).
RATE_METHODS = ("spindrop", "spatial_spindrop", "proposed")


@dataclasses.dataclass(frozen=True)
class Ablation:
    """One row: ``overrides`` applied to the task config, compared with each of ``methods`` at its default.

    ``training``: the overrides change the trained model (its own workdir); otherwise the
    default checkpoints are re-evaluated. ``sweeps``: the sweeps it is measured on (None: all).
    ``family`` and ``value``: the setting a row varies and its value there (``"rate"``, 0.1), so
    that a report can lay out the rows of one family side by side; None for a one-off row.

    >>> Ablation("rate 0.1", "dropout rate 0.1", ("proposed",), ("rate=0.1",), True, family="rate", value=0.1).family
    'rate'
    """

    name: str
    what: str
    methods: tuple[str, ...]
    overrides: tuple[str, ...]
    training: bool
    sweeps: tuple[str, ...] | None = None
    family: str | None = None
    value: float | None = None


def _proposed_rows(config) -> list[Ablation]:
    """Rows of the proposed method's own settings (its layer options and its MC sampling)."""
    rows = []
    if config.model.name == "resnet":
        rows += [
            Ablation(
                "mode=element",
                "affine dropout: one draw per element instead of per vector",
                ("proposed",),
                ("model.kwargs.mode=element",),
                True,
            ),
            Ablation(
                "init std 0.55",
                "gamma/beta init std 0.55 (the paper's 'variance 0.3' read literally)",
                ("proposed",),
                ("model.kwargs.init_std=0.55",),
                True,
            ),
        ]
    if config.model.name == "lstm":
        rows.append(
            Ablation(
                "norm on gates",
                "the normalization site on each gate's weighted sum (LayerNorm-LSTM "
                "style) instead of the hidden output",
                ("proposed",),
                ("model.kwargs.norm_placement=gates",),
                True,
            )
        )
    rows.append(
        Ablation(
            "T=1 (deterministic)",
            "no MC sampling at test time: affine dropout off",
            ("proposed",),
            ("eval.deterministic=True",),
            False,
        )
    )
    rows += [
        Ablation(
            f"T={t}",
            f"{t} MC samples instead of {config.eval.num_samples}",
            ("proposed",),
            (f"eval.num_samples={t}",),
            False,
        )
        for t in (5, 10, 20)
        if t != config.eval.num_samples
    ]
    return [r for r in rows if "proposed" in config.methods]


def _symmetric_rows(config) -> list[Ablation]:
    """Rows every method gets alike: the dropout rate, and pre-activation noise redrawn per input."""
    with_rate = tuple(m for m in RATE_METHODS if m in config.methods)
    rows = [
        Ablation(
            f"rate {r:g}",
            f"dropout rate {r:g} instead of {config.rate:g}, for every method that has one",
            with_rate,
            (f"rate={r}",),
            True,
            family="rate",
            value=r,
        )
        for r in RATES[config.variant]
        if r != config.rate and with_rate
    ]
    for name, sweep in config.sweeps.items():
        if sweep.site == "preactivation" and not sweep.per_inference:
            rows.append(
                Ablation(
                    f"per-inference {name}",
                    f"{name} pre-activation noise redrawn per input (read noise) instead of static per chip",
                    tuple(config.methods),
                    (f"sweeps.{name}.per_inference=True",),
                    False,
                    (name,),
                )
            )
    return rows


def ablations_for(config) -> list[Ablation]:
    """The ablations that apply to ``config`` (its model, methods, sweeps and variant decide).

    >>> rows = ablations_for(config_lib.load_config("digits:smoke"))
    >>> [(a.name, a.methods) for a in rows if a.family == "rate"]
    [('rate 0.1', ('spindrop', 'spatial_spindrop', 'proposed'))]
    >>> [a.methods for a in rows if a.name == "per-inference additive"]
    [('nn', 'spindrop', 'spatial_spindrop', 'proposed')]
    """
    return _proposed_rows(config) + _symmetric_rows(config)


def _per_chip_average(task: TaskResult, method: str, sweep: str) -> np.ndarray:
    """Each chip's metric averaged over the sweep's faulty levels (level > 0) and the training seeds."""
    rows = [r for r in task.methods[method].sweeps[sweep] if r.level > 0]
    return np.mean([r.matrix().mean(axis=0) for r in rows], axis=0)


def compare(default: TaskResult, variant: TaskResult, method: str, sweep: str) -> dict:
    """The change of ``method``'s sweep-averaged metric from ``default`` to ``variant``, per chip paired."""
    a, b = _per_chip_average(default, method, sweep), _per_chip_average(variant, method, sweep)
    d = b - a
    half = 1.96 * d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
    return {
        "default": float(a.mean()),
        "variant": float(b.mean()),
        "change": float(d.mean()),
        "low": float(d.mean() - half),
        "high": float(d.mean() + half),
        "num_chips": int(len(d)),
    }


def _table(rows: list[Ablation], jobs: list, tasks: list, default: TaskResult) -> list[dict]:
    """One entry per (ablation, sweep, method): the methods of one ablation and sweep side by side."""
    by_job = {(a.name, m): task for (a, m, _), task in zip(jobs, tasks)}
    table = []
    for ablation in rows:
        for sweep in by_job[ablation.name, ablation.methods[0]].sweeps:
            for method in ablation.methods:
                table.append(
                    {
                        "ablation": ablation.name,
                        "what": ablation.what,
                        "method": method,
                        "sweep": sweep,
                        "family": ablation.family,
                        "value": ablation.value,
                        **compare(default, by_job[ablation.name, method], method, sweep),
                    }
                )
    return table


def run_ablations(
    spec: str, out, *, variant: str | None = None, overrides=(), progress: bool = True, seeds: int = 1
) -> dict:
    """Run every ablation of config ``spec``; writes ``ablation.json``, ``ablation.md`` and a plot into ``out``.

    ``seeds``: training seeds of every row and of the defaults (the same seeds for all); a chip's
    value is then its mean over the seeds, and the interval is still over chips.

    Each (ablation, method) pair is one job; the jobs that train run first, side by side
    (:func:`~invnorm_jax.pipeline.experiment.method_workers`). Rerunning with the same ``out`` reuses
    every trained model and finished sweep level.
    """
    out = pathlib.Path(out)
    start = time.time()
    base = config_lib.load_config(spec, variant, overrides)
    rows = ablations_for(base)
    configs = [config_lib.load_config(spec, variant, (*overrides, *a.overrides)) for a in rows]  # all checked first
    default = run_task(base, out / "default", ood=False, progress=progress, seeds=seeds)
    jobs = [(a, m, c) for a, c in zip(rows, configs) for m in a.methods]
    jobs.sort(key=lambda job: not job[0].training)  # the long jobs first, so that no worker idles at the end

    def run_job(job):
        ablation, method, config = job
        workdir = out / ablation.name.replace(" ", "_").replace("=", "-") if ablation.training else out / "default"
        return run_task(
            config,
            workdir,
            methods=[method],
            sweeps=ablation.sweeps or True,
            ood=False,
            progress=progress,
            workers=1,
            seeds=seeds,
        )

    tasks = in_workers(run_job, jobs, method_workers(len(jobs)))
    result = {
        "task": base.name,
        "metric": base.metric,
        "variant": base.variant,
        "seconds": round(time.time() - start, 1),
        "defaults": {"rate": float(base.rate)},
        "seeds": seeds,
        "rows": _table(rows, jobs, tasks, default),
    }
    write_ablation(result, out)
    return result
