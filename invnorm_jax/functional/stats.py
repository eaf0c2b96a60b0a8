"""Centring and scaling for the standardizations (the inverted norm, Libra-PB), robust at any
magnitude.

Two float hazards, both removed exactly rather than with a tolerance:

* the float mean of ``n`` equal numbers need not equal them, so a constant slice would centre
  to rounding noise that ``1/sqrt(var + eps)`` then amplifies; :func:`centre` subtracts each
  slice's first element before the mean, which makes a constant slice exactly zero;
* squares overflow float32 from ``|y| ~ 2e19`` and underflow below ``1e-19``;
  :func:`power_of_two_rescale` scales each slice by a power of two (exact) so that its
  largest magnitude lies in ``[1, 2)`` before anything is squared.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def centre(y: jax.Array, axes: tuple[int, ...]) -> jax.Array:
    """``y - mean(y)`` over ``axes``; exactly zero wherever a slice is constant.

    Each slice is shifted by its first element first (which also keeps the mean accurate when
    ``|mean| >> std``). The shift cancels in the result, so it carries no gradient.

    >>> centre(jnp.full((1, 3), 0.1), (1,)).tolist()  # the float mean of three 0.1s is not 0.1
    [[0.0, 0.0, 0.0]]
    """
    first = y[tuple(slice(0, 1) if a in axes else slice(None) for a in range(y.ndim))]
    shifted = y - jax.lax.stop_gradient(first)
    return shifted - jnp.mean(shifted, axis=axes, keepdims=True)


def power_of_two_rescale(centred: jax.Array, axes: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
    """``(centred * f, f)`` with ``f`` a power of two per slice that brings its largest
    magnitude into ``[1, 2)`` (``f = 1`` for an all-zero slice; ``f`` capped so that it stays a
    normal float). ``centred`` must be float32 or float64.

    A standardization ``c / sqrt(mean(c**2) + eps)`` equals ``r / sqrt(mean(r**2) + eps f**2)``
    with ``r = c f``, and the scaling is exact, so callers lose nothing; ``f`` is a constant
    of the slice (no gradient), which is exact for the same reason.

    >>> scaled, f = power_of_two_rescale(jnp.array([[3e20, -1e20]]), (1,))
    >>> scaled.tolist(), bool(jnp.all(scaled / f == jnp.array([[3e20, -1e20]])))
    ([[1.0164..., -0.3388...]], True)
    """
    top = jax.lax.stop_gradient(jnp.max(jnp.abs(centred), axis=axes, keepdims=True))
    info = jnp.finfo(top.dtype)
    int_dtype = jnp.int32 if info.bits == 32 else jnp.int64
    exponent_bits = (1 << (info.bits - 1)) - (1 << info.nmant)
    # The exponent bits alone: the largest power of two <= top (0 for a zero or subnormal top).
    floor = jax.lax.bitcast_convert_type(jax.lax.bitcast_convert_type(top, int_dtype) & exponent_bits, top.dtype)
    cap = 2.0 ** (info.maxexp - 2)  # 1 / cap is still a normal number
    factor = jnp.where(floor > 0, 1.0 / jnp.minimum(floor, cap), 1.0).astype(top.dtype)
    return centred * factor, factor


# One compiled program per shape when called eagerly (a dozen small ops otherwise); inlined
# into any enclosing jit.
@functools.partial(jax.jit, static_argnames=("axes",))
def standardize(y: jax.Array, axes: tuple[int, ...], eps) -> jax.Array:
    """``(y - mean) / sqrt(var + eps)`` over ``axes`` (population variance), at any magnitude.

    A constant slice gives exactly 0, also with ``eps = 0`` (never 0/0, and a finite gradient).
    ``y`` must be float32 or float64: cast narrower dtypes first.

    >>> import numpy as np
    >>> y = standardize(jnp.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]]), (1,), 0.0)
    >>> np.round(np.asarray(y, np.float64), 4).tolist()
    [[-1.2247, 0.0, 1.2247], [0.0, 0.0, 0.0]]
    """
    scaled, factor = power_of_two_rescale(centre(y, axes), axes)
    # (eps f) f, not eps f**2: f**2 overflows for tiny slices, and 0 * inf would be NaN.
    var = jnp.mean(jnp.square(scaled), axis=axes, keepdims=True) + eps * factor * factor
    # Double-where: rsqrt's gradient at 0 is infinite, so never evaluate it there.
    positive = var > 0
    return jnp.where(positive, scaled * jax.lax.rsqrt(jnp.where(positive, var, 1.0)), 0.0)


__all__ = ["centre", "power_of_two_rescale", "standardize"]
