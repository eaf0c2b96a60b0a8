"""The CLI's persistent compilation cache: on by default, and a copied folder still hits."""

import argparse
import pathlib
import shutil
import subprocess
import sys

from invnorm_jax.pipeline import cli

# One compile through the CLI's cache settings (threshold lowered so that a small program is
# kept), printing the cache events it saw.
PROGRAM = """
import argparse, sys
import jax, jax.numpy as jnp
from jax import monitoring
from invnorm_jax.pipeline import cli
events = []
monitoring.register_event_listener(lambda event, **kw: events.append(event))
cli._compilation_cache(argparse.Namespace(cache_dir=sys.argv[1]))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.jit(lambda x: jnp.tanh(x) @ x.T + 1.0)(jnp.ones((16, 16))).block_until_ready()
print(sum(e.endswith("/cache_hits") for e in events), sum(e.endswith("/cache_misses") for e in events))
"""


def _hits_misses(folder: pathlib.Path) -> tuple[int, int]:
    done = subprocess.run([sys.executable, "-c", PROGRAM, str(folder)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    hits, misses = done.stdout.split()[-2:]
    return int(hits), int(misses)


def test_a_copied_cache_folder_still_hits(tmp_path):
    first = tmp_path / "cache"
    hits, compiled = _hits_misses(first)  # empty: every program compiled and written
    assert hits == 0 and compiled >= 1 and any(first.iterdir())
    assert _hits_misses(first) == (compiled, 0)  # warm: every program loaded
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(first, copy)
    # The key must not hold the folder's path (JAX's GPU autotuning cache path, left off on CPU).
    assert _hits_misses(copy) == (compiled, 0)


def test_cache_dir_none_leaves_the_cache_off(monkeypatch):
    import jax

    monkeypatch.setattr(jax.config, "update", lambda *a: (_ for _ in ()).throw(AssertionError(a)))
    cli._compilation_cache(argparse.Namespace(cache_dir="none"))  # touches no JAX setting
