"""Beyond the paper: the five methods under conductance drift and under the paper's faults.

Reads a demo run trained with the fifth method and the drift sweeps of its checkpoints::

    M=--config.methods=nn,spindrop,spatial_spindrop,proposed,noisy_training
    invnorm-jax demo --out runs/study --no-ood $M
    for t in digits mnist1d co2; do
      invnorm-jax sweep --config ${t}_drift --workdir runs/study/$t --out runs/study-drift/$t $M
    done
    python experiments/drift_study.py runs/study runs/study-drift --out docs/drift_study

and writes ``tables.md`` (three tables, below), ``study.json`` and one drift plot per task into
``--out``. Every number is a mean over the 100 chips with a 95 % bootstrap interval of that
mean (2000 resamples of the chips, the same resamples for every method of a sweep):

1. **Drift**: each method's metric fault-free, after one day and after ten years, with and
   without global drift compensation, and the drop from fault-free to ten years.
2. **Every sweep** (the paper's faults and drift): each method's metric averaged over the
   sweep's faulty levels (the area under its robustness curve, level 0 excluded).
3. **The proposed method vs noisy training**: :func:`invnorm_jax.pipeline.claims.noisy.evaluate_noisy_training`'s
   rows (the "up to" advantage of each over the other, simultaneous 95 % band, verdict).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib

import numpy as np

from invnorm_jax.metrics import TASK_METRICS
from invnorm_jax.pipeline import report
from invnorm_jax.pipeline import results as results_lib
from invnorm_jax.pipeline.claims.noisy import comparison_json, comparison_markdown, evaluate_noisy_training

DAY, DECADE = 86400.0, 3.15e8
N_BOOT = 2000


def merged(run: pathlib.Path, drift_root: pathlib.Path) -> results_lib.Results:
    """The demo run's results with each task's drift sweeps added beside its other sweeps."""
    res = results_lib.load(run / "results.json")
    for task, t in res.tasks.items():
        path = drift_root / task / "results.json"
        if not path.is_file():
            continue
        d = results_lib.load(path).tasks[f"{task}_drift"]
        t.sweeps.update(d.sweeps)
        for method, m in d.methods.items():
            if method in t.methods:
                t.methods[method].sweeps.update(m.sweeps)
    return res


def _ci(values: np.ndarray, weights: np.ndarray) -> tuple[float, float, float]:
    """Mean of per-chip ``values`` and the 95 % bootstrap interval (``weights``: [boot, chips] resample counts)."""
    boot = weights @ values / values.size
    lo, hi = np.quantile(boot, [0.025, 0.975])
    return float(values.mean()), float(lo), float(hi)


def _fmt(stat, scale: float) -> str:
    mean, lo, hi = (scale * v for v in stat)
    digits = 2 if scale != 1 else 4
    return f"{mean:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def _weights(num_chips: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack(
        [np.bincount(rng.integers(0, num_chips, num_chips), minlength=num_chips) for _ in range(N_BOOT)]
    ).astype(np.float64)


def _chips(m, sweep: str, level: float) -> np.ndarray | None:
    rows = [r for r in m.sweeps.get(sweep, []) if np.isclose(r.level, level)]
    return np.asarray(rows[0].chips, np.float64) if rows and rows[0].chips else None


def drift_table(res) -> tuple[str, list[dict]]:
    lines = ["| task | method | compensation | fault-free | 1 day | 10 years | drop at 10 years |", "|---" * 7 + "|"]
    out = []
    for task, t in res.tasks.items():
        scale = TASK_METRICS[t.metric].scale
        for sweep in [s for s, info in t.sweeps.items() if info.kind == "drift"]:
            comp = "yes" if (t.sweeps[sweep].drift or {}).get("compensate") else "no"
            for method, m in t.methods.items():
                clean, day, decade = (_chips(m, sweep, lv) for lv in (0.0, DAY, DECADE))
                if clean is None or decade is None:
                    continue
                w = _weights(clean.size)
                stats = [_ci(v, w) for v in (clean, day, decade, decade - clean)]
                lines.append(
                    f"| {task} | {report.METHOD_LABELS.get(method, method)} | {comp} | "
                    + " | ".join(_fmt(s, scale) for s in stats)
                    + " |"
                )
                out.append(
                    dict(
                        task=task,
                        sweep=sweep,
                        method=method,
                        compensate=comp == "yes",
                        fault_free=stats[0],
                        day=stats[1],
                        decade=stats[2],
                        drop=stats[3],
                    )
                )
    return "\n".join(lines), out


def sweep_table(res) -> tuple[str, list[dict]]:
    """Each method's metric averaged over each sweep's faulty levels, per chip, then over chips."""
    out, lines = [], []
    for task, t in res.tasks.items():
        scale = TASK_METRICS[t.metric].scale
        methods = list(t.methods)
        lines += [
            f"\n**{task}** ({t.metric}{', lower is better' if not TASK_METRICS[t.metric].higher_is_better else ''})\n",
            "| sweep | " + " | ".join(report.METHOD_LABELS.get(m, m) for m in methods) + " |",
            "|---" * (len(methods) + 1) + "|",
        ]
        for sweep in t.sweeps:
            cells = []
            for method in methods:
                rows = [r for r in t.methods[method].sweeps.get(sweep, []) if r.level > 0 and r.chips]
                if not rows:
                    cells.append("–")
                    continue
                per_chip = np.mean([r.chips for r in rows], axis=0)
                stat = _ci(per_chip, _weights(per_chip.size))
                cells.append(_fmt(stat, scale))
                out.append(dict(task=task, sweep=sweep, method=method, average=stat))
            lines.append(f"| {sweep} | " + " | ".join(cells) + " |")
    return "\n".join(lines), out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=pathlib.Path, help="the demo run folder (results.json)")
    p.add_argument("drift", type=pathlib.Path, help="folder of <task>/results.json drift sweeps")
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("docs/drift_study"))
    args = p.parse_args(argv)
    res = merged(args.run, args.drift)
    args.out.mkdir(parents=True, exist_ok=True)
    drift_md, drift_rows = drift_table(res)
    sweep_md, sweep_rows = sweep_table(res)
    comparison = evaluate_noisy_training(res)
    for task, t in res.tasks.items():
        drift_only = dataclasses.replace(t, sweeps={s: i for s, i in t.sweeps.items() if i.kind == "drift"})
        if drift_only.sweeps:
            report.plot_task(task, drift_only, args.out / f"{task}_drift.png")
    text = (
        "## Drift: the metric over time (mean over chips [95 % interval])\n\n"
        + drift_md
        + "\n\n## Every sweep: the metric averaged over its faulty levels\n"
        + sweep_md
        + "\n\n"
        + comparison_markdown(comparison)
        + "\n"
    )
    (args.out / "tables.md").write_text(text)
    (args.out / "study.json").write_text(
        json.dumps(dict(drift=drift_rows, sweeps=sweep_rows, comparison=comparison_json(comparison)), indent=1)
    )
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
