"""k-bit quantized layers (Flax NNX): symmetric per-output-channel weights and per-example input
activations, as fault sites with ``bits=k`` (the M5, the LSTM's projections, the U-Net's
full-precision ends). The binary layers are in :mod:`invnorm_jax.nn.quantized`, which also
exports these; what both share is in :mod:`invnorm_jax.nn.crossbar`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
from flax import nnx

from invnorm_jax._checks import check_bits, check_fault_context
from invnorm_jax.functional.quantize import fake_quant, quantize_symmetric
from invnorm_jax.nn.crossbar import (
    CrossbarInput,
    check_layer_input,
    check_sizes,
    conv,
    conv_geometry,
    default_kernel_init,
)

if TYPE_CHECKING:  # the type only: nn must not pull in the fault models at import time
    from invnorm_jax.faults.context import FaultContext

__all__ = ["QuantConv", "QuantDense"]


def _optional_bits(bits, name: str) -> int | None:
    if bits is not None:
        check_bits(bits, name, low=2)
    return bits


class _QuantLayer(CrossbarInput, nnx.Module):
    """k-bit symmetric per-output-channel weights, k-bit per-example input activations."""

    def _init_quant(self, kernel_shape, bits, act_bits, use_bias, kernel_init, rngs, input_dropout=None):
        self.input_dropout = input_dropout
        self.bits = _optional_bits(bits, "bits")
        self.act_bits = _optional_bits(act_bits, "act_bits")
        self.kernel = nnx.Param(kernel_init(rngs.params(), kernel_shape, jnp.float32))
        self.bias = nnx.Param(jnp.zeros((kernel_shape[-1],), jnp.float32)) if use_bias else None
        self.fault_id = 0

    def deployed_weights(self):
        """``(codes, scale)``: int32 codes and per-output-channel scale; float kernel and 1.0
        for ``bits=None``."""
        kernel = self.kernel[...]
        if self.bits is None:
            return kernel, jnp.ones((), kernel.dtype)
        return quantize_symmetric(kernel, self.bits, axis=-1)

    def _effective_kernel(self, faults: FaultContext | None) -> jax.Array:
        kernel = self.kernel[...]
        if check_fault_context(faults) is None:
            return kernel if self.bits is None else fake_quant(kernel, self.bits, axis=-1)
        codes, scale = self.deployed_weights()
        codes = faults.weights(self.fault_id, codes, bits=self.bits)
        deployed = codes.astype(kernel.dtype) * scale
        # Integer codes carry no gradient: pass it straight through, as fake_quant (+ exact 0 forward).
        return deployed if self.bits is None else deployed + (kernel - jax.lax.stop_gradient(kernel))

    def _quant_input(self, x):
        # Scale per example (axis 0), so that an example's output never depends on which
        # other inputs or MC samples share its batch.
        return x if self.act_bits is None else fake_quant(x, self.act_bits, axis=0)

    def _add_bias(self, y):
        return y if self.bias is None else y + self.bias[...].astype(y.dtype)


class QuantConv(_QuantLayer):
    """k-bit convolution: ``y = conv(fake_quant(x, act_bits), codes * scale) + bias``.

    ``bits=None`` keeps full-precision weights (still a fault site, with ``bits=None``);
    ``act_bits=None`` leaves the input unquantized.

    >>> conv = QuantConv(1, 4, 5, bits=8, rngs=nnx.Rngs(0))
    >>> conv(jnp.ones((2, 16, 1))).shape
    (2, 16, 4)
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int | Sequence[int],
        *,
        bits: int | None = 8,
        act_bits: int | None = 8,
        strides: int | Sequence[int] = 1,
        padding: Any = "SAME",
        use_bias: bool = True,
        kernel_init=default_kernel_init,
        input_dropout: nnx.Module | None = None,
        rngs: nnx.Rngs,
    ):
        check_sizes(in_features, out_features)
        ks, self.strides, self.padding = conv_geometry(kernel_size, strides, padding)
        self._init_quant(ks + (in_features, out_features), bits, act_bits, use_bias, kernel_init, rngs, input_dropout)

    def __call__(
        self, x, *, key=None, train: bool = False, deterministic: bool | None = None, faults: FaultContext | None = None
    ):
        check_layer_input(x, self.kernel.shape, type(self).__name__, conv=True)
        kernel = self._effective_kernel(faults)
        mask = self.input_mask(x, key=key, deterministic=deterministic)
        x = self._quant_input(x)
        x = x if mask is None else x * mask
        return self._add_bias(self._rescaled(conv(x, kernel, self.strides, self.padding), mask))


class QuantDense(_QuantLayer):
    """k-bit fully connected layer: ``y = fake_quant(x, act_bits) @ (codes * scale) + bias``.

    >>> dense = QuantDense(4, 2, bits=4, act_bits=None, rngs=nnx.Rngs(0))
    >>> dense(jnp.ones((3, 4))).shape
    (3, 2)
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bits: int | None = 8,
        act_bits: int | None = 8,
        use_bias: bool = True,
        kernel_init=default_kernel_init,
        input_dropout: nnx.Module | None = None,
        rngs: nnx.Rngs,
    ):
        check_sizes(in_features, out_features)
        self._init_quant((in_features, out_features), bits, act_bits, use_bias, kernel_init, rngs, input_dropout)

    def __call__(
        self, x, *, key=None, train: bool = False, deterministic: bool | None = None, faults: FaultContext | None = None
    ):
        check_layer_input(x, self.kernel.shape, type(self).__name__, conv=False)
        return self.project(x, self._effective_kernel(faults), self.input_mask(x, key=key, deterministic=deterministic))

    def project(self, x, kernel, mask=None):
        """``fake_quant(x) @ kernel + bias`` with a kernel already deployed (and faulted) by the
        caller, e.g. once for every step of a recurrent loop; ``x`` is ``[rows, in_features]``.
        ``mask``: the input's keep mask (:meth:`input_mask`), e.g. one for every step."""
        x_q = self._quant_input(x)
        x_q = x_q if mask is None else x_q * mask
        return self._add_bias(self._rescaled(x_q @ kernel.astype(x.dtype), mask))
