"""Faults for any JAX model: a faulty copy of a parameter pytree.

:func:`inject` needs nothing from the model but its parameters: a Flax linen ``variables``
dict, the ``nnx.State`` of ``nnx.split(model)``, or any pytree of arrays. It picks the leaves to
fault (by path or predicate), makes the deployed representation a fault model needs on the
fly (sign and magnitude for binary cells, k-bit codes and their scale for k-bit cells), faults
it (a built-in kind or your own function, :mod:`invnorm_jax.faults.kinds`) and restores the
scale. Leaf ``p`` of chip ``c`` is drawn from ``fold_in(chip_key, path_id(p))``: the same leaf
of the same chip gets the same faults, and adding a parameter elsewhere leaves them unchanged.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Callable, Sequence
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np

from invnorm_jax._checks import describe
from invnorm_jax.errors import ArgumentError, ArgumentTypeError
from invnorm_jax.faults import models as fm
from invnorm_jax.faults.context import Fault, apply_kind
from invnorm_jax.faults.kinds import BIT_KINDS, kind_name, uses_bits
from invnorm_jax.functional.quantize import quantize_symmetric
from invnorm_jax.nn.keys import path_id

Select = str | Sequence[str] | Callable[[str, Any], bool] | None


def path_name(path) -> str:
    """``"params/Dense_0/kernel"`` for a ``jax.tree_util`` key path (nnx's ``.value`` dropped).

    >>> tree = {"params": {"Dense_0": {"kernel": 1.0}}, "layers": [2.0]}
    >>> [path_name(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]
    ['layers/0', 'params/Dense_0/kernel']
    """
    parts = []
    for entry in path:
        for attr in ("key", "name", "idx"):
            if hasattr(entry, attr):
                parts.append(str(getattr(entry, attr)))
                break
        else:
            parts.append(str(entry))
    if len(parts) > 1 and parts[-1] == "value":  # nnx.Variable's array
        parts.pop()
    return "/".join(parts)


def _describe(select: Select) -> str:
    if select is None:
        return "every floating-point leaf with 2 or more axes (dense and conv kernels)"
    if isinstance(select, str):
        return f"paths matching the regular expression {select!r}"
    if callable(select):
        return f"leaves for which {getattr(select, '__name__', select)!r}(path, leaf) is true"
    return f"paths matching any of {tuple(select)!r}"


def _pattern(text: str, select: Select) -> re.Pattern:
    try:
        return re.compile(text)
    except re.error as err:
        raise ArgumentError(
            f"select={select!r}: {text!r} is not a regular expression ({err}): pass a pattern "
            "searched in each leaf's path such as 'kernel' or 'Dense_1/kernel$' (re.escape(path) "
            "for a literal path), or a predicate select(path, leaf) -> bool."
        ) from None


def _check_predicate(select: Callable) -> None:
    try:
        signature = inspect.signature(select)
    except (TypeError, ValueError):
        return  # no signature to read (a builtin): trusted
    try:
        signature.bind("path", None)
    except TypeError:
        raise ArgumentTypeError(
            f"select={getattr(select, '__name__', describe(select))} takes {signature}: a predicate is called as "
            "select(path, leaf) -> bool, path a string such as 'params/Dense_0/kernel' and leaf the array; e.g. "
            "select=lambda path, leaf: 'kernel' in path."
        ) from None


def _matcher(select: Select) -> Callable[[str, Any], bool]:
    """``select`` as a checked predicate ``(path, leaf) -> bool``; a clear error for a bad one."""
    if select is None:
        return lambda name, leaf: jnp.issubdtype(leaf.dtype, jnp.floating) and np.ndim(leaf) >= 2
    texts = [select] if isinstance(select, str) else select
    if isinstance(texts, (list, tuple)) and all(isinstance(t, str) for t in texts):
        patterns = [_pattern(t, select) for t in texts]
        return lambda name, leaf: any(p.search(name) is not None for p in patterns)
    if callable(select):
        _check_predicate(select)
        return lambda name, leaf: bool(select(name, leaf))
    raise ArgumentTypeError(
        f"select={describe(select)} is not a selection: pass None (kernels), a regular "
        "expression, a list of them, or a predicate select(path, leaf) -> bool."
    )


def select_paths(params, select: Select = None) -> tuple[str, ...]:
    """The paths of the leaves of ``params`` that ``select`` picks, in tree order.

    Args:
      params: any pytree of arrays.
      select: None (every float leaf with >= 2 axes: kernels, not biases or norm scales), a
        regular expression searched in each path (``"kernel"``, ``"Dense_1/kernel$"``), a
        sequence of them (any may match), or a predicate ``select(path, leaf) -> bool``.

    Raises:
      ArgumentError: if nothing is selected (a run without fault sites would be fault-free), or
        ``select`` is not a valid regular expression; ArgumentTypeError: a predicate that does not
        take ``(path, leaf)``, or a ``select`` of another type.

    >>> select_paths({"dense": {"kernel": jnp.ones((3, 2)), "bias": jnp.ones(2)}})
    ('dense/kernel',)
    """
    matches = _matcher(select)
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    names = tuple(
        path_name(p)
        for p, leaf in leaves
        if hasattr(leaf, "shape") and hasattr(leaf, "dtype") and matches(path_name(p), leaf)
    )
    if not names:
        shown = [path_name(p) for p, _ in leaves][:12]
        raise ArgumentError(
            f"no fault site: select={select!r} picked none of the {len(leaves)} leaves of params "
            f"(looked for {_describe(select)}). Leaves: {shown}{' ...' if len(leaves) > 12 else ''}. "
            "Pass select= a regular expression or predicate that names the weights to fault."
        )
    return names


def _fault_leaf(fault: Fault, level, key: jax.Array, w: jax.Array, bits: int | None, name: str) -> jax.Array:
    """One faulty leaf, in ``w``'s dtype."""
    if bits is None or not uses_bits(fault.kind):  # variations act on the analogue value itself
        return _stored(apply_kind(fault, level, key, w, bits=None), w, fault, name)
    if jnp.issubdtype(w.dtype, jnp.integer):
        return _fault_integer_leaf(fault, level, key, w, bits, name)
    if bits == 1:
        # A binary cell stores the sign; the magnitude is the layer's scale, restored after.
        codes = jnp.where(w >= 0, 1, -1).astype(w.dtype)
        return (apply_kind(fault, level, key, codes, bits=1) * jnp.abs(w)).astype(w.dtype)
    codes, scale = quantize_symmetric(w, bits, axis=-1 if w.ndim >= 2 else None)
    faulty = apply_kind(fault, level, key, codes, bits=bits)
    # Only the faulted bits move a weight: what the k-bit code cannot represent is kept, so
    # level 0 returns ``w`` bit for bit.
    return (w + (faulty - codes).astype(w.dtype) * scale).astype(w.dtype)


def _fault_integer_leaf(fault: Fault, level, key: jax.Array, w: jax.Array, bits: int, name: str) -> jax.Array:
    """An integer leaf holds the stored codes themselves: its low ``bits`` bits are the cells."""
    width = jnp.iinfo(w.dtype).bits
    if bits > width:
        raise ArgumentError(
            f"bits={bits} is wider than the {w.dtype} leaf {name!r}, which holds {width}-bit codes: "
            f"pass bits={width} (its integer values are the stored codes) or fewer."
        )
    w32 = w.astype(jnp.int32)  # room for a flipped sign and for |-128|
    if bits == 1:
        codes = jnp.where(w32 >= 0, 1, -1).astype(jnp.int32)
        return _stored(apply_kind(fault, level, key, codes, bits=1) * jnp.abs(w32), w, fault, name)
    codes = fm._to_signed(fm._to_unsigned(w32, bits), bits, jnp.int32)
    # Values inside the k-bit range are their own codes (w' = fault(w)); higher bits stay as they were.
    return _stored(w32 + (apply_kind(fault, level, key, codes, bits=bits) - codes), w, fault, name)


def _stored(out: jax.Array, w: jax.Array, fault: Fault, name: str) -> jax.Array:
    """``out`` in ``w``'s dtype; an integer leaf saturates, and refuses floats it would round away."""
    if not jnp.issubdtype(w.dtype, jnp.integer):
        return out.astype(w.dtype)
    if not jnp.issubdtype(out.dtype, jnp.integer):
        raise ArgumentTypeError(
            f"Fault kind={kind_name(fault.kind)} gives floats for the {w.dtype} leaf {name!r}, which would round "
            f"the noise away: cast the weights to float first (params = jax.tree.map(lambda w: "
            f"w.astype(jnp.float32), params)), or fault the stored codes with a bit-level fault "
            f"(Fault('bit_flip', rate) with bits={jnp.iinfo(w.dtype).bits})."
        )
    have, want = jnp.iinfo(out.dtype), jnp.iinfo(w.dtype)
    return jnp.clip(out, max(have.min, want.min), min(have.max, want.max)).astype(w.dtype)


def _check_bits(bits) -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 1 <= bits <= fm.MAX_BITS:
        raise ArgumentError(
            f"bits={bits!r} is out of range: expected an integer in [1, {fm.MAX_BITS}] (1: binary "
            "cells storing the sign; k: k-bit two's-complement codes per output channel)."
        )
    return int(bits)


def check_faults_for_params(faults: Sequence[Fault], bits: int | None) -> int | None:
    """Validate faults that one chip step serves on a parameter pytree, and their shared ``bits``; returns ``bits``.

    ``bits`` must mean something for one of them at least: the stored representation of a
    bit-level or custom kind (a variation acts on the float weights and has no use for it).
    """
    for fault in faults:
        if not isinstance(fault, Fault):
            raise ArgumentTypeError(
                f"fault={describe(fault)} must be an invnorm_jax.faults.Fault, e.g. Fault('bit_flip', 0.1)."
            )
        if fault.site != "weights":
            raise ArgumentError(
                f"site={fault.site!r} needs the library's binary layers (the activation before sign()); "
                "a parameter pytree only has weights: use site='weights'."
            )
        if fault.kind in BIT_KINDS and bits is None:
            raise ArgumentError(
                f"Fault kind={fault.kind!r} acts on stored bits: pass bits=1 (binary cells: the sign flips, "
                "the magnitude stays) or bits=k (k-bit codes per output channel, scale restored)."
            )
    if bits is None:
        return None
    if not any(uses_bits(f.kind) for f in faults):
        kinds = ", ".join(kind_name(f.kind) for f in faults)
        raise ArgumentError(
            f"bits={bits!r} has no effect on Fault kind={kinds}: a variation acts on the float weights themselves "
            "(in units of each leaf's max |w|). Drop bits=; it names the stored representation of 'bit_flip', "
            "'stuck_at' and of fault models of your own."
        )
    return _check_bits(bits)


def check_fault_for_params(fault: Fault, bits: int | None) -> int | None:
    """Validate ``fault`` and ``bits`` for a parameter pytree; returns ``bits``."""
    return check_faults_for_params((fault,), bits)


def check_level_override(fault: Fault, level) -> None:
    """Fault's own checks on a concrete ``level=`` that overrides ``fault.level`` (traced: skipped)."""
    if level is None or isinstance(level, jax.core.Tracer):
        return
    try:
        dataclasses.replace(fault, level=level)
    except ArgumentTypeError as err:
        raise ArgumentTypeError(f"level={level!r} is not a number (it overrides fault.level): {err}") from None
    except ArgumentError as err:
        raise ArgumentError(f"level={level!r} is out of range (it overrides fault.level): {err}") from None


def inject(params, fault: Fault, chip_key: jax.Array, *, select: Select = None, bits: int | None = None, level=None):
    """A faulty copy of ``params``: one chip's realization of ``fault`` on the selected leaves.

    For a selected leaf ``w`` at path ``p``, with ``k = fold_in(chip_key, path_id(p))``:

    * variations (``additive``, ``multiplicative``, ``uniform``, ``drift``), and a custom kind
      without ``bits``: the fault model on ``w`` itself (additive sigma in units of ``max |w|``);
    * ``bits=1``: ``w' = fault(sign(w)) * |w|`` (a flipped cell negates the weight);
    * ``bits=k``: ``codes, s = quantize_symmetric(w, k)`` per output channel (last axis),
      ``w' = w + (fault(codes) - codes) * s``;
    * an integer leaf (int8 codes, say) is its own stored representation: with ``bits=k``
      its values are the k-bit codes, ``w' = fault(w)`` when they lie in the k-bit range
      (higher bits are kept otherwise), saturated at the dtype's range.

    The result keeps each leaf's dtype. A fault that gives floats for an integer leaf (a
    variation, or a custom kind returning floats) is refused rather than rounded back.

    Args:
      params: any pytree of arrays (linen variables, ``nnx.State``, a dict).
      fault: what to inject, e.g. ``Fault("bit_flip", 0.1)`` or ``Fault(my_fault, 0.1)``
        (:mod:`invnorm_jax.faults.kinds`); site ``"weights"``.
      chip_key: the chip's key (chip ``i`` of the simulator is ``chip_keys(key, n)[i]``).
      select: which leaves; see :func:`select_paths`. Default: kernels (float, >= 2 axes).
      bits: 1 or k for ``bit_flip`` / ``stuck_at`` (required) and custom kinds (optional: the
        representation they see); refused for the variations, which have no use for it.
      level: overrides ``fault.level``; may be traced (one compilation per sweep).

    Returns:
      A pytree of ``params``'s structure, shapes and dtypes; unselected leaves are the same
      arrays.

    Raises:
      ArgumentError: ``select`` picks no leaf or is a bad regular expression, a bit-level fault
        without ``bits``, ``bits`` for a variation or wider than an integer leaf, a level out of
        range. ArgumentTypeError: ``fault`` not a Fault, a predicate that does not take
        ``(path, leaf)``, floats for an integer leaf.

    >>> params = {"dense": {"kernel": jnp.ones((3, 2)), "bias": jnp.zeros(2)}}
    >>> faulty = inject(params, Fault("bit_flip", 1.0), jax.random.key(0), bits=1)
    >>> faulty["dense"]["kernel"].tolist(), faulty["dense"]["bias"].tolist()
    ([[-1.0, -1.0], [-1.0, -1.0], [-1.0, -1.0]], [0.0, 0.0])
    """
    bits = check_fault_for_params(fault, bits)
    check_level_override(fault, level)
    return inject_paths(params, fault, chip_key, select_paths(params, select), bits=bits, level=level)


def inject_paths(params, fault: Fault, chip_key: jax.Array, names: Sequence[str], *, bits: int | None, level=None):
    """:func:`inject` on the leaves named in ``names`` (exact paths; no checks).

    Each leaf draws from ``fold_in(chip_key, path_id(name))``, so a leaf's faults depend on its
    name, not on which other leaves are faulted.

    Args:
      params: any pytree of arrays.
      fault: what to inject.
      chip_key: the chip's key.
      names: the exact paths (:func:`path_name`) of the leaves to fault.
      bits: 1 or k, the stored representation for bit-level faults; None otherwise.
      level: overrides ``fault.level`` (may be traced).

    Returns:
      A pytree like ``params``.

    >>> params = {"a": jnp.ones(2), "b": jnp.ones(2)}
    >>> faulty = inject_paths(params, Fault("bit_flip", 1.0), jax.random.key(0), ["b"], bits=1)
    >>> faulty["a"].tolist(), faulty["b"].tolist()
    ([1.0, 1.0], [-1.0, -1.0])
    """
    level = fault.level if level is None else level
    wanted = set(names)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    out = []
    for path, leaf in leaves:
        name = path_name(path)
        if name in wanted:
            leaf = _fault_leaf(fault, level, jax.random.fold_in(chip_key, path_id(name)), jnp.asarray(leaf), bits, name)
        out.append(leaf)
    faulty = jax.tree_util.tree_unflatten(treedef, out)
    chex.assert_trees_all_equal_shapes_and_dtypes(faulty, params)
    return faulty


__all__ = ["inject", "inject_paths", "path_name", "select_paths"]
