"""A 1-D or 2-D convolution as one matrix product over rows: the banded form.

A channels-last convolution of ``x [B, H, W, C]`` with ``k [kh, kw, C, O]`` is, row by row,

    y[b, r] = window(x, r) @ D,    window(x, r) = x[b, r*s - lo : r*s - lo + kh]  (kh rows, flattened)

where ``D [kh * W * C, Wout * O]`` holds the kernel at every column offset (zero elsewhere: the
band). One ``[B * Hout, kh * W * C] x [kh * W * C, Wout * O]`` matmul does the whole conv, with
no patch extraction along the (minor) channel axis, only ``kh`` strided row slices stacked on a
major axis. It does ``W / kw`` times the convolution's multiply-adds, so it pays only where the
image is narrow and the matmul much faster than the conv: small binary activations in int8 or
bfloat16 on a CPU with AMX/VNNI (``nn.lowp`` picks it per shape). A 1-D conv is the ``H = 1``
case (a full Toeplitz matrix), and so is a 2-D image of few rows (:data:`FULL_MAX_ROWS`), whose
rows go into the band too (where that matrix stays small: :data:`FULL_MAX_ENTRIES`).

Every entry of ``D`` is one kernel value or zero, so the products and sums are those of the
conv: with ±1 operands the result equals the float32 conv bit for bit (integer sums).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from invnorm_jax.errors import ArgumentError

__all__ = ["band_matrix", "banded_conv", "banded_flops_ratio", "conv_pads"]

#: Images of at most this many times ``kh`` rows take the rows into the band as well: the digits
#: model's 4x4 maps (3x3 kernel: 1.33) ran about 4 % faster per chip step that way (one matrix,
#: no row windows to pad and stack; docs/benchmarks.md), its 8x8 maps (2.67) did not.
FULL_MAX_ROWS = 1.5
#: ... if that one matrix stays small (4 Mi entries): at 4x4 with 512 channels it would be
#: [8192, 8192], and the row band ran 5x faster than it there.
FULL_MAX_ENTRIES = 2**22


def conv_pads(spatial, kernel_spatial, strides, padding) -> tuple[tuple[int, int], ...]:
    """Explicit ``(lo, hi)`` pads per spatial axis for ``padding`` ("SAME", "VALID" or pairs).

    >>> conv_pads((8, 8), (3, 3), (2, 2), "SAME"), conv_pads((5,), (3,), (1,), "VALID")
    (((0, 1), (0, 1)), ((0, 0),))
    """
    if isinstance(padding, str):
        return tuple(jax.lax.padtype_to_pads(tuple(spatial), tuple(kernel_spatial), tuple(strides), padding))
    return tuple((int(lo), int(hi)) for lo, hi in padding)


def _out_len(n: int, k: int, s: int, pads: tuple[int, int]) -> int:
    return (n + pads[0] + pads[1] - k) // s + 1


def _shift(n_in: int, k: int, stride: int, pads: tuple[int, int]) -> np.ndarray:
    """One-hot ``T[w_in, w_out, j]``: input column ``w_in`` meets tap ``j`` of output ``w_out``."""
    n_out = _out_len(n_in, k, stride, pads)
    t = np.zeros((n_in, n_out, k), np.float32)
    for o in range(n_out):
        for j in range(k):
            src = o * stride + j - pads[0]
            if 0 <= src < n_in:
                t[src, o, j] = 1.0
    return t


def band_matrix(kernel: jax.Array, width: int, stride: int, pads: tuple[int, int]) -> jax.Array:
    """``D [kh * width * C, Wout * O]`` of a ``[kh, kw, C, O]`` kernel over rows ``width`` wide.

    Each entry is one kernel value or an exact zero (a one-hot contraction), in the kernel's dtype.

    >>> band_matrix(jnp.ones((1, 3, 1, 1)), 4, 1, (1, 1)).astype(int).tolist()  # 3 taps, SAME, 4 wide
    [[1, 1, 0, 0], [1, 1, 1, 0], [0, 1, 1, 1], [0, 0, 1, 1]]
    """
    kh, kw, c, o = kernel.shape
    t = jnp.asarray(_shift(width, kw, stride, pads), kernel.dtype)
    band = jnp.einsum("wvj,ijco->iwcvo", t, kernel, precision=jax.lax.Precision.HIGHEST)
    return band.reshape(kh * width * c, t.shape[1] * o)


def _as_2d(x: jax.Array, kernel: jax.Array, strides, pads):
    if kernel.ndim == 3:  # 1-D: one row of length L
        return x[:, None], kernel[None], (1,) + tuple(strides), ((0, 0),) + tuple(pads)
    return x, kernel, tuple(strides), tuple(pads)


def banded_conv(
    x: jax.Array, kernel: jax.Array, strides=None, padding="SAME", preferred_element_type=None
) -> jax.Array:
    """``conv(x, kernel)`` (channels last, 1-D or 2-D, no dilation) as one banded matmul.

    Args:
      x: ``[B, W, C]`` or ``[B, H, W, C]``; cast to the kernel's dtype first if they differ.
      kernel: ``[kw, C, O]`` or ``[kh, kw, C, O]``.
      strides: per spatial axis (default 1).
      padding: ``"SAME"``, ``"VALID"`` or ``(lo, hi)`` pairs, as ``lax.conv_general_dilated``.
      preferred_element_type: the matmul's accumulation dtype (``jnp.int32`` for int8 operands).

    Returns:
      The conv's output ``[B, (Hout,) Wout, O]``, equal to ``lax.conv_general_dilated``'s up to
      the order of the sums (bit for bit where every partial sum is exact, e.g. ±1 operands).

    >>> x, k = jnp.ones((1, 4, 4, 2)), jnp.ones((3, 3, 2, 1))
    >>> banded_conv(x, k)[0, :, :, 0].tolist()  # SAME: 4 taps at a corner, 6 on an edge, 9 inside
    [[8.0, 12.0, 12.0, 8.0], [12.0, 18.0, 18.0, 12.0], [12.0, 18.0, 18.0, 12.0], [8.0, 12.0, 12.0, 8.0]]
    """
    nd = kernel.ndim - 2
    if nd not in (1, 2) or x.ndim != nd + 2:
        raise ArgumentError(
            f"banded_conv: x.shape={tuple(x.shape)} and kernel.shape={tuple(kernel.shape)}: expected a 1-D or "
            "2-D channels-last conv ([B, W, C] with [kw, C, O], or [B, H, W, C] with [kh, kw, C, O])."
        )
    strides = (1,) * nd if strides is None else tuple(strides)
    pads = conv_pads(x.shape[1:-1], kernel.shape[:-2], strides, padding)
    x2, k2, (sh, sw), (ph, pw) = _as_2d(x, kernel, strides, pads)
    b, h, w, c = x2.shape
    kh, kw, _, o = k2.shape
    h_out, w_out = _out_len(h, kh, sh, ph), _out_len(w, kw, sw, pw)
    if nd == 2 and h <= FULL_MAX_ROWS * kh and h * w * c * h_out * w_out * o <= FULL_MAX_ENTRIES:
        # A short image: the rows go into the band too (one [H * W * C, Hout * Wout * O] matrix),
        # which costs H / kh times the band's products and saves the windows' pad and stack.
        rows_band = jnp.asarray(_shift(h, kh, sh, ph), k2.dtype)
        full = jnp.einsum("hri,iwcvo->hwcrvo", rows_band, band_matrix(k2, w, sw, pw).reshape(kh, w, c, w_out, o))
        y = jax.lax.dot_general(
            x2.reshape(b, h * w * c),
            full.reshape(h * w * c, h_out * w_out * o).astype(x2.dtype),
            (((1,), (0,)), ((), ())),
            preferred_element_type=preferred_element_type,
        )
        return y.reshape(b, h_out, w_out, o)
    band = band_matrix(k2, w, sw, pw).astype(x2.dtype)
    rows = jnp.pad(x2.reshape(b, h, w * c), ((0, 0), ph, (0, 0)))
    span = (h_out - 1) * sh + 1
    windows = jnp.stack([rows[:, i : i + span : sh] for i in range(kh)], axis=2)  # [B, Hout, kh, W*C]
    y = jax.lax.dot_general(
        windows.reshape(b * h_out, kh * w * c),
        band,
        (((1,), (0,)), ((), ())),
        preferred_element_type=preferred_element_type,
    )
    return y.reshape((b,) + ((h_out,) if nd == 2 else ()) + (w_out, o))


def banded_flops_ratio(in_spatial, kernel_spatial) -> float:
    """Multiply-adds of :func:`banded_conv` over those of the conv: ``W / kw``.

    Per output element the banded form sums ``kh * W * C`` products, the conv ``kh * kw * C``.

    >>> banded_flops_ratio((8, 8), (3, 3)), banded_flops_ratio((40,), (5,))
    (2.666..., 8.0)
    """
    return in_spatial[-1] / kernel_spatial[-1]
