"""Quantizers with straight-through gradients: sign, IR-Net binarization, k-bit, PACT.

Every function is pure ``jax.numpy``, safe under ``jit`` and ``vmap``. ``bits`` is always a
static Python integer (it fixes the code range); scales and the EDE temperature may be traced.

Forward values are the deployed representation (±1 codes, integer codes times a scale);
backward passes use the estimator each method's paper prescribes:

* :func:`sign`: ``d sign(x)/dx = 1{|x| <= 1}`` (the hardtanh straight-through estimator).
* :func:`irnet_binarize_weights`: IR-Net's Error Decay Estimator (EDE) on the Libra-PB
  standardized weights.
* :func:`fake_quant`: identity inside the clip range.
* :func:`pact`: PACT's estimator for the input and for the clipping level ``alpha``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from invnorm_jax._checks import check_bits
from invnorm_jax.functional.stats import standardize

__all__ = ["ede_schedule", "fake_quant", "irnet_binarize_weights", "libra_pb", "pact", "quantize_symmetric", "sign"]


def _compute_dtype(dtype) -> jnp.dtype:
    """float32 at least: bfloat16 cannot hold a 16-bit code, nor centre weights accurately."""
    return jnp.promote_types(dtype, jnp.float32)


def _reduce_axes(ndim: int, keep_axis: int | None) -> tuple[int, ...]:
    """All axes of an ``ndim`` array except ``keep_axis`` (all axes when it is None)."""
    if keep_axis is None:
        return tuple(range(ndim))
    keep = keep_axis % ndim
    return tuple(a for a in range(ndim) if a != keep)


# --------------------------------------------------------------------------- sign


@jax.custom_vjp
def sign(x: jax.Array) -> jax.Array:
    """Binarize to ±1 with the hardtanh straight-through estimator.

    Forward ``sign(x) = +1 if x >= 0 else -1`` (zero maps to +1 so every code is a valid
    bit); backward ``dL/dx = dL/dy * 1{|x| <= 1}``.

    Args:
      x: any float array.

    Returns:
      ``±1`` in ``x``'s dtype.

    >>> sign(jnp.array([-0.5, 0.0, 2.0]))
    Array([-1.,  1.,  1.], dtype=float32)
    """
    return jnp.where(x >= 0, 1, -1).astype(x.dtype)


def _sign_fwd(x):
    return sign(x), x


def _sign_bwd(x, g):
    return (g * (jnp.abs(x) <= 1).astype(g.dtype),)


sign.defvjp(_sign_fwd, _sign_bwd)


# --------------------------------------------------------------------------- IR-Net


def ede_schedule(progress) -> tuple[jax.Array, jax.Array]:
    """IR-Net's Error Decay Estimator schedule: ``(t, k)`` at a training ``progress``.

    ``t = 10 ** (-3 + 4 * progress)`` (1e-3 at the start, 10 at the end) and
    ``k = max(1 / t, 1)``. ``progress`` is clipped to ``[0, 1]`` and may be traced.

    Args:
      progress: the share of training done, 0 to 1.

    Returns:
      ``(t, k)``, float32 scalars.

    >>> t, k = ede_schedule(1.0)
    >>> float(t), float(k)
    (10.0, 1.0)
    """
    p = jnp.clip(jnp.asarray(progress, dtype=jnp.float32), 0.0, 1.0)
    t = 10.0 ** (-3.0 + 4.0 * p)
    return t, jnp.maximum(1.0 / t, 1.0)


@jax.custom_vjp
def _ede_sign(x, t, k):
    return jnp.where(x >= 0, 1, -1).astype(x.dtype)


def _ede_sign_fwd(x, t, k):
    return _ede_sign(x, t, k), (x, t, k)


def _ede_sign_bwd(res, g):
    x, t, k = res
    grad = g * k * t * (1.0 - jnp.tanh(t * x) ** 2)
    # t and k are a schedule, not parameters: they get no gradient.
    return grad.astype(g.dtype), jnp.zeros_like(t), jnp.zeros_like(k)


_ede_sign.defvjp(_ede_sign_fwd, _ede_sign_bwd)


def libra_pb(w: jax.Array, axis: int = -1) -> jax.Array:
    """Libra Parameter Binarization: centre and standardize each output channel.

    ``w_std = (w - mean(w)) / std(w)``, statistics over every axis but ``axis`` (the output
    channel, the last axis of a ``[..., in, out]`` kernel). ``std`` is the population
    standard deviation (IR-Net's reference code uses the unbiased one; the difference is a
    factor ``sqrt(n / (n - 1))`` that ``sign`` ignores and the power-of-two scale absorbs).
    A constant channel (std 0) becomes exactly zero, not NaN or rounding noise. Statistics
    are computed in float32 (or wider) and scaled by a power of two before squaring, so
    weights of any finite magnitude (1e-30, 1e30) standardize alike; the result has ``w``'s
    dtype.

    Args:
      w: the latent kernel ``[..., in, out]``.
      axis: the output-channel axis.

    Returns:
      The standardized kernel, in ``w``'s dtype.

    >>> w_std = libra_pb(jnp.array([[1.0, 0.0], [3.0, 0.0]]))
    >>> w_std[:, 0]
    Array([-1.,  1.], dtype=float32)
    """
    return standardize(w.astype(_compute_dtype(w.dtype)), _reduce_axes(w.ndim, axis), 0.0).astype(w.dtype)


def irnet_binarize_weights(w: jax.Array, t=10.0, *, axis: int = -1):
    """IR-Net weight binarization: Libra-PB, sign, power-of-two scale, EDE gradient.

    With ``w_std = libra_pb(w)`` per output channel ``axis``::

        codes = sign(w_std)                                  (±1)
        scale = 2 ** round(log2(mean(|w_std|)))              (per channel, keepdims)
        w_b   = codes * scale

    Backward (EDE) on ``w_std``: ``dL/dw_std = dL/dcodes * k * t * (1 - tanh(t w_std)^2)``
    with ``k = max(1/t, 1)``; the gradient then flows through Libra-PB to ``w``. The scale is
    a stop-gradient, as in IR-Net. Use :func:`ede_schedule` for ``t``.

    Args:
      w: latent float kernel ``[..., in, out]``.
      t: EDE temperature (may be traced).
      axis: output-channel axis.

    Returns:
      ``(w_b, codes, scale)``; ``codes`` has ``w``'s dtype and ``scale`` broadcasts to ``w``.

    >>> w_b, codes, scale = irnet_binarize_weights(jnp.array([[0.3], [-0.1]]))
    >>> codes[:, 0], scale.shape
    (Array([ 1., -1.], dtype=float32), (1, 1))
    """
    w_std = libra_pb(w, axis=axis)
    t = jnp.asarray(t, dtype=w.dtype)
    k = jnp.maximum(1.0 / t, 1.0)
    codes = _ede_sign(w_std, t, k)
    mean_abs = jnp.mean(jnp.abs(w_std), axis=_reduce_axes(w.ndim, axis), keepdims=True)
    scale = jax.lax.stop_gradient(2.0 ** jnp.round(jnp.log2(mean_abs)))
    return codes * scale, codes, scale


# --------------------------------------------------------------------------- k-bit


def quantize_symmetric(x: jax.Array, bits: int, axis: int | None = None):
    """Symmetric uniform k-bit quantization to integer codes.

    ``scale = max|x| / (2**(bits-1) - 1)`` per tensor (``axis=None``) or per slice along
    ``axis`` (statistics over every other axis; keepdims, so ``codes * scale`` broadcasts);
    ``codes = clip(round(x / scale), -2**(bits-1), 2**(bits-1) - 1)`` as int32. An all-zero
    slice gets ``scale = 1`` so that nothing divides by zero. No gradient: see
    :func:`fake_quant`. ``scale`` has ``x``'s dtype (rounded up where that dtype is narrower
    than float32); the codes are computed in float32, so a bfloat16 input gets codes of the
    full range, each within half a step of it.

    Args:
      x: the array to quantize.
      bits: the code width k, a static int in 2..16.
      axis: None for one scale per tensor, else the axis that gets one scale per slice.

    Returns:
      ``(codes, scale)``: int32 codes and the scale, ``codes * scale ~= x``.

    Raises:
      ValueError: if ``bits`` is not an int in 2..16 (one signed bit has no magnitude).

    >>> codes, scale = quantize_symmetric(jnp.array([-1.0, 0.5, 1.0]), bits=8)
    >>> codes
    Array([-127,   64,  127], dtype=int32)
    """
    check_bits(bits, low=2)
    qmax = 2 ** (bits - 1) - 1
    compute = _compute_dtype(x.dtype)
    xc = x.astype(compute)
    absmax = jax.lax.stop_gradient(jnp.max(jnp.abs(xc), axis=_reduce_axes(x.ndim, axis), keepdims=True))
    exact = jnp.where(absmax > 0, absmax / qmax, 1.0)
    # The scale is returned in x's dtype; where that rounds it down, take the next value up,
    # so that max|x| / scale <= qmax still holds and nothing is clipped.
    scale = exact.astype(x.dtype)
    scale = jnp.where(scale.astype(compute) < exact, jnp.nextafter(scale, jnp.asarray(jnp.inf, x.dtype)), scale)
    codes = jnp.clip(jnp.round(xc / scale.astype(compute)), -qmax - 1, qmax).astype(jnp.int32)
    return codes, scale


def fake_quant(x: jax.Array, bits: int, *, axis: int | None = None, scale=None) -> jax.Array:
    """Quantize-dequantize with a straight-through gradient.

    Forward ``codes * scale`` from :func:`quantize_symmetric` (dynamic absmax scale), or,
    with a given ``scale``, ``clip(round(x / scale), -2**(bits-1), 2**(bits-1)-1) * scale``.
    Backward ``dL/dx = dL/dy * 1{x inside the clip range}``; with the dynamic scale every
    element is inside by construction, so the gradient is the identity. The scale gets no
    gradient. Codes and their product with the scale are computed in float32 (or wider) and
    rounded once to ``x``'s dtype, so that with a fixed scale, quantizing the result again
    changes nothing wherever that dtype resolves the grid (bfloat16: up to 8 bits).

    Args:
      x: the array to quantize.
      bits: the code width k, a static int in 2..16.
      axis: with the dynamic scale, None for one scale per tensor or the axis of per-slice scales.
      scale: a fixed scale (broadcast to ``x``), or None for the dynamic absmax scale.

    Returns:
      An array like ``x`` holding values of the k-bit grid.

    Raises:
      ValueError: if ``bits`` is not an int in 2..16.

    >>> fake_quant(jnp.array([0.0, 0.3, 1.0]), bits=2)
    Array([0., 0., 1.], dtype=float32)
    """
    check_bits(bits, low=2)
    compute = _compute_dtype(x.dtype)
    if scale is None:
        codes, scale = quantize_symmetric(x, bits, axis=axis)
        inside = jnp.ones_like(x)
    else:
        qmax = 2 ** (bits - 1) - 1
        scale = jax.lax.stop_gradient(jnp.asarray(scale, dtype=x.dtype))
        codes = jnp.clip(jnp.round(x.astype(compute) / scale.astype(compute)), -qmax - 1, qmax)
        inside = ((x >= (-qmax - 1) * scale) & (x <= qmax * scale)).astype(x.dtype)
    # One rounding to x's dtype, of the exact grid value: bfloat16 holds neither a 16-bit code
    # nor, in general, the product of a code and a scale.
    y = (codes.astype(compute) * scale.astype(compute)).astype(x.dtype)
    # (x - sg(x)) is exactly zero forward, so y keeps the quantized value bit for bit.
    return jax.lax.stop_gradient(y) + (x - jax.lax.stop_gradient(x)) * inside


# --------------------------------------------------------------------------- PACT


def pact(x: jax.Array, alpha, bits: int) -> jax.Array:
    """PACT activation: clip to ``[0, alpha]`` and quantize to ``2**bits`` unsigned levels.

    ``y = clip(x, 0, alpha)``, ``y_q = round(y * (2**bits - 1) / alpha) * alpha / (2**bits - 1)``,
    never above ``alpha`` (whatever the rounding of the step).

    Gradients follow the PACT paper (Choi et al., 2018, eq. 3), with the quantization
    treated as straight-through: ``dy_q/dx = 1{0 <= x < alpha}`` and
    ``dy_q/dalpha = 1{x >= alpha}``. The paper drops the term that comes from ``alpha``
    setting the step size (``(y_q - y) / alpha`` inside the range); so do we, which keeps
    ``alpha``'s gradient exactly the clipped mass. ``alpha`` may be a scalar or broadcast
    per channel; its gradient is summed over the broadcast axes.

    Args:
      x: the activation.
      alpha: the clipping level, > 0 (a learned parameter; scalar or per channel).
      bits: the number of bits, a static int in 1..16.

    Returns:
      An array like ``x`` with values in ``{0, alpha / (2**bits - 1), ..., alpha}``.

    Raises:
      ValueError: if ``bits`` is not an int in 1..16.

    >>> pact(jnp.array([-1.0, 0.4, 3.0]), 1.0, bits=1)
    Array([0., 0., 1.], dtype=float32)
    """
    check_bits(bits, low=1)
    alpha = jnp.asarray(alpha, dtype=x.dtype)
    # where(x < alpha, x, alpha) routes d/dx to the inside and d/dalpha to the clipped top.
    y = jnp.where(x < 0, jnp.zeros_like(x), jnp.where(x < alpha, x, alpha))
    levels = 2**bits - 1
    step = jax.lax.stop_gradient(alpha / levels)
    # levels * fl(alpha / levels) can round to just above alpha: the top level is alpha itself.
    y_q = jnp.minimum(jnp.round(y / step) * step, alpha)
    return jax.lax.stop_gradient(y_q) + (y - jax.lax.stop_gradient(y))
