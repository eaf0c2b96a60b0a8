"""A k-bit LSTM cell (Flax NNX) whose two projections are :class:`~invnorm_jax.nn.QuantDense`
fault sites."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
from flax import nnx

from invnorm_jax._checks import check_channels, check_float_input, check_positive_int
from invnorm_jax.errors import ArgumentError
from invnorm_jax.nn.quantized import QuantDense

if TYPE_CHECKING:  # the type only: nn must not pull in the fault models at import time
    from invnorm_jax.faults.context import FaultContext

__all__ = ["QuantLSTMCell"]


class QuantLSTMCell(nnx.Module):
    """LSTM cell whose input and recurrent matmuls are k-bit :class:`QuantDense` layers.

    With ``z = W_x x + W_h h + b`` split into gates ``(i, f, g, o)``::

        c' = sigmoid(f) * c + sigmoid(i) * tanh(g),    h' = sigmoid(o) * tanh(c')

    With a ``gate_site`` (a normalization site over the ``4 * hidden`` gate sums, LayerNorm-LSTM
    style), ``z`` is normalized before the split: ``z = gate_site(W_x x + W_h h + b)``.

    The forget-gate bias starts at 1. The cell itself is not a fault site: its two
    projections (``input_proj``, ``recurrent_proj``) are, and as their ``fault_id`` is
    fixed, every time step of one chip sees the same faulty weights. The carry is
    ``(c, h)``, as in ``nnx.LSTMCell``. :meth:`scan` runs a whole sequence.

    ``input_dropout`` (a factory, called once per projection, of a
    :class:`~invnorm_jax.nn.dropout.CrossbarDropout` or None) puts a dropout on each projection's
    quantized input, one keep mask per example: element-wise (SpinDrop) a fresh mask at every
    step, as every step is a new read of the crossbar; per channel (Spatial-SpinDrop) one mask
    per feature for the whole sequence, as a spatial dropout drops a whole feature map.

    >>> cell = QuantLSTMCell(3, 5, rngs=nnx.Rngs(0))
    >>> carry, h = cell(cell.initialize_carry(2), jnp.ones((2, 3)))
    >>> h.shape
    (2, 5)
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        *,
        bits: int | None = 8,
        act_bits: int | None = 8,
        gate_site: nnx.Module | None = None,
        input_dropout: Callable[[], nnx.Module | None] | None = None,
        rngs: nnx.Rngs,
    ):
        check_positive_int(in_features, "in_features")
        check_positive_int(hidden_features, "hidden_features")
        self.hidden_features = hidden_features
        self.gate_site = gate_site
        gates = 4 * hidden_features
        dropout = input_dropout or (lambda: None)
        self.input_proj = QuantDense(
            in_features, gates, bits=bits, act_bits=act_bits, input_dropout=dropout(), rngs=rngs
        )
        self.recurrent_proj = QuantDense(
            hidden_features,
            gates,
            bits=bits,
            act_bits=act_bits,
            use_bias=False,
            kernel_init=nnx.initializers.orthogonal(),
            input_dropout=dropout(),
            rngs=rngs,
        )
        bias = jnp.zeros((gates,), jnp.float32).at[hidden_features : 2 * hidden_features].set(1.0)
        self.input_proj.bias[...] = bias

    def initialize_carry(self, batch: int, dtype=jnp.float32):
        """Zero ``(c, h)``, each ``[batch, hidden_features]``."""
        zeros = jnp.zeros((batch, self.hidden_features), dtype)
        return zeros, zeros

    def _update(self, carry, z, key, train, deterministic):
        c, _ = carry
        if self.gate_site is not None:  # the same key every step: one mask per sequence
            z = self.gate_site(z, key=key, train=train, deterministic=deterministic)
        i, f, g, o = jnp.split(z, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (c, h), h

    def __call__(
        self,
        carry,
        x,
        *,
        key=None,
        train: bool = False,
        deterministic: bool | None = None,
        faults: FaultContext | None = None,
    ):
        """One step: ``((c, h), h)`` from the carry and ``x`` ``[batch, in_features]``."""
        kw = dict(key=key, deterministic=deterministic, faults=faults)
        z = self.input_proj(x, **kw) + self.recurrent_proj(carry[1], **kw)
        return self._update(carry, z, key, train, deterministic)

    def _masks(self, xs, key, deterministic):
        """The projections' input masks for a whole sequence, time-major ``[L, B, F]`` (element-wise:
        one per step) or ``[1, B, F]`` (per channel: one for every step); None where there is none."""
        hs = jnp.zeros((*xs.shape[:2], self.hidden_features), xs.dtype)

        def mask(proj, seq):
            m = proj.input_mask(seq, key=key, deterministic=deterministic)  # [B, L, F] or [B, 1, F]
            return None if m is None else jnp.swapaxes(jnp.broadcast_to(m, (*m.shape[:2], seq.shape[2])), 0, 1)

        return mask(self.input_proj, xs), mask(self.recurrent_proj, hs)

    def scan(
        self,
        xs,
        *,
        key=None,
        train: bool = False,
        deterministic: bool | None = None,
        faults: FaultContext | None = None,
    ) -> jax.Array:
        """Hidden states ``[B, L, hidden]`` of the sequence ``xs`` ``[B, L, in_features]`` from a zero carry.

        The same values as calling the cell step by step, computed faster: both kernels are
        deployed (and, on a chip, faulted) once for the whole sequence rather than once per step.
        (Projecting every input step in one matmul before the loop was measured slower on a CPU:
        the ``[chips, samples, batch, time, 4 * hidden]`` array it writes costs more than it saves.)

        >>> cell = QuantLSTMCell(1, 4, rngs=nnx.Rngs(0))
        >>> cell.scan(jnp.ones((2, 7, 1))).shape
        (2, 7, 4)
        """
        check_float_input(xs, "QuantLSTMCell.scan")
        if xs.ndim != 3:
            raise ArgumentError(
                f"QuantLSTMCell.scan: xs.shape={tuple(xs.shape)}: expected [batch, time, features]; "
                "a single sequence is xs[None], a univariate series xs[..., None]."
            )
        check_channels(xs, self.input_proj.kernel.shape[0], "QuantLSTMCell.scan", axis_name="features", name="xs")
        w_x = self.input_proj._effective_kernel(faults)
        w_h = self.recurrent_proj._effective_kernel(faults)
        masks = self._masks(xs, key, deterministic)
        per_step = tuple(m if m is not None and m.shape[0] > 1 else None for m in masks)  # scanned over time
        fixed = tuple(m[0] if m is not None and m.shape[0] == 1 else None for m in masks)  # one for every step

        def step(carry, inputs):
            x_t, step_masks = inputs
            mask_x, mask_h = (f if m is None else m for m, f in zip(step_masks, fixed))
            z = self.input_proj.project(x_t, w_x, mask_x) + self.recurrent_proj.project(carry[1], w_h, mask_h)
            return self._update(carry, z, key, train, deterministic)

        _, hs = jax.lax.scan(step, self.initialize_carry(xs.shape[0], xs.dtype), (jnp.swapaxes(xs, 0, 1), per_step))
        return jnp.swapaxes(hs, 0, 1)
