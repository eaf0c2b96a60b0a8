"""How hard XLA optimizes the chip simulator's compiled steps (:mod:`invnorm_jax.faults.simulate`).

On a CPU a chip step's compilation is most of a small run's time (a quick demo compiles 32 of
them), and XLA's default backend optimization level (3) buys nothing for them at run
time. Measured on the 2-core CPU (``docs/benchmarks.md``, "Compile effort"), level 1 against
the default: the digits ResNet, M5 and LSTM steps compiled 1.4-1.8x faster and ran as fast
(within the run-to-run noise); the binary ResNet-18 compiled 1.4x faster and
ran about 9 % slower, which matters only in hour-long paper-scale sweeps on a CPU.

``INVNORM_XLA_OPT_LEVEL`` overrides it: ``0``-``3``, or ``default`` for XLA's own choice.
Accelerators keep XLA's default unless the variable says otherwise.
"""

from __future__ import annotations

import os

import jax

from invnorm_jax.errors import ArgumentError

__all__ = ["CPU_OPT_LEVEL", "chip_compiler_options"]

#: XLA backend optimization level of the chip steps on a CPU (see the module's docstring).
CPU_OPT_LEVEL = 1
ENV = "INVNORM_XLA_OPT_LEVEL"


def chip_compiler_options(backend: str | None = None, setting: str | None = None) -> tuple[tuple[str, int], ...]:
    """``compiler_options`` of the chip steps on ``backend`` (default: JAX's), as hashable items.

    ``setting``: as ``INVNORM_XLA_OPT_LEVEL`` (default: the variable; unset is ``auto``).

    >>> chip_compiler_options("cpu", setting="auto")
    (('xla_backend_optimization_level', 1),)
    >>> chip_compiler_options("gpu", setting="auto"), chip_compiler_options("gpu", setting="2")
    ((), (('xla_backend_optimization_level', 2),))
    """
    value = (os.environ.get(ENV, "") if setting is None else setting).strip().lower()
    if value in ("", "auto"):
        backend = backend or jax.default_backend()
        return (("xla_backend_optimization_level", CPU_OPT_LEVEL),) if backend == "cpu" else ()
    if value == "default":
        return ()
    if value not in ("0", "1", "2", "3"):
        raise ArgumentError(
            f"{ENV}={value!r}: expected 0, 1, 2, 3 (XLA's backend optimization level), "
            "'default' (XLA's own) or 'auto' (1 on a CPU, XLA's own elsewhere)."
        )
    return (("xla_backend_optimization_level", int(value)),)
