"""What a :class:`~invnorm_jax.faults.Fault` may hold: the built-in kinds, your own fault model, a level.

A fault model of your own is a pure function ``kind(key, array, level) -> array``, used wherever a
built-in kind name is (``Fault(my_fn, 0.1)``, :func:`~invnorm_jax.faults.inject`,
:func:`~invnorm_jax.faults.simulate_chips`). The protocol:

* ``key``: a typed PRNG key, the same one a built-in kind gets at that site: ``fold_in(chip_key,
  fault_id)`` for a library layer, ``fold_in(chip_key, path_id(path))`` for a leaf of a
  parameter pytree. Same chip, same leaf: same key, for every input and MC sample.
* ``array``: the deployed representation. At ``site="weights"``: a library layer's ±1 weights or
  k-bit integer codes (or its float kernel under ``include_full_precision``); a pytree leaf
  itself (``bits=None``), its signs (``bits=1``, magnitudes restored after) or its k-bit codes
  (``bits=k``, scale restored after). At ``site="preactivation"``: one example's normalized
  activation (shape ``x.shape[1:]``), with the same key for every example of a static fault.
* ``level``: your units, a scalar (a Python float, or a float32 array, traced inside
  ``simulate_chips`` so one compilation serves a sweep). Any real number; a range check on a
  concrete level is yours to make.
* ``bits``: passed as a keyword only if the function takes ``bits`` (or ``**kwargs``): 1, k, or
  None for a float representation.
* Returns an array of ``array``'s shape. A function is a static part of a compiled chip step,
  hashed by identity: define it once, not as a new lambda per call, or every call compiles anew.
"""

from __future__ import annotations

import inspect

import jax
import numpy as np

from invnorm_jax._checks import describe
from invnorm_jax.errors import ArgumentError, ArgumentTypeError, did_you_mean

KINDS = ("bit_flip", "additive", "multiplicative", "uniform", "stuck_at", "drift")
SITES = ("weights", "preactivation")
PREACTIVATION_KINDS = ("additive", "multiplicative", "uniform")
#: Kinds that act on stored bits: they need a stored representation (``bits``).
BIT_KINDS = ("bit_flip", "stuck_at")
PROTOCOL = "kind(key, array, level) -> array"


def is_custom(kind) -> bool:
    """Whether ``kind`` is a user's fault model (a function) rather than a built-in kind name.

    >>> is_custom("additive"), is_custom(lambda key, w, level: w)
    (False, True)
    """
    return callable(kind) and not isinstance(kind, str)


def kind_name(kind) -> str:
    """``'additive'`` for a built-in kind, the function's name for a custom one (messages, reports).

    >>> def dead_columns(key, w, level): return w
    >>> kind_name("additive"), kind_name(dead_columns)
    ("'additive'", 'dead_columns')
    """
    if isinstance(kind, str):
        return repr(kind)
    return getattr(kind, "__name__", None) or type(kind).__name__


def uses_bits(kind) -> bool:
    """Whether ``bits`` (a stored representation) means something for ``kind`` on a parameter pytree.

    >>> uses_bits("bit_flip"), uses_bits("additive"), uses_bits(lambda key, w, level: w)
    (True, False, True)
    """
    return is_custom(kind) or kind in BIT_KINDS


def check_kind(kind) -> None:
    """Raise unless ``kind`` is a built-in kind name or a hashable function of ``(key, array, level)``."""
    if isinstance(kind, str):
        if kind not in KINDS:
            raise ArgumentError(
                f"Fault kind={kind!r} is unknown{did_you_mean(kind, KINDS)}; expected one of {KINDS}, or a function "
                f"{PROTOCOL} of your own."
            )
        return
    if not callable(kind):
        raise ArgumentTypeError(
            f"Fault kind={describe(kind)} is neither a kind name nor a function: pass one of "
            f"{KINDS} or your own fault model, a function {PROTOCOL} (docs/faults.md)."
        )
    try:
        hash(kind)
    except TypeError:
        raise ArgumentTypeError(
            f"Fault kind={kind_name(kind)} is not hashable: a compiled chip step is cached on "
            "its fault model; pass a function or functools.partial."
        ) from None
    try:
        signature = inspect.signature(kind)
    except (TypeError, ValueError):
        return  # a builtin without a signature: trusted
    try:
        signature.bind(None, None, None, **({"bits": None} if accepts_bits(kind) else {}))
    except TypeError:
        raise ArgumentTypeError(
            f"Fault kind={kind_name(kind)} takes {signature}: a fault model is called as "
            f"{PROTOCOL}, e.g. def my_fault(key, w, level): ..."
        ) from None


def check_level(kind, level) -> None:
    """Raise unless a concrete ``level`` is a real number in ``kind``'s range; a traced level passes."""
    if isinstance(level, jax.core.Tracer):
        return  # a traced sweep level: whoever builds the sweep checks it
    if isinstance(level, (str, bytes)):
        raise ArgumentTypeError(
            f"Fault level={level!r} is text: pass a number, e.g. Fault('additive', 0.2) "
            "(sigma, rate, amplitude or seconds; a jnp scalar, traced or not, works too)."
        )
    value = np.asarray(level) if hasattr(level, "dtype") or isinstance(level, (int, float, np.number)) else None
    if value is None or value.dtype.kind not in "iuf":
        raise ArgumentTypeError(
            f"Fault level={describe(level)} is not a real number: pass e.g. 0.1 or jnp.float32(0.1)."
        )
    if is_custom(kind):  # the user's units: any real number
        if np.isnan(value).any():
            raise ArgumentError(f"Fault level={level!r} is NaN: pass a real number, in your fault model's units.")
        return
    if not np.all(value >= 0):  # NaN too
        raise ArgumentError(f"Fault level={level!r} must be >= 0 (sigma, rate or amplitude; 0 is fault-free).")
    if kind in BIT_KINDS and not np.all(value <= 1):
        raise ArgumentError(f"Fault level={level!r} is a probability for kind={kind!r}: expected 0 <= level <= 1.")


def accepts_bits(fn) -> bool:
    """Whether the fault model ``fn`` takes a ``bits`` keyword (named, or through ``**kwargs``).

    >>> accepts_bits(lambda key, w, level: w), accepts_bits(lambda key, w, level, *, bits: w)
    (False, True)
    """
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    named = params.get("bits")
    return (named is not None and named.kind in (named.POSITIONAL_OR_KEYWORD, named.KEYWORD_ONLY)) or any(
        p.kind is p.VAR_KEYWORD for p in params.values()
    )


def apply_custom(fn, key: jax.Array, w: jax.Array, level, *, bits: int | None) -> jax.Array:
    """``fn(key, w, level[, bits=bits])``, checked to be an array of ``w``'s shape.

    >>> import jax.numpy as jnp
    >>> apply_custom(lambda key, w, level: w * (1 - level), jax.random.key(0), jnp.ones(2), 0.5, bits=None).tolist()
    [0.5, 0.5]
    """
    out = fn(key, w, level, bits=bits) if accepts_bits(fn) else fn(key, w, level)
    if not (hasattr(out, "shape") and hasattr(out, "dtype")):
        raise ArgumentTypeError(
            f"fault model {kind_name(fn)} returned {describe(out)}: a fault model returns an "
            f"array of its input's shape ({PROTOCOL})."
        )
    if tuple(out.shape) != tuple(w.shape):
        raise ArgumentError(
            f"fault model {kind_name(fn)} returned shape {tuple(out.shape)} for an input of shape "
            f"{tuple(w.shape)}: a fault model returns an array of its input's shape ({PROTOCOL})."
        )
    return out


__all__ = [
    "BIT_KINDS",
    "KINDS",
    "PREACTIVATION_KINDS",
    "SITES",
    "accepts_bits",
    "apply_custom",
    "is_custom",
    "kind_name",
    "uses_bits",
]
