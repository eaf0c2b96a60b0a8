"""Test-session settings.

The tests compile many small programs and run each once or twice, so XLA's backend
optimization costs more than it saves: level 0 cuts compile times two- to three-fold on CPU.
It changes how fast the code runs, not what it computes (the numerics tests compare against
float64 references either way). Set before JAX initializes its backend.
"""

import os

_FAST_COMPILE = "--xla_backend_optimization_level=0"
if _FAST_COMPILE not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FAST_COMPILE).strip()

# The CLI turns on JAX's persistent compilation cache under runs/; the tests stay hermetic.
os.environ.setdefault("INVNORM_CACHE_DIR", "none")


import gc  # noqa: E402

import jax  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _free_compiled_programs():
    """Drop each module's compiled programs once it is done.

    The whole suite runs in one process and compiles thousands of small programs; keeping
    them all alive grew the process until XLA's CPU compiler crashed (a segfault late in a
    full run, never in a file run alone).
    """
    yield
    jax.clear_caches()
    gc.collect()
