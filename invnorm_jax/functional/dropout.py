"""MC dropout and MC spatial dropout, the baselines' Bayesian samplers (SpinDrop and
Spatial-SpinDrop), as pure functions with explicit keys.

Both are active at test time (Monte-Carlo dropout) and rescale the kept units by ``1/(1-p)``
as standard (inverted) dropout does, so that train- and test-time expectations match.
:func:`dropout_mask` is the bare keep mask, for dropout on a crossbar's input lines, where the
``1/(1-p)`` goes on the layer's output so that its binary operands stay in ``{-1, 0, +1}``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from invnorm_jax._checks import check_rate
from invnorm_jax.errors import ArgumentError
from invnorm_jax.functional.keys import is_key_batch


def _dropout(key: jax.Array, x: jax.Array, rate, mask_shape) -> jax.Array:
    check_rate(rate)
    keep = 1.0 - rate
    mask = jax.random.bernoulli(key, keep, mask_shape)
    # rate == 1 drops everything; guard the 1/keep rescale against 0/0.
    scale = jnp.where(keep > 0, 1.0 / jnp.maximum(keep, 1e-12), 0.0).astype(x.dtype)
    return jnp.where(mask, x * scale, jnp.zeros((), x.dtype))


def _mask(key: jax.Array, x: jax.Array, rate, mask_shape) -> jax.Array:
    check_rate(rate)
    return jax.random.bernoulli(key, 1.0 - rate, mask_shape).astype(x.dtype)


def _per_example(key: jax.Array, x: jax.Array, rate, mask_shape_of, fn=_dropout) -> jax.Array:
    """``fn`` (dropout or its mask) of ``x`` with one key per example (``key`` ``[batch]``) or one for the batch."""
    if not is_key_batch(key):
        return fn(key, x, rate, mask_shape_of(x))
    if key.shape[0] != x.shape[0]:
        raise ArgumentError(f"key holds {key.shape[0]} per-example keys but x has {x.shape[0]} examples.")
    # Each example alone, as a batch of one: its mask depends on its own key only.
    one = lambda k, xi: fn(k, xi[None], rate, mask_shape_of(xi[None]))[0]  # noqa: E731
    return jax.vmap(one)(key, x)


def _channel_shape(a) -> tuple[int, ...]:
    return (a.shape[0],) + (1,) * (a.ndim - 2) + (a.shape[-1],)


def mc_dropout(key: jax.Array, x: jax.Array, *, rate) -> jax.Array:
    """Element-wise dropout (SpinDrop's sampler), active at test time.

    .. math:: y = x \\odot m / (1 - p), \\quad m_j \\sim \\mathrm{Bernoulli}(1 - p) \\text{ per element}

    Args:
      key: one typed key, or a ``[batch]`` array of keys: one per example of ``x``.
      x: the input, ``[batch, ...]``.
      rate: the drop probability ``p`` in ``[0, 1]``.

    Returns:
      An array like ``x``: each element zero or ``x / (1 - p)``.

    Raises:
      ArgumentError: ``rate`` outside ``[0, 1]``.
      ValueError: a key array whose length is not the batch size.

    >>> x = jnp.ones((2, 3))
    >>> mc_dropout(jax.random.key(0), x, rate=0.0).tolist()
    [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
    >>> y = mc_dropout(jax.random.key(0), jnp.ones((1, 1000)), rate=0.5)
    >>> sorted(set(y.ravel().tolist()))  # dropped, or kept and scaled by 1/(1 - p)
    [0.0, 2.0]
    """
    return _per_example(key, x, rate, lambda a: a.shape)


def mc_spatial_dropout(key: jax.Array, x: jax.Array, *, rate) -> jax.Array:
    """Spatial dropout: whole channels (feature maps) are dropped, per example.

    .. math:: y_{b,\\ldots,c} = x_{b,\\ldots,c} \\, m_{b,c} / (1 - p), \\quad m_{b,c} \\sim \\mathrm{Bernoulli}(1 - p)

    The mask has shape ``[batch, 1, ..., 1, channels]``: one draw per example and channel,
    shared by every spatial position, as in Spatial-SpinDrop. For ``[batch, features]`` input
    it is element-wise dropout of whole features.

    Args:
      key: one typed key, or a ``[batch]`` array of keys: one per example of ``x``.
      x: the input, ``[batch, ..., channels]`` (at least 2-D).
      rate: the drop probability ``p`` in ``[0, 1]``.

    Returns:
      An array like ``x``.

    Raises:
      ValueError: ``x`` with fewer than two axes.

    >>> y = mc_spatial_dropout(jax.random.key(0), jnp.ones((2, 4, 4, 8)), rate=0.5)
    >>> # every feature map is all zero or all 2: one draw per example and channel
    >>> bool(jnp.all(y.min(axis=(1, 2)) == y.max(axis=(1, 2))))
    True
    """
    if x.ndim < 2:
        raise ArgumentError(f"x.shape={x.shape}: expected [batch, ..., channels].")
    return _per_example(key, x, rate, _channel_shape)


def dropout_mask(key: jax.Array, x: jax.Array, *, rate, spatial: bool = False) -> jax.Array:
    """The keep mask of dropout on ``x``, 1 (kept) or 0 (dropped), without any rescaling.

    .. math:: m_j \\sim \\mathrm{Bernoulli}(1 - p)

    Element-wise (shape of ``x``), or with ``spatial=True`` one draw per example and channel
    (shape ``[batch, 1, ..., 1, channels]``, broadcast over the spatial axes). ``x * m`` keeps
    ``x``'s values exactly (±1 inputs stay in ``{-1, 0, +1}``); whoever applies it rescales by
    ``1 / (1 - p)`` where it sees fit (a crossbar layer: on its output).

    Args:
      key: one typed key, or a ``[batch]`` array of keys: one per example of ``x``.
      x: the input the mask is for, ``[batch, ..., channels]`` (at least 2-D).
      rate: the drop probability ``p`` in ``[0, 1]``.
      spatial: one draw per channel instead of per element.

    Returns:
      The mask in ``x``'s dtype.

    Raises:
      ArgumentError: ``rate`` outside ``[0, 1]``.
      ValueError: ``x`` with fewer than two axes, or a key array whose length is not the batch size.

    >>> m = dropout_mask(jax.random.key(0), jnp.ones((2, 4, 4, 3)), rate=0.5, spatial=True)
    >>> m.shape, sorted(set(m.ravel().tolist()))
    ((2, 1, 1, 3), [0.0, 1.0])
    """
    if x.ndim < 2:
        raise ArgumentError(f"x.shape={x.shape}: expected [batch, ..., channels].")
    return _per_example(key, x, rate, _channel_shape if spatial else (lambda a: a.shape), fn=_mask)
