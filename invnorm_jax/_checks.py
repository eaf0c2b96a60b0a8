"""Argument checks shared by the library: each error names the argument and what is allowed.

The errors of what a user asked for share one base, :class:`InputError`: the command line
prints their message on one line and exits with status 2, and shows the traceback of any other
exception (a bug). Each subclass is also the builtin a caller would expect (``ValueError``,
``TypeError``), so ``except ValueError`` keeps working.

Imports nothing heavy at import time (JAX is imported inside the checks that need it): the
data package, which must not depend on JAX, uses these errors too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from invnorm_jax.errors import ArgumentError, ArgumentTypeError


def is_concrete(value) -> bool:
    """Whether ``value`` can be checked now (a Python/numpy number, not a tracer)."""
    import jax

    return not isinstance(value, jax.core.Tracer)


def describe(value) -> str:
    """A short description of ``value`` for a message: arrays by dtype and shape, else a clipped repr."""
    if hasattr(value, "dtype") and hasattr(value, "shape"):
        return f"an array of dtype {value.dtype} and shape {tuple(value.shape)}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_rate(rate, name: str = "rate") -> None:
    """Raise unless ``0 <= rate <= 1`` (skipped for traced values)."""
    if is_concrete(rate):
        r = float(rate)
        if not 0.0 <= r <= 1.0:
            raise ArgumentError(f"{name}={rate!r} is outside [0, 1]: expected a probability, e.g. {name}=0.3.")


def check_nonnegative(value, name: str) -> None:
    """Raise unless ``value >= 0`` (skipped for traced values)."""
    if is_concrete(value):
        v = float(value)
        if not v >= 0.0:
            raise ArgumentError(f"{name}={value!r} must be >= 0.")


def check_choice(value, name: str, allowed: Sequence) -> None:
    """Raise unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise ArgumentError(f"{name}={value!r} is not allowed; expected one of {tuple(allowed)}.")


def check_bits(bits, name: str = "bits", low: int = 1, high: int = 16) -> None:
    """Raise unless ``bits`` is an integer in ``[low, high]``."""
    if not isinstance(bits, int) or isinstance(bits, bool) or not low <= bits <= high:
        raise ArgumentError(f"{name}={bits!r} is outside {low}..{high}: expected an integer bit width.")


def check_positive_int(value, name: str) -> int:
    """``value`` if it is an integer >= 1 (a layer's size), else an :class:`ArgumentError`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ArgumentError(f"{name}={value!r} must be an integer >= 1.")
    return int(value)


def check_key(key, name: str = "key", who: str = "", *, single: bool = False):
    """``key`` if it is a JAX random key (typed, or a legacy ``uint32[..., 2]``), else a clear error.

    A batch of keys (``[batch]``, one per example) passes too, unless ``single``.

    >>> from flax import nnx
    >>> try:
    ...     check_key(nnx.Rngs(0))
    ... except TypeError as err:
    ...     print(str(err)[:74])
    key=nnx.Rngs(...) is not a JAX random key: a layer takes a stream as rngs=
    """
    import jax

    prefix = f"{who}: " if who else ""
    if type(key).__name__ in ("Rngs", "RngStream") and type(key).__module__.startswith("flax"):
        raise ArgumentTypeError(
            f"{prefix}{name}=nnx.{type(key).__name__}(...) is not a JAX random key: a layer takes a stream as "
            f"rngs= (layer(x, rngs=rngs)); for {name}= draw one key from it ({name}=rngs.dropout())."
        )
    dtype = getattr(key, "dtype", None)
    typed = dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)
    raw = dtype is not None and not typed and dtype == np.uint32 and tuple(np.shape(key))[-1:] == (2,)
    if not (typed or raw):
        raise ArgumentTypeError(
            f"{prefix}{name}={describe(key)} is not a JAX random key: pass "
            f"{name}=jax.random.key(seed) (an int seed is not a key)."
        )
    batch_dims = len(np.shape(key)) - (0 if typed else 1)
    if batch_dims > (0 if single else 1):
        shape = tuple(np.shape(key))
        allowed = "one key" if single else "one key or one key per example ([batch])"
        raise ArgumentError(
            f"{prefix}{name} holds keys of shape {shape}: expected {allowed}"
            + (
                ", e.g. jax.random.key(0); the chips' and samples' keys are made from it."
                if single
                else "; split(key, n) gives n keys for n examples."
            )
        )
    return key


def check_float_input(x, who: str) -> None:
    """Raise unless ``x`` is a floating-point array (integer inputs would truncate the weights)."""
    import jax.numpy as jnp

    dtype = getattr(x, "dtype", None)
    if dtype is None or not hasattr(x, "shape"):
        raise ArgumentTypeError(f"{who}: x={describe(x)} is not an array: pass a jax or numpy array.")
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ArgumentTypeError(
            f"{who}: x has dtype {dtype}: expected a floating-point input, e.g. x.astype(jnp.float32) "
            "(integer data such as uint8 images should be scaled or standardized first, as in training)."
        )


def check_channels(
    x, expected: int, who: str, *, axis_name: str = "channels", size_name: str = "in_features", name: str = "x"
) -> None:
    """Raise unless the last axis of ``x`` has ``expected`` entries (a layer's ``in_features``)."""
    if x.ndim == 0:
        raise ArgumentError(f"{who}: {name} is a scalar: expected an array [batch, ..., {expected}].")
    got = x.shape[-1]
    if got == expected:
        return
    hint = ""
    if x.ndim >= 3 and x.shape[1] == expected:
        hint = " (channels first? the library is channels last: jnp.moveaxis(x, 1, -1))"
    raise ArgumentError(
        f"{who}: {name}.shape={tuple(x.shape)} has {got} {axis_name} on its last axis, but the layer was built for "
        f"{size_name}={expected}{hint}; give inputs [batch, ..., {expected}] or build the layer with "
        f"{size_name}={got}."
    )


def _is_fault(value) -> bool:
    """Whether ``value`` is an ``invnorm_jax.faults.Fault`` (by its fields: the layers below the
    fault models do not import them)."""
    return type(value).__name__ == "Fault" and all(hasattr(value, a) for a in ("kind", "level", "site"))


def check_fault_context(faults):
    """``faults`` if it is a chip's fault context (has the site hooks), else a ``TypeError``.

    The common mistake is a ``Fault`` (what to inject) where a ``FaultContext`` (one chip: the
    fault and the chip's key) is expected; the message says how to make one. A context made of
    the wrong parts (a kind name instead of a ``Fault``, an int instead of a key) is refused too.
    """
    if faults is None:
        return faults
    if hasattr(faults, "weights"):
        fault = getattr(faults, "fault", None)
        if fault is not None and not _is_fault(fault):
            raise ArgumentTypeError(
                f"FaultContext(fault={describe(fault)}, ...): the fault must be an invnorm_jax.faults.Fault, "
                "e.g. FaultContext(Fault('bit_flip', 0.1), jax.random.key(chip))."
            )
        if hasattr(faults, "chip_key"):
            check_key(faults.chip_key, "chip_key", "FaultContext(fault, chip_key)")
        return faults
    if _is_fault(faults):
        raise ArgumentTypeError(
            f"faults={faults!r} describes what to inject, not a chip. A layer needs one chip's faults: "
            "faults=invnorm_jax.faults.FaultContext(fault, chip_key) with chip_key=jax.random.key(...); "
            "for many chips use invnorm_jax.simulate_chips(model, x, fault=fault, ...)."
        )
    raise ArgumentTypeError(
        f"faults={describe(faults)} is not a fault context: expected None or "
        "invnorm_jax.faults.FaultContext(fault, chip_key)."
    )
