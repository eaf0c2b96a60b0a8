"""Keys by identity: one key per example, one per layer, whatever the batch they sit in.

A forward pass takes either one typed key or a ``[batch]`` array of typed keys, one per
example. A single key stands for the per-example keys ``fold_in(key, i)``, ``i`` the example's
position in the batch; the chip simulator passes ``fold_in(sample_key, i)`` with ``i`` the
example's index in the whole input, so an example's random draws never depend on the slice it
was evaluated in. A stochastic layer folds its own id (from its path in the model) into every
example's key, so two layers never share a draw.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from invnorm_jax.errors import ArgumentError


def is_key_batch(key: jax.Array) -> bool:
    """Whether ``key`` holds one key per example (typed ``[batch]`` or raw ``[batch, 2]``).

    >>> is_key_batch(jax.random.key(0)), is_key_batch(jax.random.split(jax.random.key(0), 4))
    (False, True)
    """
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key.ndim == 1
    return key.ndim == 2


def example_keys(key: jax.Array, batch_size: int, *, offset=0) -> jax.Array:
    """One key per example: ``fold_in(key, offset + i)`` for ``i < batch_size``.

    A ``[batch_size]`` array of keys is returned as it is (the caller already drew per example).

    Args:
      key: one typed key, or ``batch_size`` of them.
      batch_size: examples in the batch.
      offset: index of the batch's first example in the whole input (may be traced).

    Returns:
      A ``[batch_size]`` array of keys.

    >>> keys = example_keys(jax.random.key(0), 3)
    >>> keys.shape
    (3,)
    >>> bool(jnp.all(jax.random.key_data(example_keys(keys, 3)) == jax.random.key_data(keys)))
    True
    """
    if is_key_batch(key):
        if key.shape[0] != batch_size:
            raise ArgumentError(
                f"key holds {key.shape[0]} per-example keys but the batch has {batch_size} examples; "
                "pass one key, or exactly one per example."
            )
        return key
    index = jnp.asarray(offset, jnp.uint32) + jnp.arange(batch_size, dtype=jnp.uint32)
    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, index)


def fold_in_each(keys: jax.Array, data) -> jax.Array:
    """``fold_in(k, data)`` for one key or for every key of a ``[batch]`` array.

    >>> keys = jax.random.split(jax.random.key(0), 3)
    >>> folded = fold_in_each(keys, 7)
    >>> same = jax.random.key_data(folded[1]) == jax.random.key_data(jax.random.fold_in(keys[1], 7))
    >>> folded.shape, bool(same.all())
    ((3,), True)
    """
    if is_key_batch(keys):
        return jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, data)
    return jax.random.fold_in(keys, data)


__all__ = ["example_keys", "fold_in_each", "is_key_batch"]
