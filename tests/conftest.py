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
# The chip simulator passes its own level to its steps (invnorm_jax.faults.compiling): the same 0.
os.environ.setdefault("INVNORM_XLA_OPT_LEVEL", "0")

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


# Tests measured as the fast tier's slowest (pytest --durations on 2 cores): they run in the
# slow tier, so that `pytest -m "not slow"` stays under five minutes. One node id per line.
_SLOW_BY_MEASUREMENT = frozenset(
    line.strip()
    for line in open(os.path.join(os.path.dirname(__file__), "slow_by_measurement.txt"))
    if line.strip() and not line.startswith("#")
)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.nodeid in _SLOW_BY_MEASUREMENT:
            item.add_marker(pytest.mark.slow)
