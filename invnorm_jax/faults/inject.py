"""Faults for any JAX model: a faulty copy of a parameter pytree.

:func:`inject` needs nothing from the model but its parameters: a Flax linen ``variables``
dict, the ``nnx.State`` of ``nnx.split(model)``, or any pytree of arrays. It picks the leaves to
fault (by path or predicate), makes the deployed representation a fault model needs on the
fly (sign and magnitude for binary cells, k-bit codes and their scale for k-bit cells), faults
it and restores the scale. Leaf ``p`` of chip ``c`` is drawn from
``fold_in(chip_key, path_id(p))``: the same leaf of the same chip gets the same faults, and
adding a parameter elsewhere leaves them unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np

from invnorm_jax.faults.context import Fault, _apply_kind
from invnorm_jax.faults.models import _check_bits
from invnorm_jax.functional.quantize import quantize_symmetric
from invnorm_jax.nn.keys import path_id

Select = str | Sequence[str] | Callable[[str, Any], bool] | None
BIT_KINDS = ("bit_flip", "stuck_at")


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


def _matches(select: Select, name: str, leaf) -> bool:
    if not hasattr(leaf, "shape") or not hasattr(leaf, "dtype"):
        return False
    if select is None:
        return jnp.issubdtype(leaf.dtype, jnp.floating) and np.ndim(leaf) >= 2
    if isinstance(select, str):
        return re.search(select, name) is not None
    if callable(select):
        return bool(select(name, leaf))
    return any(re.search(s, name) is not None for s in select)


def select_paths(params, select: Select = None) -> tuple[str, ...]:
    """The paths of the leaves of ``params`` that ``select`` picks, in tree order.

    Args:
      params: any pytree of arrays.
      select: None (every float leaf with >= 2 axes: kernels, not biases or norm scales), a
        regular expression searched in each path (``"kernel"``, ``"Dense_1/kernel$"``), a
        sequence of them (any may match), or a predicate ``select(path, leaf) -> bool``.

    Raises:
      ValueError: if nothing is selected: a run without fault sites would be fault-free.

    >>> select_paths({"dense": {"kernel": jnp.ones((3, 2)), "bias": jnp.ones(2)}})
    ('dense/kernel',)
    """
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    names = tuple(path_name(p) for p, leaf in leaves if _matches(select, path_name(p), leaf))
    if not names:
        shown = [path_name(p) for p, _ in leaves][:12]
        raise ValueError(
            f"no fault site: select={select!r} picked none of the {len(leaves)} leaves of params "
            f"(looked for {_describe(select)}). Leaves: {shown}{' ...' if len(leaves) > 12 else ''}. "
            "Pass select= a regular expression or predicate that names the weights to fault."
        )
    return names


def _fault_leaf(fault: Fault, level, key: jax.Array, w: jax.Array, bits: int | None) -> jax.Array:
    """One faulty leaf, in ``w``'s dtype."""
    if fault.kind not in BIT_KINDS:  # variations act on the analogue value itself
        return _apply_kind(fault, level, key, w, bits=None).astype(w.dtype)
    if bits == 1:
        # A binary cell stores the sign; the magnitude is the layer's scale, restored after.
        codes = jnp.where(w >= 0, 1, -1).astype(w.dtype)
        return (_apply_kind(fault, level, key, codes, bits=1) * jnp.abs(w)).astype(w.dtype)
    codes, scale = quantize_symmetric(w, bits, axis=-1 if w.ndim >= 2 else None)
    faulty = _apply_kind(fault, level, key, codes, bits=bits)
    # Only the faulted bits move a weight: what the k-bit code cannot represent is kept, so
    # level 0 returns ``w`` bit for bit.
    return (w + (faulty - codes).astype(w.dtype) * scale).astype(w.dtype)


def check_fault_for_params(fault: Fault, bits: int | None) -> int | None:
    """Validate ``fault`` and ``bits`` for a parameter pytree; returns ``bits``."""
    if not isinstance(fault, Fault):
        raise TypeError(f"fault={fault!r} must be an invnorm_jax.faults.Fault, e.g. Fault('bit_flip', 0.1).")
    if fault.site != "weights":
        raise ValueError(
            f"site={fault.site!r} needs the library's binary layers (the activation before sign()); "
            "a parameter pytree only has weights: use site='weights'."
        )
    if fault.kind in BIT_KINDS:
        if bits is None:
            raise ValueError(
                f"Fault kind={fault.kind!r} acts on stored bits: pass bits=1 (binary cells: the sign flips, "
                "the magnitude stays) or bits=k (k-bit codes per output channel, scale restored)."
            )
        return _check_bits(bits)
    return bits


def inject(params, fault: Fault, chip_key: jax.Array, *, select: Select = None, bits: int | None = None,
           level=None):
    """A faulty copy of ``params``: one chip's realization of ``fault`` on the selected leaves.

    For a selected leaf ``w`` at path ``p``, with ``k = fold_in(chip_key, path_id(p))``:

    * variations (``additive``, ``multiplicative``, ``uniform``): the fault model on ``w``
      (additive sigma in units of ``max |w|``);
    * ``bits=1``: ``w' = fault(sign(w)) * |w|`` (a flipped cell negates the weight);
    * ``bits=k``: ``codes, s = quantize_symmetric(w, k)`` per output channel (last axis),
      ``w' = w + (fault(codes) - codes) * s``.

    Args:
      params: any pytree of arrays (linen variables, ``nnx.State``, a dict).
      fault: what to inject, e.g. ``Fault("bit_flip", 0.1)``; site ``"weights"``.
      chip_key: the chip's key (chip ``i`` of the simulator is ``chip_keys(key, n)[i]``).
      select: which leaves; see :func:`select_paths`. Default: kernels (float, >= 2 axes).
      bits: 1 or k for ``bit_flip`` / ``stuck_at``; unused by the variations.
      level: overrides ``fault.level``; may be traced (one compilation per sweep).

    Returns:
      A pytree of ``params``'s structure, shapes and dtypes; unselected leaves are the same
      arrays.

    Raises:
      ValueError: if ``select`` picks no leaf, or a bit-level fault has no ``bits``.

    >>> params = {"dense": {"kernel": jnp.ones((3, 2)), "bias": jnp.zeros(2)}}
    >>> faulty = inject(params, Fault("bit_flip", 1.0), jax.random.key(0), bits=1)
    >>> faulty["dense"]["kernel"].tolist(), faulty["dense"]["bias"].tolist()
    ([[-1.0, -1.0], [-1.0, -1.0], [-1.0, -1.0]], [0.0, 0.0])
    """
    bits = check_fault_for_params(fault, bits)
    return inject_paths(params, fault, chip_key, select_paths(params, select), bits=bits, level=level)


def inject_paths(params, fault: Fault, chip_key: jax.Array, names: Sequence[str], *, bits: int | None,
                 level=None):
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
            leaf = _fault_leaf(fault, level, jax.random.fold_in(chip_key, path_id(name)), jnp.asarray(leaf), bits)
        out.append(leaf)
    faulty = jax.tree_util.tree_unflatten(treedef, out)
    chex.assert_trees_all_equal_shapes_and_dtypes(faulty, params)
    return faulty


__all__ = ["inject", "inject_paths", "path_name", "select_paths"]
