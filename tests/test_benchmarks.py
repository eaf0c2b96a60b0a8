"""The benchmark entry point runs end to end and reports every row with usable figures.

Speed is never asserted here: the figures are checked to be finite and positive, not against
their targets.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from experiments.benchmarks import BENCHMARKS  # noqa: E402
from experiments.benchmarks.__main__ import load  # noqa: E402
from experiments.benchmarks.models import SPECS  # noqa: E402


def expected_rows() -> list[str]:
    names = [f"ceiling {op} {dt}" for op in ("conv", "matmul") for dt in ("float32", "bfloat16", "int8")]
    names += [f"simulate_chips: {s.label}" for s in SPECS.values()]
    names += [f"train step proposed/nn: {s.label}" for s in SPECS.values()]
    names += [
        "peak memory: chunk_size 1",
        "peak memory: chunk_size 5",
        "peak memory: num_chips 5 (chunk 1)",
        "peak memory: num_chips 10 (chunk 1)",
        "peak memory: num_chips ratio at chunk 1",
    ]
    if importlib.util.find_spec("torch") and importlib.util.find_spec("pytorchfi"):
        names += ["torch: simulate_chips vs hand-written torch loop", "torch: simulate_chips vs PyTorchFI"]
    return names


def test_registry_skips_only_missing_optional_modules():
    assert load("lowp_not_there", optional=True) is None
    with pytest.raises(ModuleNotFoundError):
        load("lowp_not_there", optional=False)
    assert all(load(module, optional) is not None for _, module, optional in BENCHMARKS if not optional)


@pytest.mark.slow
def test_quick_run_reports_every_row(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.benchmarks", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = json.loads((tmp_path / "table.json").read_text())
    rows = {r["name"]: r for r in table["rows"]}
    for name in expected_rows():
        assert name in rows, f"row {name!r} missing; got {sorted(rows)}"
        figures = rows[name]["figures"]
        assert figures, f"row {name!r} has no figures"
        for label, value in figures.items():
            assert math.isfinite(value) and value > 0, f"{name}: {label} = {value}"
    markdown = (tmp_path / "table.md").read_text()
    assert all(name in markdown for name in expected_rows())
    if not importlib.util.find_spec("pytorchfi"):
        assert "skipped: install .[bench]" in markdown
    else:  # torch.compile needs a C++ compiler: figures where it runs, else a note that says so
        compiled = rows["torch: simulate_chips vs torch.compile loop"]
        assert compiled["figures"] or "torch.compile does not run here" in compiled["note"]
        assert all(math.isfinite(v) and v > 0 for v in compiled["figures"].values())


@pytest.mark.slow
def test_chip_profile_puts_every_op_in_a_category():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    args = ["--chips", "2", "--samples", "2", "--images", "16", "--top", "3"]
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.benchmarks.profile_chip", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [line.split("|")[1:-1] for line in proc.stdout.splitlines() if line.startswith("| ") and "%" in line]
    shares = {name.strip(): float(share.strip(" %")) for name, _, share in rows}
    assert "convs and matmuls" in shares and "normalization statistics (reductions)" in shares, shares
    assert abs(sum(shares.values()) - 100) <= len(shares), shares  # each share is rounded to 1 %
    top = [line for line in proc.stdout.split("costliest ops")[1].splitlines()[1:] if line.strip()]
    assert len(top) == 3 and all(float(line.split()[0]) >= 0 for line in top), top
