"""Table I of the paper from finished runs: one row per task, one column per method.

Each argument is a run folder (the ``--workdir`` of ``invnorm-jax sweep``) holding the
``results.json`` that ``sweep`` writes, or the path of such a file::

    python experiments/table1.py runs/cifar10 runs/speech runs/co2 runs/drive
    python experiments/table1.py runs/cifar10 runs/speech runs/co2 runs/drive --out table1.md --sweeps

Cells are the fault-free metric (accuracy and mIoU in %, RMSE as is) of each method's
MC-averaged prediction. ``--sweeps`` adds, per task and sweep, the mean ± std over chips at
every fault level (the data of Fig. 5/6). Runs of a ``smoke`` or ``quick`` variant are
flagged under the table: smoke numbers are meaningless.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from invnorm_jax.pipeline import report
from invnorm_jax.pipeline import results as results_lib
from invnorm_jax.pipeline.results import Results

METHOD_ORDER = ("nn", "spindrop", "spatial_spindrop", "proposed")


class ResultsNotFoundError(FileNotFoundError):
    """A run folder without the ``results.json`` of ``invnorm-jax sweep``."""


def results_path(path) -> pathlib.Path:
    """``path`` itself if it is a file, else ``path/results.json``; a clear error if missing."""
    path = pathlib.Path(path)
    if path.is_file():
        return path
    candidate = path / "results.json"
    if candidate.is_file():
        return candidate
    if not path.exists():
        detail = "no such folder"
    elif (path / "evaluate.json").is_file():
        detail = "it has evaluate.json (fault-free only) but no sweep results"
    else:
        detail = "no results.json in it"
    raise ResultsNotFoundError(
        f"{path}: {detail}. Table I needs the results of a finished sweep: run "
        f"`invnorm-jax sweep --config <config> --workdir {path}` (after `invnorm-jax train` with the same "
        "--workdir) and pass that folder."
    )


def _ordered_methods(methods: dict) -> dict:
    known = [m for m in METHOD_ORDER if m in methods]
    return {m: methods[m] for m in known + [m for m in methods if m not in known]}


def collect(paths) -> tuple[Results, dict[str, dict]]:
    """Merge the tasks of every run into one :class:`~invnorm_jax.pipeline.results.Results`.

    A task name met twice (two runs of one config) is suffixed with its run folder.

    Returns:
      ``(merged, runs)``: ``runs[task]`` is ``{"file": ..., "settings": ...}`` of its run.

    Raises:
      ResultsNotFoundError: a path without results.json.
      ResultsError: a results.json of another schema version, or damaged.
      ValueError: a results.json without tasks.
    """
    merged, runs = Results(), {}
    for path in paths:
        file = results_path(path)
        results = results_lib.load(file)
        if not results.tasks:
            raise ValueError(f"{file} holds no tasks: is it a results.json of `invnorm-jax sweep`?")
        for task, entry in results.tasks.items():
            name = task if task not in merged.tasks else f"{task} [{file.parent.name}]"
            entry.methods = _ordered_methods(entry.methods)
            merged.tasks[name] = entry
            runs[name] = {"file": str(file), "settings": results.settings}
    return merged, runs


def markdown(results: Results, runs: dict | None = None, *, sweeps: bool = False) -> str:
    """The Table-I Markdown (and, with ``sweeps``, a mean ± std table per task and sweep)."""
    lines = ["## Table I: fault-free metric per task and method", "", report.table1(results), ""]
    sizes = []
    for task, t in results.tasks.items():
        if t.methods:
            chips = max(m.num_chips for m in t.methods.values())
            samples = max(m.num_samples for m in t.methods.values())
            sizes.append(f"{task}: {chips} chips, T = {samples}")
    lines += ["MC-averaged predictions (NN is deterministic: T = 1). " + "; ".join(sizes) + ".", ""]
    flagged = [
        f"`{task}` ({run['settings'].get('variant')})"
        for task, run in (runs or {}).items()
        if run["settings"].get("variant", "full") != "full"
    ]
    if flagged:
        lines += [
            "**Not paper scale:** "
            + ", ".join(flagged)
            + ". Smoke runs use a few steps on synthetic or cut data: their numbers are meaningless.",
            "",
        ]
    if sweeps:
        for task, t in results.tasks.items():
            for name, sweep in t.sweeps.items():
                lines += [
                    f"### {task}: {name} at {sweep.site} (mean ± std over chips)",
                    "",
                    report.robustness_table(t, name),
                    "",
                ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Table I (Markdown) from finished invnorm-jax runs.")
    parser.add_argument("runs", nargs="+", help="run folders (holding results.json) or results.json files")
    parser.add_argument("--out", help="also write the table to this Markdown file")
    parser.add_argument("--sweeps", action="store_true", help="add the per-level robustness tables")
    args = parser.parse_args(argv)
    try:
        results, runs = collect(args.runs)
    except (FileNotFoundError, ValueError) as err:
        print(f"table1: error: {err}", file=sys.stderr)
        return 2
    text = markdown(results, runs, sweeps=args.sweeps)
    print(text)
    if args.out:
        out = pathlib.Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
        print(f"written: {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
