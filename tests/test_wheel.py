"""The built wheel works outside the checkout: configs ship inside the package."""

import json
import os
import pathlib
import subprocess
import sys
import sysconfig

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _run(cmd, **kwargs):
    done = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, f"{cmd[:4]} failed:\n{done.stdout[-1500:]}\n{done.stderr[-3000:]}"
    return done


def test_wheel_installs_and_runs_the_demo_outside_the_checkout(tmp_path):
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), str(ROOT)])
    wheel = next(dist.glob("invnorm_jax-*.whl"))

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    py = venv / "bin" / "python"
    # The dependencies come from this environment (no download); the package only from the wheel.
    site = _run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    pathlib.Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([str(py), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)])

    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "XLA_FLAGS", "INVNORM_CACHE_DIR")}
    where = _run([str(py), "-c", "import invnorm_jax; print(invnorm_jax.__file__)"], cwd=work, env=env).stdout
    assert where.startswith(str(venv)), where  # the wheel's copy, not the source tree
    _run(
        [
            str(venv / "bin" / "invnorm-jax"),
            "demo",
            "--smoke",
            "--tasks",
            "digits",
            "--methods",
            "proposed",
            "--no-ood",
            "--out",
            "run",
            "--no-progress",
            "--config.eval.num_chips=2",
        ],
        cwd=work,
        env=env,
        timeout=900,
    )
    results = json.loads((work / "run" / "results.json").read_text())
    assert results["tasks"]["digits"]["methods"]["proposed"]["num_chips"] == 2
    assert (work / "runs" / ".jax-cache").is_dir()  # the CLI's compilation cache, under the run root
