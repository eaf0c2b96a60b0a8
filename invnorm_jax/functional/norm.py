"""Inverted normalization and affine dropout, as pure ``jax.numpy`` functions.

The method of the paper in two functions:

* :func:`inverted_norm` applies the affine transform *first* and normalizes after it,
  ``y = normalize(gamma * x + beta)``, with nothing after the normalization;
* :func:`affine_dropout` is its Bayesian sampler: with probability ``rate`` gamma is dropped
  to one and beta to zero, independently, with no ``1/(1-rate)`` rescaling.

Both take explicit keys, and are safe under ``jit`` and ``vmap``.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
from einops import rearrange

from invnorm_jax._checks import check_choice, check_rate
from invnorm_jax.errors import ArgumentError
from invnorm_jax.functional.keys import is_key_batch
from invnorm_jax.functional.stats import standardize

MODES = ("vector", "element")


def _check_affine_shapes(x_features: int | None, scale: jax.Array, bias: jax.Array, batch: int | None) -> None:
    if scale.shape != bias.shape:
        raise ArgumentError(f"scale.shape={scale.shape} and bias.shape={bias.shape} must be equal.")
    if scale.ndim not in (1, 2):
        raise ArgumentError(
            f"scale.shape={scale.shape} must be (features,) or (batch, features) for per-example draws."
        )
    if x_features is not None and scale.shape[-1] != x_features:
        raise ArgumentError(
            f"scale/bias have {scale.shape[-1]} features but x has {x_features} channels (last axis); they must match."
        )
    if scale.ndim == 2 and batch is not None and scale.shape[0] != batch:
        raise ArgumentError(f"per-example scale.shape={scale.shape} must have batch size {batch} on axis 0.")


def check_groups(num_groups, channels: int) -> None:
    if num_groups is None:
        return
    if not isinstance(num_groups, int) or isinstance(num_groups, bool) or num_groups < 1:
        raise ArgumentError(f"num_groups={num_groups!r} must be a positive integer or None (per instance).")
    if channels % num_groups:
        divisors = [d for d in range(1, channels + 1) if channels % d == 0]
        raise ArgumentError(
            f"num_groups={num_groups} does not divide the {channels} channels; allowed values: {divisors}."
        )


def _broadcast_affine(p: jax.Array, x: jax.Array) -> jax.Array:
    """(C,) broadcasts as is; (B, C) becomes (B, 1, ..., 1, C) to meet ``x``."""
    if p.ndim == 2:
        return p.reshape(p.shape[:1] + (1,) * (x.ndim - 2) + p.shape[1:])
    return p


def _stats_dtype(dtype) -> jnp.dtype:
    """float32 at least: bfloat16/float16 statistics lose the variance of nearby values."""
    return jnp.promote_types(dtype, jnp.float32)


def normalize(y: jax.Array, *, num_groups: int | None = None, eps: float = 1e-5, dtype=None) -> jax.Array:
    """Zero-mean, unit-variance ``y`` per instance, or per group of channels.

    ``(y - mean) / sqrt(var + eps)`` with statistics over every axis but the batch axis 0
    (``num_groups=None``), or over the spatial axes and each of ``num_groups`` contiguous groups
    of the last (channel) axis. Statistics are computed in float32 (or wider); the result has
    ``dtype`` (default: ``y``'s dtype).

    Defined at every finite magnitude: an instance (group) that is constant normalizes to
    exactly 0, and one of magnitude 1e30 or 1e-30 to what float64 would give (scaled by a power
    of two before squaring; see :mod:`invnorm_jax.functional.stats`).

    Raises:
      ValueError: ``y`` with fewer than two axes, or ``num_groups`` not dividing the channels.

    >>> y = normalize(jnp.arange(8.0).reshape(1, 2, 4), num_groups=2)
    >>> import numpy as np
    >>> # group 0 holds channels 0-1 at both positions (0, 1, 4, 5): mean 2.5, std 2.06
    >>> np.round(np.asarray(y, np.float64), 3).tolist()
    [[[-1.213, -0.728, -1.213, -0.728], [0.728, 1.213, 0.728, 1.213]]]
    """
    if y.ndim < 2:
        raise ArgumentError(f"x.shape={y.shape}: expected at least 2 axes, [batch, ..., channels].")
    channels = y.shape[-1]
    check_groups(num_groups, channels)
    groups = 1 if num_groups is None else num_groups
    # Channels split into (group, channel-in-group); per instance is the one-group case.
    grouped = rearrange(y.astype(_stats_dtype(y.dtype)), "b ... (g c) -> b ... g c", g=groups)
    # Per instance: every axis but the batch; per group: the spatial axes and the channels
    # of the group, not the group axis.
    if num_groups is None:
        axes = tuple(range(1, grouped.ndim))
    else:
        axes = tuple(range(1, grouped.ndim - 2)) + (grouped.ndim - 1,)
    # One pass for the statistics, on values shifted by each slice's first element (accurate
    # when |mean| >> std, unlike a plain E[y^2]-m^2); redone after an exact power-of-two rescale
    # where the squares overflowed or underflowed, so that 1e30 and 1e-30 standardize too.
    out = rearrange(standardize(grouped, axes, eps), "b ... g c -> b ... (g c)")
    return out.astype(y.dtype if dtype is None else dtype)


def inverted_norm(
    x: jax.Array, scale: jax.Array, bias: jax.Array, *, num_groups: int | None = None, eps: float = 1e-5, dtype=None
) -> jax.Array:
    """Inverted normalization: the affine transform first, then normalization.

    .. math:: y = \\frac{\\gamma x + \\beta - \\mu}{\\sqrt{\\sigma^2 + \\epsilon}}

    where mu and sigma^2 are the mean and variance of ``gamma * x + beta`` over every axis but
    the batch axis (``num_groups=None``, LayerNorm-style, per instance), or over the spatial
    axes and each group of ``C / num_groups`` channels (GroupNorm-style). Channels last.

    Args:
      x: ``[batch, ..., channels]``.
      scale: gamma, ``(channels,)`` or ``(batch, channels)`` for per-example draws.
      bias: beta, the same shape as ``scale``.
      num_groups: None for per-instance statistics, else a divisor of ``channels``.
      eps: added to the variance.
      dtype: dtype of the result; default ``x``'s. The affine transform and the statistics are
        computed in float32 (or wider) whatever the input's dtype.

    Returns:
      An array of ``x``'s shape, in ``dtype`` (default ``x``'s dtype).

    Raises:
      ValueError: ``x`` with fewer than two axes, ``scale``/``bias`` of the wrong shape, or
        ``num_groups`` not dividing the channels.

    >>> x = jnp.arange(6.0).reshape(1, 2, 3)
    >>> y = inverted_norm(x, jnp.ones(3), jnp.zeros(3))
    >>> bool(jnp.allclose(y.mean(), 0.0, atol=1e-6))
    True
    """
    if x.ndim < 2:
        raise ArgumentError(f"x.shape={x.shape}: expected at least 2 axes, [batch, ..., channels].")
    _check_affine_shapes(x.shape[-1], scale, bias, x.shape[0])
    check_groups(num_groups, x.shape[-1])
    compute = _stats_dtype(jnp.result_type(x.dtype, scale.dtype))
    xc = x.astype(compute)
    y = _broadcast_affine(scale.astype(compute), xc) * xc + _broadcast_affine(bias.astype(compute), xc)
    out = normalize(y, num_groups=num_groups, eps=eps, dtype=x.dtype if dtype is None else dtype)
    chex.assert_shape(out, x.shape)
    return out


def affine_dropout(
    key: jax.Array, scale: jax.Array, bias: jax.Array, *, rate, mode: str = "vector", batch_size: int | None = None
) -> tuple[jax.Array, jax.Array]:
    """Stochastic affine transformation: drop gamma to one and beta to zero.

    .. math:: \\tilde\\gamma = m_\\gamma \\gamma + (1 - m_\\gamma), \\quad
              \\tilde\\beta = m_\\beta \\beta, \\quad m \\sim \\mathrm{Bernoulli}(1 - p)

    ``m_gamma`` and ``m_beta`` are drawn independently. ``mode="vector"`` (the paper's) draws
    one Bernoulli for the whole gamma vector and one for the whole beta vector;
    ``mode="element"`` draws one per element. No ``1/(1-p)`` rescaling: a dropped gamma is the
    identity scale, a dropped beta no shift.

    Args:
      key: a typed PRNG key, or a ``[batch]`` array of them: one independent draw per example
        (each example's draw depends on its own key only, not on the rest of the batch).
      scale: gamma, shape ``(features,)``.
      bias: beta, the same shape.
      rate: drop probability p in [0, 1] (may be traced).
      mode: ``"vector"`` or ``"element"``.
      batch_size: if given, independent draws per example from the one ``key``: the results
        are ``(batch_size, features)``, ready for :func:`inverted_norm`. Implied by a
        ``[batch]`` array of keys.

    Returns:
      ``(scale, bias)`` after dropout.

    Raises:
      ArgumentError: ``rate`` outside ``[0, 1]`` or an unknown ``mode``.
      ValueError: ``scale`` not 1-D, ``bias`` of another shape, or a ``batch_size`` that
        disagrees with the number of keys.

    >>> s, b = affine_dropout(jax.random.key(0), jnp.full(4, 2.0), jnp.ones(4), rate=1.0)
    >>> s.tolist(), b.tolist()
    ([1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0])
    """
    check_rate(rate)
    check_choice(mode, "mode", MODES)
    if scale.ndim != 1:
        raise ArgumentError(f"scale.shape={scale.shape} must be (features,); use batch_size= for per-example draws.")
    _check_affine_shapes(None, scale, bias, None)
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ArgumentError(f"batch_size={batch_size!r} must be a positive integer or None.")
    if is_key_batch(key):
        if batch_size not in (None, key.shape[0]):
            raise ArgumentError(f"batch_size={batch_size} but key holds {key.shape[0]} per-example keys.")
        draw = lambda k: affine_dropout(k, scale, bias, rate=rate, mode=mode)  # noqa: E731
        new_scale, new_bias = jax.vmap(draw)(key)
        chex.assert_shape([new_scale, new_bias], (key.shape[0],) + scale.shape)
        return new_scale, new_bias
    lead = () if batch_size is None else (batch_size,)
    mask_shape = lead + ((1,) if mode == "vector" else scale.shape)
    key_scale, key_bias = jax.random.split(key)
    keep_scale = jax.random.bernoulli(key_scale, 1.0 - rate, mask_shape)
    keep_bias = jax.random.bernoulli(key_bias, 1.0 - rate, mask_shape)
    full = lead + scale.shape
    new_scale = jnp.where(keep_scale, jnp.broadcast_to(scale, full), jnp.ones((), scale.dtype))
    new_bias = jnp.where(keep_bias, jnp.broadcast_to(bias, full), jnp.zeros((), bias.dtype))
    return new_scale, new_bias
