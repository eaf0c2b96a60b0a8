"""The outputs of a chip simulation: any pytree of per-example arrays, evaluated slice by slice.

:func:`~invnorm_jax.faults.simulate_chips` evaluates ``x`` in slices of ``batch_size`` examples
(the last one padded, so that every slice runs one compiled step) and joins them along the
example axis. That is exact only for leaves whose first axis is the example: each output leaf of
``apply_fn`` (``[batch, ...]``), each leaf of a ``reduce_fn``'s result, each leaf of
``labels``. These helpers check that (naming the leaf that breaks it, while the step is traced),
pad a slice, and cut the padding chips and examples off a call's outputs.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from invnorm_jax._checks import describe
from invnorm_jax.errors import ArgumentError, ArgumentTypeError

__all__ = ["check_examples", "check_reduce_args", "join_slices", "slice_examples", "trim"]


def _leaf_name(who: str, path) -> str:
    return who + jax.tree_util.keystr(path)


def check_examples(tree, n: int, who: str, hint: str = ""):
    """Raise unless every leaf of ``tree`` is an array whose first axis holds the ``n`` examples.

    Returns ``tree``. ``who`` names it in the message (``"apply_fn's output"``), each leaf by
    its path.

    >>> check_examples({"logits": jnp.zeros((3, 2))}, 3, "outputs")["logits"].shape
    (3, 2)
    >>> check_examples({"logits": jnp.zeros((3, 2)), "loss": jnp.zeros(())}, 3, "outputs")
    Traceback (most recent call last):
    ...
    invnorm_jax.errors.ArgumentError: outputs['loss'] has shape (): every leaf must have the examples on its first axis, [3, ...].
    """
    leaves = jax.tree_util.tree_leaves_with_path(tree)
    if not leaves:
        raise ArgumentError(f"{who} is {describe(tree)}, an empty pytree: expected arrays [{n}, ...].{hint}")
    for path, leaf in leaves:
        shape = getattr(leaf, "shape", None)
        if shape is None:
            raise ArgumentTypeError(
                f"{_leaf_name(who, path)} is {describe(leaf)}, not an array: expected arrays [{n}, ...].{hint}"
            )
        if len(shape) == 0 or shape[0] != n:
            raise ArgumentError(
                f"{_leaf_name(who, path)} has shape {tuple(shape)}: every leaf must have the examples "
                f"on its first axis, [{n}, ...].{hint}"
            )
    return tree


def check_reduce_args(reduce_fn, labels, n: int) -> None:
    """Raise unless ``reduce_fn`` is None or callable, and ``labels`` (only with ``reduce_fn``)
    has one row per example of ``x``.

    >>> check_reduce_args(lambda out, y: out, jnp.zeros(4), 4)
    """
    if reduce_fn is not None and not callable(reduce_fn):
        raise ArgumentTypeError(
            f"reduce_fn={describe(reduce_fn)} must be a function reduce_fn(outputs, labels) of "
            "one chip's [samples, batch, ...] outputs, or None."
        )
    if labels is None:
        return
    if reduce_fn is None:
        raise ArgumentError(
            "labels= is passed to reduce_fn(outputs, labels) only, and reduce_fn is None: pass "
            "reduce_fn=, or compare the outputs with the labels yourself."
        )
    check_examples(labels, n, "labels", " Labels are sliced with x: one row per example of x.")


def slice_examples(tree, start: int, size: int):
    """Examples ``start .. start + size`` of each leaf; a short last slice is filled up to ``size``
    by repeating its last row (every slice one shape: one compiled step).

    >>> slice_examples(jnp.arange(5), 3, 4).tolist()
    [3, 4, 4, 4]
    """

    def cut(a):
        a = a[start : start + size]
        if a.shape[0] == size:
            return a
        return jnp.concatenate([a, jnp.broadcast_to(a[-1:], (size - a.shape[0], *a.shape[1:]))])

    return None if tree is None else jax.tree.map(cut, tree)


@functools.lru_cache(maxsize=16)
def _sharded_trim(sharding):
    # Jitted, so that the rows kept land where ``sharding`` says (split over the chip axis)
    # rather than gathered whole onto every device, as an eager slice of a sharded array is.
    return jax.jit(_trim, static_argnums=(1, 2, 3), out_shardings=sharding)


def _trim(outs, num_chips: int, n: int, example_axis: int):
    joined = outs[0] if len(outs) == 1 else jax.tree.map(lambda *o: jnp.concatenate(o), *outs)
    return jax.tree.map(
        lambda o: jax.lax.slice_in_dim(jax.lax.slice_in_dim(o, 0, num_chips), 0, n, axis=example_axis), joined
    )


def trim(outs: list, num_chips: int, n: int, example_axis: int, sharding=None):
    """The calls' outputs ``outs`` joined along the chip axis, without the padding chips (beyond
    ``num_chips``) and padding examples (beyond ``n`` on ``example_axis``); placed by
    ``sharding`` if given.

    >>> trim([jnp.ones((4, 1, 3)), jnp.ones((4, 1, 3))], 6, 2, 2).shape
    (6, 1, 2)
    """
    if sharding is None:
        return _trim(outs, num_chips, n, example_axis)
    return _sharded_trim(sharding)(outs, num_chips, n, example_axis)


def join_slices(slices: list, example_axis: int):
    """The slices' outputs joined along the example axis (each leaf).

    >>> join_slices([{"a": jnp.ones((2, 1, 3))}, {"a": jnp.ones((2, 1, 1))}], 2)["a"].shape
    (2, 1, 4)
    """
    if len(slices) == 1:
        return slices[0]
    return jax.tree.map(lambda *o: jnp.concatenate(o, axis=example_axis), *slices)
