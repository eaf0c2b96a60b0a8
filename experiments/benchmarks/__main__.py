"""Run every benchmark and print one table: ``python -m experiments.benchmarks [--quick]``.

    python -m experiments.benchmarks                     # full sizes (about 10 minutes)
    python -m experiments.benchmarks --quick             # tiny sizes, one repeat (under 3 minutes)
    python -m experiments.benchmarks --only ceilings simulate --out runs/bench

The table is also written as ``table.json`` and ``table.md`` under ``--out`` (default
``runs/benchmarks-<time>``). Every figure is measured in this run; contenders that are compared
take turns run by run. Targets are printed beside the figures, never asserted.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import math
import os
import pathlib
import sys
import time
import traceback

from experiments.benchmarks import BENCHMARKS
from experiments.benchmarks.common import machine_line


def load(module: str, optional: bool):
    """The benchmark module, or None for an optional one that is not there."""
    name = f"experiments.benchmarks.{module}"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if optional and err.name == name:
            return None
        raise


def fmt(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    if abs(value) >= 1000:
        return f"{value:,.0f}".replace(",", " ")
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def figures_text(figures: dict) -> str:
    return "; ".join(f"{label} {fmt(v)}" for label, v in figures.items()) or "-"


def markdown(rows: list[dict], header: str) -> str:
    lines = [header, "", "| benchmark | row | figures | note |", "|---|---|---|---|"]
    lines += [f"| {r['benchmark']} | {r['name']} | {figures_text(r['figures'])} | {r.get('note', '')} |" for r in rows]
    return "\n".join(lines) + "\n"


def text_table(rows: list[dict]) -> str:
    width = max(len(r["name"]) for r in rows)
    return "\n".join(
        f"{r['name']:{width}s}  {figures_text(r['figures'])}" + (f"  [{r['note']}]" if r.get("note") else "")
        for r in rows
    )


def main(argv=None) -> int:
    names = [b[0] for b in BENCHMARKS]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes, one repeat")
    p.add_argument("--only", nargs="+", choices=names, metavar="NAME", help=f"run only these, of {names}")
    p.add_argument("--out", type=pathlib.Path, help="folder of table.json / table.md (default runs/benchmarks-<time>)")
    a = p.parse_args(argv)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = a.out or pathlib.Path("runs") / f"benchmarks-{stamp}"
    machine = machine_line()
    print(f"machine: {machine}\nmode: {'quick' if a.quick else 'full'}; output: {out}", flush=True)
    rows, failed, t0 = [], [], time.perf_counter()
    selected = [b for b in BENCHMARKS if a.only is None or b[0] in a.only]
    for i, (name, module, optional) in enumerate(selected, 1):
        start = time.perf_counter()
        print(f"[{i}/{len(selected)}] {name} ...", end=" ", flush=True)
        mod = load(module, optional)
        if mod is None:
            print("not present, skipped", flush=True)
            continue
        try:
            got = mod.rows(a.quick)
        except Exception:  # one broken benchmark must not hide the others' figures
            traceback.print_exc()
            failed.append(name)
            got = [{"name": f"{name}: FAILED", "figures": {}, "note": "see the traceback above"}]
        rows += [{"benchmark": name, **r} for r in got]
        print(f"{len(got)} rows in {time.perf_counter() - start:.0f} s", flush=True)
    total = time.perf_counter() - t0
    cpu = sum(os.times()[:4])  # this process and its waited-for children (the memory subprocesses)
    header = (
        f"{'quick' if a.quick else 'full'} run, {datetime.date.today().isoformat()}, {total:.0f} s wall, "
        f"{cpu:.0f} s CPU; machine: {machine}"
    )
    print(
        "\n" + text_table(rows) + f"\n\ntotal {total:.0f} s wall, {cpu:.0f} s CPU (user + system, with the "
        "subprocesses); load average at the end " + ", ".join(f"{v:.1f}" for v in os.getloadavg()),
        flush=True,
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.json").write_text(
        json.dumps({"quick": a.quick, "machine": machine, "seconds": total, "cpu_seconds": cpu, "rows": rows}, indent=1)
    )
    (out / "table.md").write_text(markdown(rows, header))
    print(f"wrote {out / 'table.json'} and {out / 'table.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
