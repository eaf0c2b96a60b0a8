"""Centring and scaling for the standardizations (the inverted norm, Libra-PB), robust at any
magnitude.

Two float hazards, both removed exactly rather than with a tolerance:

* the float mean of ``n`` equal numbers need not equal them, so a constant slice would centre
  to rounding noise that ``1/sqrt(var + eps)`` then amplifies; :func:`centre` subtracts each
  slice's first element before the mean, which makes a constant slice exactly zero;
* squares overflow float32 from ``|y| ~ 2e19`` and underflow below ``1e-19``;
  :func:`power_of_two_rescale` scales each slice by a power of two (exact) so that its
  largest magnitude lies in ``[1, 2)`` before anything is squared.

:func:`standardize` pays for the second only where it is needed: one pass over the shifted
values gives the sum and the sum of squares, and a call whose sums of squares overflowed or
underflowed is redone on rescaled values.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp


def _shift_by_first(y: jax.Array, axes: tuple[int, ...]) -> jax.Array:
    """``y`` less each slice's first element (a constant of the slice: no gradient through it)."""
    first = y[tuple(slice(0, 1) if a in axes else slice(None) for a in range(y.ndim))]
    return y - jax.lax.stop_gradient(first)


def centre(y: jax.Array, axes: tuple[int, ...]) -> jax.Array:
    """``y - mean(y)`` over ``axes``; exactly zero wherever a slice is constant.

    Each slice is shifted by its first element first (which also keeps the mean accurate when
    ``|mean| >> std``). The shift cancels in the result, so it carries no gradient.

    >>> centre(jnp.full((1, 3), 0.1), (1,)).tolist()  # the float mean of three 0.1s is not 0.1
    [[0.0, 0.0, 0.0]]
    """
    shifted = _shift_by_first(y, axes)
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


#: A slice whose sum of squared deviations is below this, or not finite, lost digits to
#: underflow or overflow when squared: the call is then redone on power-of-two-rescaled values.
#: A constant slice (sum 0) takes that path too; it is rare, and 0 is its exact result on both.
_TINY = 2.0**-100
#: Where ``eps f**2`` exceeds this, the rescaled variance (at most 4) is lost beside it.
_EPS_ONLY = 2.0**64


@jax.custom_batching.custom_vmap
def _any_lost(squares: jax.Array) -> jax.Array:
    """Whether any slice's sum of squares overflowed or underflowed: the rescale's predicate."""
    return jnp.any(~jnp.isfinite(squares) | (squares < _TINY))


@_any_lost.def_vmap
def _any_lost_vmap(axis_size, in_batched, squares):
    """Under ``vmap`` (the simulator's MC samples, a chunk of chips) the predicate stays one
    boolean for the whole batch, so that the ``lax.cond`` it drives stays a branch: with a
    batched predicate ``vmap`` turns it into a ``select`` that computes the rescaled path (a
    max-reduction and another sum of squares) every time. Taking that path for every slice of
    the batch when any slice needs it gives the same values: the rescale is by a power of two."""
    del axis_size, in_batched
    return _any_lost(squares), False


def _statistics(y: jax.Array, axes: tuple[int, ...], eps):
    """``(shifted, mean, f, r)``: ``y`` less each slice's first element, the mean of that, the
    slice's power-of-two factor and ``1 / sqrt(var f**2 + eps f**2)`` (0 where that is 0)."""
    n = math.prod(y.shape[a] for a in axes)
    shifted = _shift_by_first(y, axes)
    # One pass: the sum and the sum of squares of the shifted values. The shift by a member of
    # the slice keeps E[d**2] - E[d]**2 accurate when |mean| >> std (flax's fast variance has
    # no shift), and makes a constant slice exactly zero.
    total = jnp.sum(shifted, axis=axes, keepdims=True)
    squares = jnp.sum(jnp.square(shifted), axis=axes, keepdims=True)
    lost = _any_lost(jax.lax.stop_gradient(squares))

    def rescaled():  # rare (|y| beyond ~1e19 or spreads below ~1e-15): square f * shifted instead
        scaled, factor = power_of_two_rescale(shifted, axes)
        return factor, jnp.sum(jnp.square(scaled), axis=axes, keepdims=True)

    factor, squares = jax.lax.cond(lost, rescaled, lambda: (jnp.ones_like(total), squares))
    mean = total / n
    mean_f = mean * factor
    var_f = jnp.maximum(squares / n - mean_f * mean_f, 0.0)
    # (eps f) f, not eps f**2: f**2 overflows for tiny slices, and 0 * inf would be NaN. Where
    # eps f**2 dwarfs var f**2 (<= 4), r is 1 / (sqrt(eps) f): finite where eps f**2 is not.
    eps_f = eps * factor * factor
    den = var_f + eps_f
    # rsqrt(0) is infinite: a constant slice with eps = 0 (den = 0) gets r = rsqrt(inf) = 0.
    # One rsqrt and one divide at the end (by 1 but where eps f**2 dominates: exact), not selects
    # after them: XLA then materializes r once per slice instead of redoing the selects for
    # every element of the fusions that apply it (the chip step's elementwise work).
    eps_only = eps_f > _EPS_ONLY
    den = jnp.where(eps_only, eps, jnp.where(den > 0, den, jnp.inf))
    r = jax.lax.rsqrt(den) / jnp.where(eps_only, factor, 1.0)
    return shifted, mean, factor, r


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _standardize(y: jax.Array, axes: tuple[int, ...], eps) -> jax.Array:
    shifted, mean, factor, r = _statistics(y, axes, eps)
    return (shifted - mean) * factor * r


@_standardize.defjvp
def _standardize_jvp(axes, primals, tangents):
    """``d out = s (dy_c - out mean(out dy_c))`` with ``dy_c = dy - mean(dy)`` and ``s`` the
    slice's ``1 / sqrt(var + eps)``: the analytic derivative (no gradient to ``eps``), two
    reductions rather than the backward of every step above."""
    (y, eps), (dy, _) = primals, tangents
    shifted, mean, factor, r = _statistics(y, axes, eps)
    out = (shifted - mean) * factor * r
    centred = dy - jnp.mean(dy, axis=axes, keepdims=True)
    return out, r * factor * (centred - out * jnp.mean(out * centred, axis=axes, keepdims=True))


# One compiled program per shape when called eagerly (a dozen small ops otherwise); inlined
# into any enclosing jit.
@functools.partial(jax.jit, static_argnames=("axes",))
def standardize(y: jax.Array, axes: tuple[int, ...], eps) -> jax.Array:
    """``(y - mean) / sqrt(var + eps)`` over ``axes`` (population variance), at any magnitude.

    A constant slice gives exactly 0, also with ``eps = 0`` (never 0/0, and a finite gradient).
    ``y`` must be float32 or float64: cast narrower dtypes first.

    The statistics take one pass over ``y``: the sum and the sum of squares of ``y`` less each
    slice's first element (:func:`centre`'s shift). Where a sum of squares overflowed or
    underflowed, the whole call is redone on values rescaled by a power of two
    (:func:`power_of_two_rescale`; exact), inside a ``lax.cond``; under ``vmap`` the branch is
    taken for the whole batch when any slice needs it (the same values), not computed twice.
    The derivative is the analytic one (``eps`` gets none).

    >>> import numpy as np
    >>> y = standardize(jnp.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]]), (1,), 0.0)
    >>> np.round(np.asarray(y, np.float64), 4).tolist()
    [[-1.2247, 0.0, 1.2247], [0.0, 0.0, 0.0]]
    """
    return _standardize(y, axes, jnp.asarray(eps, y.dtype))


__all__ = ["centre", "power_of_two_rescale", "standardize"]
