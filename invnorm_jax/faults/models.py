"""Fault models of memristor / NVM crossbars as pure functions ``(key, array) -> array``.

Every model is jit- and vmap-safe, and its level (``sigma``, ``rate`` or ``amplitude``) may be
a traced ``jnp`` scalar, so one compiled chip simulation serves every level of a sweep. Levels
are validated only when they are concrete (Python / NumPy numbers or concrete arrays); traced
levels are trusted. Every model is *exactly* the identity at level 0: the noise is multiplied
by the level (``w + 0 * n == w``) and a flip / stuck mask drawn with probability 0 is empty.

Representations (the *deployed* weights, never the float latent weights):

* ``bits=1``: binary weights, ±1 in any dtype; one cell stores the sign.
* ``bits=k`` (2..16): integer codes in ``[-2**(k-1), 2**(k-1) - 1]``, stored as k-bit two's
  complement, one cell per bit. Codes outside that range are wrapped to k bits.

See ``docs/faults.md`` for the equations, units and where the paper used each model.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from invnorm_jax.errors import ArgumentError

MAX_BITS = 16


def check_level_range(name: str, value, low: float, high: float = np.inf) -> None:
    """Raise ``ValueError`` if a concrete level lies outside ``[low, high]``; skip tracers."""
    if isinstance(value, jax.core.Tracer):
        return  # a traced sweep level is checked by whoever builds the sweep
    v = np.asarray(value, dtype=np.float64)
    # `not (low <= v <= high)` also rejects NaN.
    if not np.all((v >= low) & (v <= high)):
        allowed = f"[{low}, {high}]" if np.isfinite(high) else f">= {low}"
        raise ArgumentError(f"{name}={value!r} is out of range: expected {name} {allowed}.")


def _check_bits(bits) -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 1 <= bits <= MAX_BITS:
        raise ArgumentError(f"bits={bits!r} is out of range: expected an integer in [1, {MAX_BITS}].")
    return int(bits)


def float_dtype(w: jax.Array):
    """The array's own float dtype, or the default float dtype for integer codes."""
    return w.dtype if jnp.issubdtype(w.dtype, jnp.floating) else jnp.result_type(float)


def additive_variation(key: jax.Array, w: jax.Array, *, sigma) -> jax.Array:
    """Additive Gaussian conductance variation, scaled to the array's range.

    .. math:: w' = w + \\sigma \\, \\max_j |w_j| \\, n, \\qquad n \\sim \\mathcal{N}(0, 1)

    ``sigma`` is in units of the largest magnitude of ``w`` (the conductance range G_max of
    the crossbar): 1 for ±1 weights, ``2**(k-1)`` for full-range k-bit codes.

    Args:
      key: a PRNG key.
      w: deployed weights or codes, any shape.
      sigma: relative standard deviation, ``>= 0``; may be traced.

    Returns:
      A float array of ``w``'s shape (``w``'s dtype if it is float, else the default float).

    Raises:
      ValueError: a concrete sigma below 0 (or NaN).

    >>> w = jnp.array([1.0, -1.0, 1.0])
    >>> bool(jnp.all(additive_variation(jax.random.key(0), w, sigma=0.0) == w))
    True
    """
    check_level_range("sigma", sigma, 0.0)
    dtype = float_dtype(w)
    wf = w.astype(dtype)
    n = jax.random.normal(key, w.shape, dtype=dtype)
    return (wf + sigma * jnp.max(jnp.abs(wf)) * n).astype(dtype)


def multiplicative_variation(key: jax.Array, w: jax.Array, *, sigma) -> jax.Array:
    """Multiplicative (relative) Gaussian variation of every cell.

    .. math:: w' = w \\, (1 + \\sigma n), \\qquad n \\sim \\mathcal{N}(0, 1)

    Args:
      key: a PRNG key.
      w: deployed weights or codes, any shape.
      sigma: relative standard deviation, ``>= 0``; may be traced.

    Returns:
      A float array of ``w``'s shape.

    Raises:
      ValueError: a concrete sigma below 0 (or NaN).

    >>> w = jnp.array([2.0, -3.0])
    >>> multiplicative_variation(jax.random.key(0), w, sigma=0.0).tolist()
    [2.0, -3.0]
    """
    check_level_range("sigma", sigma, 0.0)
    dtype = float_dtype(w)
    n = jax.random.normal(key, w.shape, dtype=dtype)
    return (w.astype(dtype) * (1.0 + sigma * n)).astype(dtype)


def uniform_noise(key: jax.Array, w: jax.Array, *, amplitude) -> jax.Array:
    """Additive uniform noise (the paper's LSTM experiment).

    .. math:: w' = w + u, \\qquad u \\sim \\mathcal{U}(-a, a)

    ``amplitude`` is in the units of ``w`` itself; :class:`~invnorm_jax.faults.context.Fault`
    passes ``level * max|w|`` so that its level has the units of :func:`additive_variation`.

    Args:
      key: a PRNG key.
      w: deployed weights or codes, any shape.
      amplitude: half-width ``a >= 0``; may be traced.

    Returns:
      A float array of ``w``'s shape.

    Raises:
      ValueError: a concrete amplitude below 0 (or NaN).

    >>> w = jnp.ones(4)
    >>> u = uniform_noise(jax.random.key(0), w, amplitude=0.1)
    >>> bool(jnp.all(jnp.abs(u - w) <= 0.1))
    True
    """
    check_level_range("amplitude", amplitude, 0.0)
    dtype = float_dtype(w)
    u = jax.random.uniform(key, w.shape, dtype=dtype, minval=-1.0, maxval=1.0)
    return (w.astype(dtype) + amplitude * u).astype(dtype)


def _to_unsigned(codes: jax.Array, bits: int) -> jax.Array:
    """k-bit two's-complement pattern of integer codes, as int32 in ``[0, 2**bits)``."""
    # int32 holds every 16-bit pattern; float codes are rounded first so 3.0 -> 3.
    c = codes if jnp.issubdtype(codes.dtype, jnp.integer) else jnp.round(codes)
    return c.astype(jnp.int32) & ((1 << bits) - 1)


def _to_signed(pattern: jax.Array, bits: int, dtype) -> jax.Array:
    """Inverse of :func:`_to_unsigned`: the top bit carries weight ``-2**(bits-1)``."""
    signed = jnp.where(pattern >= (1 << (bits - 1)), pattern - (1 << bits), pattern)
    return signed.astype(dtype)


def _bit_mask(key: jax.Array, p, shape: tuple[int, ...], bits: int) -> jax.Array:
    """int32 mask whose bit ``b`` is set independently with probability ``p``."""
    draws = jax.random.bernoulli(key, p, shape + (bits,))
    weights = jnp.left_shift(jnp.int32(1), jnp.arange(bits, dtype=jnp.int32))
    return jnp.sum(jnp.where(draws, weights, 0), axis=-1, dtype=jnp.int32)


def bit_flip(key: jax.Array, codes: jax.Array, *, rate, bits: int) -> jax.Array:
    """Independent bit-flips of the stored cells (retention / read-disturb faults).

    * ``bits=1``: ``codes`` are ±1; each flips sign with probability ``rate``:
      :math:`w' = w \\cdot (1 - 2 f)`, :math:`f \\sim \\mathrm{Bernoulli}(\\text{rate})`.
    * ``bits=k``: each of the k bits of the two's-complement code flips independently:
      :math:`c' = \\mathrm{signed}_k(\\mathrm{unsigned}_k(c) \\oplus m)`, every bit of the
      mask ``m`` ~ Bernoulli(rate). Flipping the top bit of 0 with 8 bits gives -128.

    Args:
      key: a PRNG key.
      codes: ±1 weights (bits=1) or k-bit integer codes (any int or float dtype).
      rate: flip probability per bit, in ``[0, 1]``; may be traced.
      bits: static word length, 1..16.

    Returns:
      Valid codes of the same shape and dtype as ``codes``.

    Raises:
      ValueError: a concrete probability outside ``[0, 1]``, or ``bits`` outside 1..16.

    >>> c = jnp.zeros(3, jnp.int8)
    >>> bit_flip(jax.random.key(0), c, rate=1.0, bits=8).tolist()   # every bit: 0 -> 0b11111111
    [-1, -1, -1]
    """
    bits = _check_bits(bits)
    check_level_range("rate", rate, 0.0, 1.0)
    if bits == 1:
        flip = jax.random.bernoulli(key, rate, codes.shape)
        return jnp.where(flip, -codes, codes).astype(codes.dtype)
    pattern = _to_unsigned(codes, bits) ^ _bit_mask(key, rate, codes.shape, bits)
    return _to_signed(pattern, bits, codes.dtype)


def stuck_at(key: jax.Array, codes: jax.Array, *, rate, bits: int, high_fraction=0.5) -> jax.Array:
    """Stuck-at faults (beyond the paper): a fraction of cells ignores what is written.

    Each cell is stuck with probability ``rate``; a stuck cell is stuck at the high state with
    probability ``high_fraction``, else at the low state. For ``bits=1`` a cell is the ±1
    weight (high = +1, low = -1); for ``bits=k`` every bit of the two's-complement code is a
    cell (stuck at 1 or 0):

    .. math:: c' = \\mathrm{signed}_k\\big((\\mathrm{unsigned}_k(c) \\wedge \\lnot s) \\vee (s \\wedge h)\\big)

    with stuck mask ``s`` ~ Bernoulli(rate) and high mask ``h`` ~ Bernoulli(high_fraction)
    per bit.

    Args:
      key: a PRNG key.
      codes: ±1 weights (bits=1) or k-bit integer codes.
      rate: fraction of stuck cells, in ``[0, 1]``; may be traced.
      bits: static word length, 1..16.
      high_fraction: share of stuck cells stuck high, in ``[0, 1]``; may be traced.

    Returns:
      Valid codes of the same shape and dtype as ``codes``.

    Raises:
      ValueError: a concrete probability outside ``[0, 1]``, or ``bits`` outside 1..16.

    >>> w = -jnp.ones(4)
    >>> stuck_at(jax.random.key(0), w, rate=1.0, bits=1, high_fraction=1.0).tolist()
    [1.0, 1.0, 1.0, 1.0]
    """
    bits = _check_bits(bits)
    check_level_range("rate", rate, 0.0, 1.0)
    check_level_range("high_fraction", high_fraction, 0.0, 1.0)
    stuck_key, high_key = jax.random.split(key)
    if bits == 1:
        stuck = jax.random.bernoulli(stuck_key, rate, codes.shape)
        high = jax.random.bernoulli(high_key, high_fraction, codes.shape)
        value = jnp.where(high, 1, -1).astype(codes.dtype)
        return jnp.where(stuck, value, codes).astype(codes.dtype)
    stuck = _bit_mask(stuck_key, rate, codes.shape, bits)
    high = _bit_mask(high_key, high_fraction, codes.shape, bits)
    pattern = (_to_unsigned(codes, bits) & ~stuck) | (stuck & high)
    return _to_signed(pattern, bits, codes.dtype)


__all__ = ["MAX_BITS", "additive_variation", "bit_flip", "multiplicative_variation", "stuck_at", "uniform_noise"]
