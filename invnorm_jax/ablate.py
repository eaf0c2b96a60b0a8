"""Ablations of the proposed method in one command: each a set of config overrides, 100 chips each.

``invnorm-jax ablate --task digits`` trains the task's default methods once, then one model per
ablation that changes training (affine-dropout mode, gamma/beta init std, the baselines'
dropout rate) and re-evaluates the default models where only evaluation changes (T, per-inference
noise). Every row is compared with its default on the same chips (chip ``i`` is the same fault
realization in both): the change of the mean metric over each sweep's faulty levels, with a
95 % interval over chips (paired, normal approximation: ``d ± 1.96 s_d / sqrt(n)``).
"""

from __future__ import annotations

import dataclasses
import pathlib
import time

import numpy as np

from invnorm_jax import config as config_lib
from invnorm_jax.experiment import in_workers, method_workers, run_task
from invnorm_jax.report import write_ablation
from invnorm_jax.results import TaskResult


@dataclasses.dataclass(frozen=True)
class Ablation:
    """One row: ``overrides`` applied to the task config, compared with ``method`` at its default.

    ``training``: the overrides change the trained model (its own workdir); otherwise the
    default checkpoints are re-evaluated. ``sweeps``: the sweeps it is measured on (None: all).
    """

    name: str
    what: str
    method: str
    overrides: tuple[str, ...]
    training: bool
    sweeps: tuple[str, ...] | None = None


def ablations_for(config) -> list[Ablation]:
    """The ablations that apply to ``config`` (its model and sweeps decide)."""
    rows = []
    if config.model.name == "resnet":
        rows += [
            Ablation("mode=element", "affine dropout: one draw per element instead of per vector", "proposed",
                     ("model.kwargs.mode=element",), True),
            Ablation("init std 0.55", "gamma/beta init std 0.55 (the paper's 'variance 0.3' read literally)",
                     "proposed", ("model.kwargs.init_std=0.55",), True),
        ]
    if config.model.name == "lstm":
        rows.append(Ablation("norm on gates", "the normalization site on each gate's weighted sum (LayerNorm-LSTM "
                             "style) instead of the hidden output", "proposed",
                             ("model.kwargs.norm_placement=gates",), True))
    rows.append(Ablation("T=1 (deterministic)", "no MC sampling at test time: affine dropout off", "proposed",
                         ("eval.deterministic=True",), False))
    rows += [Ablation(f"T={t}", f"{t} MC samples instead of {config.eval.num_samples}", "proposed",
                      (f"eval.num_samples={t}",), False) for t in (5, 10, 20) if t != config.eval.num_samples]
    other_rate = 0.1 if config.rate != 0.1 else 0.3
    rows += [Ablation(f"{m} rate {other_rate:g}", f"the baseline's dropout rate {other_rate:g} instead of "
                      f"{config.rate:g}", m, (f"rate={other_rate}",), True)
             for m in ("spindrop", "spatial_spindrop") if m in config.methods]
    for name, sweep in config.sweeps.items():
        if sweep.site == "preactivation":
            rows.append(Ablation(f"per-inference {name}", f"{name} pre-activation noise redrawn per input (read "
                                 "noise) instead of static per chip", "proposed",
                                 (f"sweeps.{name}.per_inference=True",), False, (name,)))
    return rows


def _per_chip_average(task: TaskResult, method: str, sweep: str) -> np.ndarray:
    """Each chip's metric averaged over the sweep's faulty levels (level > 0)."""
    rows = [r for r in task.methods[method].sweeps[sweep] if r.level > 0]
    return np.mean([r.chips for r in rows], axis=0)


def compare(default: TaskResult, variant: TaskResult, method: str, sweep: str) -> dict:
    """The change of ``method``'s sweep-averaged metric from ``default`` to ``variant``, per chip paired."""
    a, b = _per_chip_average(default, method, sweep), _per_chip_average(variant, method, sweep)
    d = b - a
    half = 1.96 * d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
    return {"default": float(a.mean()), "variant": float(b.mean()), "change": float(d.mean()),
            "low": float(d.mean() - half), "high": float(d.mean() + half), "num_chips": int(len(d))}


def run_ablations(spec: str, out, *, variant: str | None = None, overrides=(), progress: bool = True) -> dict:
    """Run every ablation of config ``spec``; writes ``ablation.json``, ``ablation.md`` and a plot into ``out``."""
    out = pathlib.Path(out)
    start = time.time()
    base = config_lib.load_config(spec, variant, overrides)
    rows = ablations_for(base)
    configs = [config_lib.load_config(spec, variant, (*overrides, *a.overrides)) for a in rows]  # all checked first
    default = run_task(base, out / "default", ood=False, progress=progress)

    def run_row(row):  # rows side by side (method_workers), each of one method
        ablation, config = row
        workdir = out / ablation.name.replace(" ", "_").replace("=", "-") if ablation.training else out / "default"
        return run_task(config, workdir, methods=[ablation.method], sweeps=ablation.sweeps or True, ood=False,
                        progress=progress, workers=1)

    tasks = in_workers(run_row, list(zip(rows, configs)), method_workers(len(rows)))
    table = []
    for ablation, task in zip(rows, tasks):
        for sweep in task.sweeps:
            table.append({"ablation": ablation.name, "what": ablation.what, "method": ablation.method,
                          "sweep": sweep, **compare(default, task, ablation.method, sweep)})
    result = {"task": base.name, "metric": base.metric, "variant": base.variant,
              "seconds": round(time.time() - start, 1), "rows": table}
    write_ablation(result, out)
    return result
