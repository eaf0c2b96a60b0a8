"""Results on disk: ``results.json``, ``results.csv``, a Markdown report and Fig.-5/6 plots.

``results.json`` schema::

    {"tasks": {TASK: {"metric": "accuracy", "higher_is_better": true,
                      "sweeps": {NAME: {"kind": "bit_flip", "site": "weights"}},
                      "methods": {METHOD: {"fault_free": 0.97, "num_chips": 100, "num_samples": 10,
                                           "sweeps": {NAME: [{"level": 0.1, "mean": .., "std": ..,
                                                              "chips": [..]}]}}}}},
     "settings": {...}}
"""

from __future__ import annotations

import csv
import json
import pathlib

import matplotlib

matplotlib.use("Agg")  # files only: the CLI runs headless
import matplotlib.pyplot as plt  # noqa: E402

METHOD_LABELS = {
    "nn": "NN",
    "spindrop": "SpinDrop",
    "spatial_spindrop": "Spatial-SpinDrop",
    "proposed": "Proposed",
}
METHOD_COLORS = {"nn": "#7f7f7f", "spindrop": "#1f77b4", "spatial_spindrop": "#2ca02c", "proposed": "#d62728"}


def write_json(results: dict, path) -> None:
    pathlib.Path(path).write_text(json.dumps(results, indent=1))


def write_csv(results: dict, path) -> None:
    """One row per task, method, fault and level (level 'none' for the fault-free metric)."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["task", "metric", "method", "fault", "site", "level", "mean", "std"])
        for task, t in results["tasks"].items():
            for method, m in t["methods"].items():
                writer.writerow([task, t["metric"], method, "none", "", "", m["fault_free"], 0.0])
                for name, rows in m["sweeps"].items():
                    site = t["sweeps"][name]["site"]
                    for r in rows:
                        writer.writerow([task, t["metric"], method, name, site, r["level"], r["mean"], r["std"]])


def _fmt(value: float, metric: str) -> str:
    return f"{100 * value:.2f}" if metric in ("accuracy", "miou") else f"{value:.4f}"


def _unit(metric: str) -> str:
    return {"accuracy": "accuracy %", "miou": "mIoU %", "rmse": "RMSE"}[metric]


def table1(results: dict) -> str:
    """Table-I style: fault-free metric per task (rows) and method (columns)."""
    methods = _methods(results)
    lines = ["| task (metric) | " + " | ".join(METHOD_LABELS.get(m, m) for m in methods) + " |",
             "|---|" + "---|" * len(methods)]
    for task, t in results["tasks"].items():
        cells = [_fmt(t["methods"][m]["fault_free"], t["metric"]) if m in t["methods"] else "–" for m in methods]
        lines.append(f"| {task} ({_unit(t['metric'])}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def robustness_table(task: str, t: dict, name: str) -> str:
    """Rows: fault levels; columns: methods; cells: mean ± std over chips."""
    methods = list(t["methods"])
    levels = [r["level"] for r in t["methods"][methods[0]]["sweeps"][name]]
    lines = ["| level | " + " | ".join(METHOD_LABELS.get(m, m) for m in methods) + " |",
             "|---|" + "---|" * len(methods)]
    for i, level in enumerate(levels):
        cells = []
        for m in methods:
            r = t["methods"][m]["sweeps"][name][i]
            cells.append(f"{_fmt(r['mean'], t['metric'])} ± {_fmt(r['std'], t['metric'])}")
        lines.append(f"| {level:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _methods(results: dict) -> list[str]:
    seen = []
    for t in results["tasks"].values():
        seen += [m for m in t["methods"] if m not in seen]
    return seen


def verdicts(results: dict) -> list[str]:
    """Plain sentences: where the proposed method is or is not ahead (mean over each sweep)."""
    out = []
    for task, t in results["tasks"].items():
        if "proposed" not in t["methods"] or len(t["methods"]) < 2:
            continue
        sign = 1 if t["higher_is_better"] else -1
        for name in t["sweeps"]:
            avg = {m: sum(r["mean"] for r in v["sweeps"][name]) / len(v["sweeps"][name]) for m, v in t["methods"].items()}
            others = {m: a for m, a in avg.items() if m != "proposed"}
            rival = max(others, key=lambda m: sign * others[m])
            ahead = sign * avg["proposed"] >= sign * others[rival]
            word = "ahead of" if ahead else "NOT ahead of"
            out.append(f"{task}, {name}: the proposed method is {word} the best baseline "
                       f"({METHOD_LABELS.get(rival, rival)}), averaged over the sweep's levels: "
                       f"{_fmt(avg['proposed'], t['metric'])} vs {_fmt(others[rival], t['metric'])}.")
    return out


def plot_task(task: str, t: dict, path) -> None:
    """Fig.-5/6 style: metric against fault level, a line per method, a ±1 std band."""
    names = list(t["sweeps"])
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4), squeeze=False)
    scale = 100 if t["metric"] in ("accuracy", "miou") else 1
    for ax, name in zip(axes[0], names):
        for method, m in t["methods"].items():
            rows = m["sweeps"][name]
            x = [r["level"] for r in rows]
            mean = [scale * r["mean"] for r in rows]
            std = [scale * r["std"] for r in rows]
            color = METHOD_COLORS.get(method)
            ax.plot(x, mean, "o-", ms=3, color=color, label=METHOD_LABELS.get(method, method))
            ax.fill_between(x, [a - b for a, b in zip(mean, std)], [a + b for a, b in zip(mean, std)],
                            color=color, alpha=0.18, lw=0)
        site = t["sweeps"][name]["site"]
        ax.set_title(f"{task}: {name.replace('_', ' ')} ({site})", fontsize=10)
        ax.set_xlabel("bit-flip rate" if "flip" in name else "level (sigma / amplitude)")
        ax.set_ylabel(_unit(t["metric"]))
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(results: dict, out_dir, extra_sections: list[str] = ()) -> pathlib.Path:
    """Write every file of a run into ``out_dir``; returns the Markdown report's path."""
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(results, out / "results.json")
    write_csv(results, out / "results.csv")
    s = results.get("settings", {})
    sizes = ", ".join(
        f"{task}: {max(m['num_chips'] for m in t['methods'].values())} chips x "
        f"{max(m['num_samples'] for m in t['methods'].values())} MC samples"
        for task, t in results["tasks"].items() if t["methods"]
    )
    wall = f", wall time {s['wall_seconds'] / 60:.1f} min" if "wall_seconds" in s else ""
    lines = ["# invnorm-jax results", "",
             f"{sizes} (NN is deterministic: 1 sample); variant `{s.get('variant', 'full')}`{wall}.", "",
             "## Fault-free (Table I style)", "", table1(results), ""]
    for task, t in results["tasks"].items():
        plot = f"{task}_robustness.png"
        plot_task(task, t, out / plot)
        lines += [f"## {task}", "", f"![{task}]({plot})", ""]
        for name in t["sweeps"]:
            site = t["sweeps"][name]["site"]
            lines += [f"### {name} at {site} ({_unit(t['metric'])}, mean ± std over chips)", "",
                      robustness_table(task, t, name), ""]
    lines += ["## Verdict", ""] + [f"* {v}" for v in verdicts(results)] + [""]
    lines += list(extra_sections)
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
