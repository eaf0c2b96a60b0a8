"""MC dropout and MC spatial dropout, the baselines' Bayesian samplers (SpinDrop and
Spatial-SpinDrop), as pure functions with explicit keys.

Both are active at test time (Monte-Carlo dropout) and rescale the kept units by ``1/(1-p)``
as standard (inverted) dropout does, so that train- and test-time expectations match.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from invnorm_jax._checks import check_rate


def _dropout(key: jax.Array, x: jax.Array, rate, mask_shape) -> jax.Array:
    check_rate(rate)
    keep = 1.0 - rate
    mask = jax.random.bernoulli(key, keep, mask_shape)
    # rate == 1 drops everything; guard the 1/keep rescale against 0/0.
    scale = jnp.where(keep > 0, 1.0 / jnp.maximum(keep, 1e-12), 0.0).astype(x.dtype)
    return jnp.where(mask, x * scale, jnp.zeros((), x.dtype))


def mc_dropout(key: jax.Array, x: jax.Array, *, rate) -> jax.Array:
    """Element-wise dropout: ``x * m / (1 - p)``, ``m ~ Bernoulli(1 - p)`` per element.

    >>> x = jnp.ones((2, 3))
    >>> mc_dropout(jax.random.key(0), x, rate=0.0).tolist()
    [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
    """
    return _dropout(key, x, rate, x.shape)


def mc_spatial_dropout(key: jax.Array, x: jax.Array, *, rate) -> jax.Array:
    """Spatial dropout: whole channels (feature maps) are dropped, per example.

    The mask has shape ``[batch, 1, ..., 1, channels]``: one draw per example and channel,
    shared by every spatial position, as in Spatial-SpinDrop. For ``[batch, features]`` input
    it is element-wise dropout of whole features.
    """
    if x.ndim < 2:
        raise ValueError(f"x.shape={x.shape}: expected [batch, ..., channels].")
    mask_shape = (x.shape[0],) + (1,) * (x.ndim - 2) + (x.shape[-1],)
    return _dropout(key, x, rate, mask_shape)
