"""Every file of a run: ``results.json``, ``config.json``, ``results.csv``, ``report.md``, claims and plots.

:func:`write_report` is the one place that writes a run's files; everything it renders comes
from a :class:`invnorm_jax.pipeline.results.Results` (the schema is in :mod:`invnorm_jax.pipeline.results`).
Plots: Fig.-5/6 style robustness per task (metric against fault level, one line per method,
a ±1 std band over chips) and Fig.-7 style OOD panels.
"""

from __future__ import annotations

import csv
import json
import pathlib

import matplotlib
import numpy as np
from matplotlib.figure import Figure  # no pyplot: the backend (a notebook's inline one) is left alone

from invnorm_jax.metrics import TASK_METRICS  # noqa: E402
from invnorm_jax.ood import SHIFTS  # noqa: E402
from invnorm_jax.pipeline import claims  # noqa: E402
from invnorm_jax.pipeline import results as results_lib  # noqa: E402
from invnorm_jax.pipeline.claims.scope import NAIVE_MARGIN, naive_bar  # noqa: E402
from invnorm_jax.pipeline.results import OODResult, Results, TaskResult  # noqa: E402

METHOD_LABELS = {
    "nn": "NN",
    "spindrop": "SpinDrop",
    "spatial_spindrop": "Spatial-SpinDrop",
    "proposed": "Proposed",
    "noisy_training": "Noisy training",
}
METHOD_COLORS = {
    "nn": "#7f7f7f",
    "spindrop": "#1f77b4",
    "spatial_spindrop": "#2ca02c",
    "proposed": "#d62728",
    "noisy_training": "#ff7f0e",
}
#: The x-axis of a sweep, by fault kind (docs/faults.md gives the units).
LEVEL_LABELS = {
    "bit_flip": "bit-flip rate",
    "stuck_at": "stuck-cell fraction",
    "additive": "sigma (x largest |w|)",
    "multiplicative": "sigma (relative)",
    "uniform": "amplitude a (x largest |w|)",
    "drift": "time since programming (s)",
}


def _label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


def _colors(methods) -> dict[str, str | None]:
    """Each method's colour: its own, else one of matplotlib's cycle that no method owns."""
    cycle = [matplotlib.colors.to_hex(c) for c in matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]]
    spare = iter(c for c in cycle if c not in METHOD_COLORS.values())
    return {m: METHOD_COLORS.get(m) or next(spare, None) for m in methods}


def _fmt(value: float, metric: str) -> str:
    m = TASK_METRICS[metric]
    return f"{m.scale * value:.2f}" if m.scale != 1 else f"{value:.4f}"


def _unit(metric: str) -> str:
    return TASK_METRICS[metric].unit


def write_csv(results: Results, path) -> None:
    """One row per task, method, fault and level (level 'none' for the fault-free metric)."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["task", "metric", "method", "fault", "site", "level", "mean", "std"])
        for task, t in results.tasks.items():
            for method, m in t.methods.items():
                writer.writerow([task, t.metric, method, "none", "", "", m.fault_free, 0.0])
                for name, rows in m.sweeps.items():
                    for r in rows:
                        writer.writerow([task, t.metric, method, name, t.sweeps[name].site, r.level, r.mean, r.std])


def _methods(results: Results) -> list[str]:
    seen = []
    for t in results.tasks.values():
        seen += [m for m in t.methods if m not in seen]
    return seen


def table1(results: Results) -> str:
    """Table-I style: fault-free metric per task (rows) and method (columns)."""
    methods = _methods(results)
    lines = ["| task (metric) | " + " | ".join(_label(m) for m in methods) + " |", "|---|" + "---|" * len(methods)]
    for task, t in results.tasks.items():
        cells = [_fault_free(t.methods[m], t.metric) if m in t.methods else "–" for m in methods]
        lines.append(f"| {task} ({_unit(t.metric)}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fault_free(m, metric: str) -> str:
    """The fault-free metric; with several training seeds, their mean ± std."""
    if not m.fault_free_seeds or len(m.fault_free_seeds) < 2:
        return _fmt(m.fault_free, metric)
    return f"{_fmt(m.fault_free, metric)} ± {_fmt(float(np.std(m.fault_free_seeds)), metric)}"


def naive_lines(results: Results) -> list[str]:
    """For each forecast task: its trivial forecasts' RMSE on the same test windows, and which
    methods do not beat the best of them by the claims' margin (they are kept out of the claims)."""
    out = []
    for task, t in results.tasks.items():
        bar = naive_bar(t)
        if bar is None:
            continue
        text = ", ".join(f"{k.replace('_', '-')} {v:.4f}" for k, v in t.naive.items())
        limit = f"{NAIVE_MARGIN:g} x the best ({NAIVE_MARGIN * bar.rmse:.4f})"
        slow = [_label(m) for m in t.methods if m in bar.flagged]
        verdict = (
            f"**{', '.join(slow)} do{'es' if len(slow) == 1 else ''} not beat {limit}**: kept out of the claims"
            if slow
            else f"every method beats {limit}"
        )
        out.append(f"{task}: naive forecasts on the same test windows (RMSE): {text}; {verdict}.")
    return out


def robustness_table(t: TaskResult, name: str) -> str:
    """Rows: fault levels; columns: methods; cells: mean ± std over chips."""
    methods = list(t.methods)
    levels = [r.level for r in t.methods[methods[0]].sweeps[name]]
    lines = ["| level | " + " | ".join(_label(m) for m in methods) + " |", "|---|" + "---|" * len(methods)]
    for i, level in enumerate(levels):
        cells = [
            f"{_fmt(r.mean, t.metric)} ± {_fmt(r.std, t.metric)}"
            for r in (t.methods[m].sweeps[name][i] for m in methods)
        ]
        lines.append(f"| {level:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdicts(results: Results) -> list[str]:
    """Plain sentences: where the proposed method is or is not ahead (mean over each sweep)."""
    out = []
    for task, t in results.tasks.items():
        if "proposed" not in t.methods or len(t.methods) < 2:
            continue
        bar = naive_bar(t)
        blocked = None if bar is None else bar.blocking(t)
        if blocked:
            out.append(f"{task}: no verdict, {blocked}.")
            continue
        sign = 1 if t.higher_is_better else -1
        for name in t.sweeps:
            avg = {m: sum(r.mean for r in v.sweeps[name]) / len(v.sweeps[name]) for m, v in t.methods.items()}
            # A forecaster that does not beat the naive forecasts is no rival (it is out of the claims too).
            others = {m: a for m, a in avg.items() if m != "proposed" and (bar is None or m not in bar.flagged)}
            rival = max(others, key=lambda m: sign * others[m])
            word = "ahead of" if sign * avg["proposed"] >= sign * others[rival] else "NOT ahead of"
            out.append(
                f"{task}, {name}: the proposed method is {word} the best baseline ({_label(rival)}), "
                f"averaged over the sweep's levels: {_fmt(avg['proposed'], t.metric)} vs "
                f"{_fmt(others[rival], t.metric)}."
            )
    return out


def plot_task(task: str, t: TaskResult, path) -> Figure:
    """Fig.-5/6 style: metric against fault level, a line per method, a ±1 std band.

    Written to ``path``; the figure is returned too (a notebook cell shows it).
    """
    names = list(t.sweeps)
    fig = Figure(figsize=(4.2 * len(names), 3.4))
    axes = fig.subplots(1, len(names), squeeze=False)
    scale, colors = TASK_METRICS[t.metric].scale, _colors(t.methods)
    for ax, name in zip(axes[0], names):
        for method, m in t.methods.items():
            rows = m.sweeps[name]
            x = [r.level for r in rows]
            mean, std = [scale * r.mean for r in rows], [scale * r.std for r in rows]
            (line,) = ax.plot(x, mean, "o-", ms=3, color=colors[method], label=_label(method))
            color = line.get_color()  # the band matches its line
            ax.fill_between(
                x, [a - b for a, b in zip(mean, std)], [a + b for a, b in zip(mean, std)], color=color, alpha=0.18, lw=0
            )
        if t.naive:  # a forecast: the best trivial forecast as a floor every model must beat
            best = min(t.naive, key=t.naive.get)
            ax.axhline(scale * t.naive[best], ls="--", lw=1, color="0.4", label=f"{best.replace('_', '-')} (naive)")
        sweep = t.sweeps[name]
        ax.set_title(f"{task}: {name.replace('_', ' ')} ({sweep.site})", fontsize=10)
        ax.set_xlabel(
            "sigma (x normalized activation)"
            if sweep.site == "preactivation" and sweep.kind != "uniform"
            else LEVEL_LABELS.get(sweep.kind, "level")
        )
        ax.set_ylabel(_unit(t.metric))
        if sweep.kind == "drift":  # seconds from 0 to ten years
            ax.set_xscale("symlog", linthresh=60.0)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return fig


def _deterministic(results: Results) -> str:
    """Which methods run one deterministic pass, as the header says it."""
    from invnorm_jax.nn import DETERMINISTIC_METHODS

    names = [_label(m) for m in _methods(results) if m in DETERMINISTIC_METHODS] or ["NN"]
    return f"{' and '.join(names)} {'is' if len(names) == 1 else 'are'} deterministic: 1 sample"


def _sizes(results: Results) -> str:
    return ", ".join(
        f"{task}: {max(m.num_chips for m in t.methods.values())} chips x "
        f"{max(m.num_samples for m in t.methods.values())} MC samples"
        + (f" x {len(t.seeds)} training seeds" if len(t.seeds) > 1 else "")
        for task, t in results.tasks.items()
        if t.methods
    )


def markdown(results: Results, out) -> str:
    """The run's Markdown report; writes the plots it shows into ``out``."""
    s = results.settings
    wall = f", wall time {s['wall_seconds'] / 60:.1f} min" if "wall_seconds" in s else ""
    lines = [
        "# invnorm-jax results",
        "",
        f"{_sizes(results)} ({_deterministic(results)}); variant `{s.get('variant', 'full')}`{wall}.",
        "",
    ]
    if any(t.methods for t in results.tasks.values()):
        seeds = max(len(t.seeds) for t in results.tasks.values())
        lines += ["## Fault-free (Table I style)", "", table1(results), ""]
        lines += [f"Mean ± std over {seeds} training seeds.", ""] if seeds > 1 else []
        naive = naive_lines(results)
        lines += [f"* {line}" for line in naive] + ([""] if naive else [])
    for task, t in results.tasks.items():
        if t.sweeps and t.methods:
            plot = f"{task}_robustness.png"
            plot_task(task, t, out / plot)
            lines += [f"## {task}", "", f"![{task}]({plot})", ""]
            for name, sweep in t.sweeps.items():
                lines += [
                    f"### {name} at {sweep.site} ({_unit(t.metric)}, mean ± std over chips)",
                    "",
                    robustness_table(t, name),
                    "",
                ]
    found = verdicts(results)
    if found:
        lines += ["## Verdict", ""] + [f"* {v}" for v in found] + [""]
    for task, t in results.tasks.items():
        if t.ood is not None:
            plot = f"{task}_ood.png"
            plot_ood(task, t.ood, out / plot)
            lines.append(ood_markdown(task, t.ood, plot))
    return "\n".join(lines)


def write_report(results: Results, out_dir, *, name: str = "results.json") -> pathlib.Path:
    """Write every file of a run into ``out_dir``; returns the Markdown report's path.

    ``name`` is the results file (``results.json``; ``evaluate.json`` for fault-free-only runs).
    """
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results_lib.save(results, out / name)
    (out / "config.json").write_text(json.dumps({task: t.config for task, t in results.tasks.items()}, indent=1))
    write_csv(results, out / name.replace(".json", ".csv"))
    text = markdown(results, out)
    if any(m.sweeps for t in results.tasks.values() for m in t.methods.values()) or any(
        t.ood is not None for t in results.tasks.values()
    ):
        claims_md, _ = claims.write_claims(results, out)
        text += "\n" + claims_md.read_text()
    path = out / ("report.md" if name == "results.json" else name.replace(".json", ".md"))
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------ ablations


def write_ablation(result: dict, out) -> None:
    """``ablation.json``, ``ablation.md`` and ``ablation.png`` of :func:`invnorm_jax.pipeline.ablate.run_ablations`."""
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ablation.json").write_text(json.dumps(result, indent=1))
    (out / "ablation.md").write_text(ablation_markdown(result))
    plot_ablation(result, out / "ablation.png")


def ablation_markdown(result: dict) -> str:
    """Rows: ablations (each method's row of one ablation and sweep side by side); cells: the default's
    and the variant's sweep-averaged metric, change and 95 % CI."""
    m = TASK_METRICS[result["metric"]]
    f = (lambda v: f"{m.scale * v:.2f}") if m.scale != 1 else (lambda v: f"{v:.4f}")
    better = "higher" if m.higher_is_better else "lower"
    lines = [
        f"## Ablations: {result['task']} ({m.unit}, mean over each sweep's faulty levels; {better} is better)",
        "",
        "| ablation | method | sweep | default | ablated | change [95 % CI over chips] |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['ablation']} | {r['method']} | {r['sweep']} | {f(r['default'])} | {f(r['variant'])} | "
            f"{f(r['change'])} [{f(r['low'])}, {f(r['high'])}] |"
        )
    lines += [
        "",
        "Each row changes one thing against the default config (the method's own default model and "
        f"evaluation), on the same {result['rows'][0]['num_chips'] if result['rows'] else 0} chips. "
        f"Wall time {result['seconds'] / 60:.1f} min.",
        "",
    ]
    return "\n".join(lines)


def plot_ablation(result: dict, path) -> Figure:
    """The change of every ablation row with its interval, one panel per sweep, a colour per method."""
    m = TASK_METRICS[result["metric"]]
    sweeps = sorted({r["sweep"] for r in result["rows"]})
    colors = _colors(dict.fromkeys(r["method"] for r in result["rows"]))
    most = max([sum(r["sweep"] == s for r in result["rows"]) for s in sweeps] or [1])
    fig = Figure(figsize=(5.6 * max(len(sweeps), 1), 1.2 + 0.22 * most))
    axes = fig.subplots(1, max(len(sweeps), 1), squeeze=False)
    for ax, sweep in zip(axes[0], sweeps):
        rows = [r for r in result["rows"] if r["sweep"] == sweep][::-1]  # first row at the top
        for y, r in enumerate(rows):
            lo, hi = m.scale * (r["change"] - r["low"]), m.scale * (r["high"] - r["change"])
            ax.errorbar(m.scale * r["change"], y, xerr=[[lo], [hi]], fmt="o", color=colors[r["method"]], capsize=3)
        ax.axvline(0, color="k", lw=0.8)
        ax.set_yticks(range(len(rows)), [f"{r['ablation']} ({_label(r['method'])})" for r in rows], fontsize=8)
        ax.set_xlabel(f"change of {m.unit} vs default")
        ax.set_title(f"{result['task']}: {sweep}", fontsize=10)
        ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return fig


# ------------------------------------------------------------------------------ OOD


def _stage(shift: str, stage: float) -> str:
    return f"{stage:g}{SHIFTS[shift].unit if shift in SHIFTS else ''}"


def _threshold_text(o: OODResult) -> str:
    if o.threshold == "quantile":
        return f"the {o.q:g}-quantile of the per-input NLL on the unshifted test set"
    return "the mean NLL on the unshifted test set (as in the paper)"


def _stage_table(o: OODResult, shift: str, kind: str) -> str:
    """Rows: stages; columns: methods; cells: accuracy % / NLL / detection rate %."""
    entry = o.shifts[shift]
    methods = [m for m in entry.methods if kind in entry.methods[m]]
    lines = ["| stage | " + " | ".join(_label(m) for m in methods) + " |", "|---|" + "---|" * len(methods)]
    for i, stage in enumerate(entry.stages):
        cells = []
        for m in methods:
            r = entry.methods[m][kind][i]
            cells.append(f"{100 * r['accuracy']:.1f} / {r['nll']:.3f} / {100 * r['detection_rate']:.1f}")
        lines.append(f"| {_stage(shift, stage)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _pm(row: dict, key: str, scale: float = 1.0, digits: int = 2) -> str:
    text = f"{scale * row[key]:.{digits}f}"
    return text + (f" ± {scale * row[key + '_std']:.{digits}f}" if key + "_std" in row else "")


def _largest_stage_table(o: OODResult) -> str:
    """Per shift and method: detection rate and AUROCs at the largest stage, healthy and faulty."""
    faulty = o.fault is not None
    head = ["shift (largest stage)", "method", "detection % healthy"] + (["detection % faulty"] if faulty else [])
    head += ["AUROC NLL healthy"] + (["AUROC NLL faulty"] if faulty else []) + ["AUROC entropy healthy"]
    head += ["AUROC entropy faulty"] if faulty else []
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---|" * (len(head) - 1)]
    for shift, entry in o.shifts.items():
        where = f"{shift} ({_stage(shift, entry.stages[-1])})"
        for m, rows in entry.methods.items():
            h, f = rows["healthy"][-1], rows.get("faulty", [None])[-1]
            cells = [where, _label(m), _pm(h, "detection_rate", 100, 1)]
            cells += [_pm(f, "detection_rate", 100, 1)] if faulty else []
            cells += [_pm(h, "auroc_nll", digits=3)] + ([_pm(f, "auroc_nll", digits=3)] if faulty else [])
            cells += [_pm(h, "auroc_entropy", digits=3)] + ([_pm(f, "auroc_entropy", digits=3)] if faulty else [])
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ood_markdown(task: str, o: OODResult, plot: str) -> str:
    """The OOD study as a Markdown section: stage tables per shift, then the largest-stage summary."""
    fault = o.fault
    samples = ", ".join(f"{_label(m)} T={t}" for m, t in o.num_samples.items())
    lines = [
        "## Out-of-distribution detection",
        "",
        f"Task `{task}`, {o.num_test} test inputs per stage ({samples}). An input is "
        f"detected as shifted when its NLL exceeds {_threshold_text(o)}; the detection rate is the "
        "share of shifted inputs detected (at stage 0 it is the false-alarm rate). AUROC: unshifted vs "
        "shifted inputs, scored by NLL or predictive entropy.",
    ]
    if fault:
        calib = "each chip's own unshifted NLL" if o.calibration == "chip" else "the healthy model's NLL"
        lines += [
            "",
            f"Faulty: `{fault['kind']}` at `{fault['site']}`, level {fault['level']:g}, over "
            f"{fault['num_chips']} simulated chips (mean ± std over chips; threshold from {calib}).",
        ]
    lines += ["", f"![OOD]({plot})", ""]
    for shift in o.shifts:
        for kind in ("healthy", "faulty") if fault else ("healthy",):
            title = "healthy" if kind == "healthy" else f"faulty chips, mean over {fault['num_chips']}"
            lines += [
                f"### {shift.replace('_', ' ')}, {title}: accuracy % / NLL / detection rate %",
                "",
                _stage_table(o, shift, kind),
                "",
            ]
    lines += ["### At the largest stage", "", _largest_stage_table(o), ""]
    return "\n".join(lines)


def plot_ood(task: str, o: OODResult, path) -> Figure:
    """Fig.-7 style: accuracy, NLL and detection rate against stage; healthy solid, faulty dashed."""
    shifts = list(o.shifts)
    panels = (("accuracy", "accuracy %", 100), ("nll", "NLL (nats)", 1), ("detection_rate", "detection rate %", 100))
    fig = Figure(figsize=(4.4 * len(shifts), 2.8 * len(panels)))
    axes = fig.subplots(len(panels), len(shifts), squeeze=False)
    for col, shift in enumerate(shifts):
        entry, colors = o.shifts[shift], _colors(o.shifts[shift].methods)
        for row, (key, unit, scale) in enumerate(panels):
            ax = axes[row][col]
            for m, rows in entry.methods.items():
                for kind, style in (("healthy", "o-"), ("faulty", "s--")):
                    if kind in rows:
                        ax.plot(
                            entry.stages,
                            [scale * r[key] for r in rows[kind]],
                            style,
                            ms=3,
                            color=colors[m],
                            label=_label(m) + ("" if kind == "healthy" else " (faulty)"),
                            alpha=1.0 if kind == "healthy" else 0.8,
                        )
            ax.set_xlabel(SHIFTS[shift].axis_label if shift in SHIFTS else f"{shift} strength")
            ax.set_ylabel(unit)
            ax.grid(alpha=0.3)
            if row == 0:
                ax.set_title(f"{task}: {shift.replace('_', ' ')}", fontsize=10)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return fig
