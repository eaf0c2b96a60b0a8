"""Benchmarks of invnorm-jax: ``python -m experiments.benchmarks [--quick] [--only NAME ...]``.

Every benchmark is a module of this package with a function ``rows(quick: bool) -> list[dict]``;
a row is ``{"name": str, "figures": {label: float}, "note": str}``. :data:`BENCHMARKS` lists
them in the order they run; an optional one (a module that may not exist yet) is skipped when
it cannot be imported. Adding a benchmark is one line here.
"""

from __future__ import annotations

#: (name, module under experiments.benchmarks, optional): the registry of benchmarks.
BENCHMARKS: list[tuple[str, str, bool]] = [
    ("ceilings", "ceilings", False),
    ("simulate", "throughput", False),
    ("train_step", "train_step", False),
    ("memory", "memory", False),
    ("torch", "torch_compare", False),
    ("lowp", "lowp", True),  # int8 binary layers, when present
]
