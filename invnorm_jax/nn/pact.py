"""PACT: a ReLU with a learned clipping level, quantized to k bits (the U-Net's activations)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax.numpy as jnp
from flax import nnx

from invnorm_jax._checks import check_bits
from invnorm_jax.functional.quantize import pact

if TYPE_CHECKING:
    from invnorm_jax.faults.context import FaultContext

__all__ = ["PACT"]


class PACT(nnx.Module):
    """PACT activation with a learned clipping level ``alpha`` (a scalar ``nnx.Param``).

    ``y = quantize_bits(clip(x, 0, alpha))``; see :func:`~invnorm_jax.functional.quantize.pact`.

    >>> act = PACT(bits=2, alpha_init=3.0)
    >>> act(jnp.array([-1.0, 1.2, 9.0]))
    Array([0., 1., 3.], dtype=float32)
    """

    def __init__(self, *, bits: int = 4, alpha_init: float = 6.0, rngs: nnx.Rngs | None = None):
        check_bits(bits, "bits", low=1)
        self.bits = bits
        self.alpha = nnx.Param(jnp.asarray(alpha_init, jnp.float32))

    def __call__(
        self, x, *, key=None, train: bool = False, deterministic: bool | None = None, faults: FaultContext | None = None
    ):
        return pact(x, self.alpha[...], self.bits)
