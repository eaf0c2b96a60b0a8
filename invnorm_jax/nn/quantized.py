"""Binary (IR-Net) layers (Flax NNX), and the k-bit ones re-exported from :mod:`invnorm_jax.nn.kbit`
(PACT is in nn.pact); the LSTM cell is in :mod:`invnorm_jax.nn.recurrent`.

Thin shells over :mod:`invnorm_jax.functional.quantize`: they hold the float latent weights
and call the quantizers. Channels last. Every layer follows the library's calling convention
``layer(x, *, key=None, train=False, deterministic=None, faults=None)``.

Fault sites: every layer with a deployable weight representation has an int ``fault_id``
(renumbered by ``invnorm_jax.faults.number_fault_sites``), a ``bits`` attribute (1 for binary,
k for k-bit, None for full precision) and ``deployed_weights() -> (codes, scale)``. When a
``FaultContext`` is given, the forward pass uses ``faults.weights(fault_id, codes, bits=bits)
* scale``; with ``faults=None`` the forward is the same value with the usual straight-through
gradients. ``train`` and ``deterministic`` are accepted for the convention; the quantizers
behave the same in every mode (their estimators only shape gradients). Binary layers' ``compute``: nn.lowp.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
from flax import nnx

from invnorm_jax._checks import check_fault_context
from invnorm_jax.functional.quantize import ede_schedule, irnet_binarize_weights, sign
from invnorm_jax.nn.crossbar import (
    CrossbarInput,
    check_layer_input,
    check_sizes,
    conv,
    conv_geometry,
    default_kernel_init,
)
from invnorm_jax.nn.kbit import QuantConv, QuantDense
from invnorm_jax.nn.lowp import check_compute, layer_product
from invnorm_jax.nn.pact import PACT

if TYPE_CHECKING:  # the type only: nn must not pull in the fault models at import time
    from invnorm_jax.faults.context import FaultContext

__all__ = [
    "BinaryConv",
    "BinaryDense",
    "EDEProgress",
    "PACT",
    "PreactivationSite",
    "QuantConv",
    "QuantDense",
    "set_training_progress",
]


class EDEProgress(nnx.Variable):
    """Training progress in ``[0, 1]`` that sets IR-Net's EDE temperature (not trained).

    >>> isinstance(EDEProgress(0.5), nnx.Param)  # a variable of its own kind: no optimizer updates it
    False
    """


def set_training_progress(model: nnx.Module, progress) -> int:
    """Set the EDE training progress of every binary layer in ``model``.

    ``progress`` (0 = start, 1 = end of training; may be traced) sets ``(t, k)`` through
    :func:`~invnorm_jax.functional.quantize.ede_schedule`. Returns how many layers were set.

    >>> model = nnx.List([BinaryDense(4, 4, rngs=nnx.Rngs(0)), BinaryDense(4, 2, rngs=nnx.Rngs(1))])
    >>> set_training_progress(model, 0.25), float(model[1].ede_progress[...])
    (2, 0.25)
    >>> set_training_progress(model, -3.0), float(model[1].ede_progress[...])  # clipped to [0, 1]
    (2, 0.0)
    """
    value = jnp.clip(jnp.asarray(progress, dtype=jnp.float32), 0.0, 1.0)
    count = 0
    for _, node in nnx.iter_graph(model):
        if isinstance(node, EDEProgress):
            node[...] = value
            count += 1
    return count


class _BinaryLayer(CrossbarInput, nnx.Module):
    """IR-Net weights (Libra-PB + EDE) and optional ``sign`` input activations."""

    bits = 1
    has_preactivation_site = True

    def _init_binary(
        self,
        kernel_shape,
        binarize_input,
        use_bias,
        kernel_init,
        rngs,
        input_faults=True,
        compute=None,
        input_dropout=None,
    ):
        self.input_dropout = input_dropout
        self.compute = check_compute(compute)  # nn.lowp: "auto", "float32", "int8", "bfloat16" or None
        self.kernel = nnx.Param(kernel_init(rngs.params(), kernel_shape, jnp.float32))
        self.bias = nnx.Param(jnp.zeros((kernel_shape[-1],), jnp.float32)) if use_bias else None
        self.binarize_input = bool(binarize_input)
        # False where the model injects pre-activation faults elsewhere (a PreactivationSite).
        self.has_preactivation_site = self.binarize_input and bool(input_faults)
        self.ede_progress = EDEProgress(jnp.asarray(1.0, jnp.float32))
        self.fault_id = 0

    def deployed_weights(self):
        """``(codes, scale)``: ±1 codes (kernel dtype, EDE gradient) and per-channel scale."""
        t, _ = ede_schedule(self.ede_progress[...])
        _, codes, scale = irnet_binarize_weights(self.kernel[...], t)
        return codes, scale

    def _faulty_codes(self, faults: FaultContext | None):
        codes, scale = self.deployed_weights()
        if check_fault_context(faults) is not None:
            codes = faults.weights(self.fault_id, codes, bits=self.bits)
        return codes, scale

    def _effective_kernel(self, faults: FaultContext | None) -> jax.Array:
        codes, scale = self._faulty_codes(faults)
        return codes.astype(scale.dtype) * scale

    def _binary_forward(self, x, key, deterministic, faults: FaultContext | None, op) -> jax.Array:
        """``op(sign(x), codes * scale) + bias`` on the path :mod:`invnorm_jax.nn.lowp` picks."""
        codes, scale = self._faulty_codes(faults)
        mask = self.input_mask(x, key=key, deterministic=deterministic)
        x = self._binary_input(x, key, faults)
        x = x if mask is None else x * mask
        return self._add_bias(self._rescaled(layer_product(self, op, x, codes, scale, faults), mask))

    def _binary_input(self, x, key, faults: FaultContext | None):
        if not self.binarize_input:
            return x
        if faults is not None and self.has_preactivation_site:
            x = faults.preactivation(self.fault_id, x, key=key)
        return sign(x)

    def _add_bias(self, y):
        return y if self.bias is None else y + self.bias[...].astype(y.dtype)


class PreactivationSite(nnx.Module):
    """Where a binary network's pre-activation variation is injected: ``x -> faults.preactivation(x)``.

    The paper injects variation "into normalized activations before applying the Sign(.)
    function": placed right after a binary layer's normalization site, before any residual add
    or hardtanh. The identity without a ``preactivation`` fault. (The other placement, the
    input of ``sign()`` itself, is a binary layer's own hook: ``input_faults=True``.)

    >>> site = PreactivationSite()
    >>> site(jnp.ones((2, 3))).shape
    (2, 3)
    """

    has_preactivation_site = True

    def __init__(self):
        self.fault_id = 0

    def __call__(
        self, x, *, key=None, train: bool = False, deterministic: bool | None = None, faults: FaultContext | None = None
    ):
        if check_fault_context(faults) is None:
            return x
        return faults.preactivation(self.fault_id, x, key=key)


class BinaryConv(_BinaryLayer):
    """IR-Net binary convolution, channels last, 1-D to 3-D.

    ``y = conv(sign(x), codes * scale) (+ bias)`` with ``codes, scale`` from
    :func:`~invnorm_jax.functional.quantize.irnet_binarize_weights` of the latent kernel
    ``[*kernel_size, in, out]``. An int ``kernel_size`` means 1-D, as in ``nnx.Conv``.

    >>> conv = BinaryConv(3, 8, (3, 3), rngs=nnx.Rngs(0))
    >>> conv(jnp.ones((2, 5, 5, 3))).shape
    (2, 5, 5, 8)
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int | Sequence[int],
        *,
        strides: int | Sequence[int] = 1,
        padding: Any = "SAME",
        binarize_input: bool = True,
        use_bias: bool = False,
        kernel_init=default_kernel_init,
        input_faults: bool = True,
        compute: str | None = None,
        input_dropout: nnx.Module | None = None,
        rngs: nnx.Rngs,
    ):
        check_sizes(in_features, out_features)
        ks, self.strides, self.padding = conv_geometry(kernel_size, strides, padding)
        self._init_binary(
            ks + (in_features, out_features),
            binarize_input,
            use_bias,
            kernel_init,
            rngs,
            input_faults,
            compute,
            input_dropout,
        )

    def __call__(
        self, x, *, key=None, train: bool = False, deterministic: bool | None = None, faults: FaultContext | None = None
    ):
        check_layer_input(x, self.kernel.shape, type(self).__name__, conv=True)
        return self._binary_forward(
            x, key, deterministic, faults, lambda a, b, acc: conv(a, b, self.strides, self.padding, acc)
        )


class BinaryDense(_BinaryLayer):
    """IR-Net binary fully connected layer: ``y = sign(x) @ (codes * scale)``.

    >>> dense = BinaryDense(4, 2, rngs=nnx.Rngs(0))
    >>> dense(jnp.ones((3, 4))).shape
    (3, 2)
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        binarize_input: bool = True,
        use_bias: bool = False,
        kernel_init=default_kernel_init,
        input_faults: bool = True,
        compute: str | None = None,
        input_dropout: nnx.Module | None = None,
        rngs: nnx.Rngs,
    ):
        check_sizes(in_features, out_features)
        self._init_binary(
            (in_features, out_features),
            binarize_input,
            use_bias,
            kernel_init,
            rngs,
            input_faults,
            compute,
            input_dropout,
        )

    def __call__(
        self, x, *, key=None, train: bool = False, deterministic: bool | None = None, faults: FaultContext | None = None
    ):
        check_layer_input(x, self.kernel.shape, type(self).__name__, conv=False)
        return self._binary_forward(
            x, key, deterministic, faults, lambda a, b, acc: jnp.matmul(a, b, preferred_element_type=acc)
        )
