"""The tables docs/claims.md and the README quote from a study's run folder.

Run (after ``invnorm-jax study --out runs/study``)::

    python -m experiments.study_tables runs/study

prints Markdown: each claim's verdict under both readings of the baselines' dropout site (and
under the earlier pre-activation placement, when the study measured it), the CO2 forecasts
beside the naive ones, and the depth comparison (digits vs digits_deep).
"""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np

from invnorm_jax.pipeline import claims, results
from invnorm_jax.pipeline.claims.scope import naive_bar

LABELS = {"nn": "NN", "spindrop": "SpinDrop", "spatial_spindrop": "Spatial-SpinDrop", "proposed": "Proposed"}


def _rows(run: pathlib.Path):
    return claims.rows_from_json(json.loads((run / "claims.json").read_text()))


def _cell(row, verdict: str) -> str:
    if row is None or row.measured is None:
        return "not measured"
    ci = "" if row.interval is None else f" [{row.interval[0]:.1f}, {row.interval[1]:.1f}]"
    where = row.task if row.sweep is None else f"{row.task}, {row.sweep}"
    return f"{verdict}: {row.measured:.1f} {row.unit}{ci} ({where})"


def verdict_table(run: pathlib.Path, extra: dict[str, pathlib.Path]) -> str:
    """One row per claim, one column per reading (and per extra run's reading)."""
    columns = []
    for label, folder in {"": run, **extra}.items():
        rows = _rows(folder)
        for reading in claims.row_readings(rows):
            name = f"{reading}{' ' + label if label else ''}"
            columns.append(
                (
                    name,
                    {c.id: claims.deciding_row(rows, c.id, reading=reading) for c in claims.CLAIMS},
                    claims.claim_verdicts(rows, reading=reading),
                )
            )
    lines = ["| claim | paper | " + " | ".join(c[0] for c in columns) + " |", "|---|---|" + "---|" * len(columns)]
    for c in claims.CLAIMS:
        cells = []
        for _, deciding, verdicts in columns:
            row = deciding.get(c.id)
            verdict = verdicts.get(c.id, "not measured")
            cells.append(_cell(row, verdict) if row is not None and verdict != "not measured" else verdict)
        paper = "comparable" if c.paper_value is None else f"{c.paper_value:g} {c.unit}"
        lines.append(f"| {c.id} | {paper} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def co2_table(run: results.Results) -> str:
    """Fault-free RMSE per method (mean ± std over seeds) beside the naive forecasts."""
    lines = [
        "| task | " + " | ".join(LABELS.values()) + " | persistence | seasonal-naive | seasonal drift |",
        "|---|" + "---|" * 7,
    ]
    for name, t in run.tasks.items():
        if not t.naive:
            continue
        bar = naive_bar(t)
        cells = []
        for m in LABELS:
            e = t.methods.get(m)
            if e is None:
                cells.append("–")
                continue
            seeds = e.fault_free_seeds or [e.fault_free]
            flag = " (flagged)" if m in bar.flagged else ""
            cells.append(f"{np.mean(seeds):.4f} ± {np.std(seeds):.4f}{flag}")
        naive = [f"{t.naive[k]:.4f}" for k in ("persistence", "seasonal_naive", "seasonal_drift")]
        lines.append(f"| {name} | " + " | ".join(cells + naive) + " |")
    return "\n".join(lines)


def depth_table(rows) -> str:
    """Claims 1-4's headline effect on digits and digits_deep, per reading and baseline."""
    lines = ["| reading | claim | baseline | digits (4 binary convs) | digits_deep (12) |", "|---|---|---|---|---|"]
    for reading in claims.row_readings(rows):
        for cid in (1, 2, 3, 4):
            for base in ("nn", "dropout"):  # each claim's own baseline
                cells = []
                for task in ("digits", "digits_deep"):
                    found = [
                        r
                        for r in rows
                        if r.claim == cid
                        and r.baseline == base
                        and r.reading == reading
                        and r.task is not None
                        and r.task.split("@")[0] == task
                        and r.measured is not None
                    ]
                    best = max(found, key=lambda r: r.measured, default=None)
                    cells.append(
                        "–"
                        if best is None
                        else f"{best.measured:+.1f} pp [{best.interval[0]:+.1f}, "
                        f"{best.interval[1]:+.1f}] ({best.sweep} {best.best_level:g})"
                    )
                if any(c != "–" for c in cells):
                    lines.append(f"| {reading} | {cid} | {base} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    run = pathlib.Path((argv or sys.argv[1:])[0])
    extra = {f"({p.name})": p for p in sorted(run.glob("preactivation_*")) if (p / "claims.json").is_file()}
    rows = _rows(run)
    print("## Verdicts\n\n" + verdict_table(run, extra) + "\n")
    print("## CO2\n\n" + co2_table(results.load(run)) + "\n")
    print("## Depth\n\n" + depth_table(rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
