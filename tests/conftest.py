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
