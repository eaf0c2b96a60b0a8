"""What the library's crossbar layers share (binary ones in :mod:`~invnorm_jax.nn.quantized`, k-bit
ones in :mod:`~invnorm_jax.nn.kbit`): the conv geometry and the conv itself, the input checks,
and the optional dropout on the crossbar's input."""

from __future__ import annotations

import jax
from flax import nnx

from invnorm_jax._checks import check_channels, check_float_input, check_positive_int
from invnorm_jax.errors import ArgumentError

__all__: list[str] = []  # the layers' plumbing: the layers are the API

default_kernel_init = nnx.initializers.lecun_normal()
SPATIAL = "DHW"  # lax dimension-number letters for up to 3 spatial axes


def conv_geometry(kernel_size, strides, padding):
    """Normalize ``kernel_size`` (int = 1-D, as in flax), ``strides`` and ``padding``."""
    ks = (kernel_size,) if isinstance(kernel_size, int) else tuple(kernel_size)
    if not 1 <= len(ks) <= len(SPATIAL):
        raise ArgumentError(
            f"kernel_size={kernel_size!r}: expected 1 to {len(SPATIAL)} spatial dims, e.g. 3 (1-D) or (3, 3) (2-D)."
        )
    nd = len(ks)
    st = (strides,) * nd if isinstance(strides, int) else tuple(strides)
    if isinstance(padding, str):
        pad = padding.upper()
    elif isinstance(padding, int):
        pad = ((padding, padding),) * nd
    else:
        pad = tuple((p, p) if isinstance(p, int) else tuple(p) for p in padding)
    return ks, st, pad


def check_layer_input(x, kernel_shape, who: str, *, conv: bool) -> None:
    """A layer's input: floating point, the kernel's rank (convs) and its ``in_features`` last."""
    check_float_input(x, who)
    nd = len(kernel_shape) - 2
    # Exactly one batch axis: with several allowed, a 1-D kernel (int kernel_size) would
    # silently treat the rows of an image as a batch of sequences. vmap adds batch axes.
    if conv and x.ndim != nd + 2:
        raise ArgumentError(
            f"{who}: input of shape {tuple(x.shape)} does not fit a {nd}-D kernel: expected [batch, "
            f"{nd} spatial dims, channels]. An int kernel_size means 1-D; pass a tuple such "
            "as (3, 3) for 2-D."
        )
    check_channels(x, kernel_shape[-2], who)


def check_sizes(in_features, out_features) -> None:
    check_positive_int(in_features, "in_features")
    check_positive_int(out_features, "out_features")


def conv(x: jax.Array, kernel: jax.Array, strides, padding, preferred_element_type=None) -> jax.Array:
    """Channels-last convolution of ``x`` ``[batch, *spatial, in]`` with ``[*k, in, out]``."""
    sp = SPATIAL[-(kernel.ndim - 2) :]
    dn = ("N" + sp + "C", sp + "IO", "N" + sp + "C")
    return jax.lax.conv_general_dilated(
        x, kernel.astype(x.dtype), strides, padding, dimension_numbers=dn, preferred_element_type=preferred_element_type
    )


class CrossbarInput:
    """An optional dropout on the layer's crossbar input (``input_dropout``, nn.dropout).

    The input is multiplied by the 0/1 mask, the output (before the bias) by ``1/(1-p)``: ±1
    operands stay in ``{-1, 0, +1}``, so the low-precision products of nn.lowp stay exact.
    """

    def input_mask(self, x, *, key=None, deterministic=None):
        """This call's keep mask for the input ``x``, or None (no dropout, or inactive)."""
        drop = self.input_dropout
        return None if drop is None else drop.mask(x, key=key, deterministic=deterministic)

    def _rescaled(self, y, mask):
        return y if mask is None else y * self.input_dropout.gain
