"""Argument checks shared by the library: each error names the argument and what is allowed."""

from __future__ import annotations

from collections.abc import Sequence

import jax


def is_concrete(value) -> bool:
    """Whether ``value`` can be checked now (a Python/numpy number, not a tracer)."""
    return not isinstance(value, jax.core.Tracer)


def check_rate(rate, name: str = "rate") -> None:
    """Raise unless ``0 <= rate <= 1`` (skipped for traced values)."""
    if is_concrete(rate):
        r = float(rate)
        if not 0.0 <= r <= 1.0:
            raise ValueError(f"{name}={rate!r} is outside [0, 1]: expected a probability, e.g. {name}=0.3.")


def check_nonnegative(value, name: str) -> None:
    """Raise unless ``value >= 0`` (skipped for traced values)."""
    if is_concrete(value):
        v = float(value)
        if not v >= 0.0:
            raise ValueError(f"{name}={value!r} must be >= 0.")


def check_choice(value, name: str, allowed: Sequence) -> None:
    """Raise unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not allowed; expected one of {tuple(allowed)}.")


def check_bits(bits, name: str = "bits", low: int = 1, high: int = 16) -> None:
    """Raise unless ``bits`` is an integer in ``[low, high]``."""
    if not isinstance(bits, int) or isinstance(bits, bool) or not low <= bits <= high:
        raise ValueError(f"{name}={bits!r} is outside {low}..{high}: expected an integer bit width.")


def check_fault_context(faults):
    """``faults`` if it is a chip's fault context (has the site hooks), else a ``TypeError``.

    The common mistake is a ``Fault`` (what to inject) where a ``FaultContext`` (one chip: the
    fault and the chip's key) is expected; the message says how to make one.
    """
    if faults is None or hasattr(faults, "weights"):
        return faults
    if type(faults).__name__ == "Fault":
        raise TypeError(
            f"faults={faults!r} describes what to inject, not a chip. A layer needs one chip's faults: "
            "faults=invnorm_jax.faults.FaultContext(fault, chip_key) with chip_key=jax.random.key(...); "
            "for many chips use invnorm_jax.simulate_chips(model, x, fault=fault, ...)."
        )
    raise TypeError(
        f"faults={faults!r} is not a fault context: expected None or invnorm_jax.faults.FaultContext(fault, chip_key)."
    )
