"""Exact low-precision compute for the binary layers (int8 or bfloat16 operands).

A binary layer computes ``y = op(sign(x), codes * scale)`` with ±1 activations, ±1 weight codes
and a per-output-channel power-of-two ``scale`` (IR-Net). Every product is ±1 and every sum an
integer, so the same value comes out of::

    y = float32(op(int8(sign(x)), int8(codes), accumulate in int32)) * scale
    y = op(bfloat16(sign(x)), bfloat16(codes), accumulate in float32) * scale

bit for bit (float32 holds every integer below 2**24, far above the largest reduction length
of these layers, and multiplying by a power of two is exact). :func:`binary_product` picks the
path, and falls back to float32 where the operands are not ±1:

* the layer does not binarize its input (``binarize_input=False``: real-valued input);
* a weight fault that makes the codes analogue (additive, multiplicative or uniform variation,
  drift). Bit-flips and stuck-at cells keep them ±1; pre-activation faults act before
  ``sign()`` and so keep the input ±1.

Which path (``compute``):

* ``"float32"``: the float path ``op(x, codes) * scale`` in the input's dtype (the value of
  ``op(x, codes * scale)`` bit for bit, scale being a power of two).
* ``"int8"`` / ``"bfloat16"``: the exact low-precision path; an :class:`ArgumentError` where
  the operands are not ±1 (a forced choice is never silently ignored).
* ``"auto"`` (default): the measured rule :func:`auto_compute`: int8 on the CPU backend when
  the reduction length (``kernel_h * kernel_w * in_channels``, or ``in_features``) is at least
  :data:`INT8_MIN_REDUCTION`, else float32; float32 on every other backend (not measured).
  Measurements in ``docs/lowp.md``.

The choice is made when the layer is traced. A layer's ``compute`` attribute (set by the
layer's ``compute=`` argument or :func:`set_binary_compute` on a model) is part of the model's
graph definition, so changing it recompiles a jitted simulator. ``compute=None`` defers to the
environment variable ``INVNORM_JAX_BINARY_COMPUTE`` (read at trace time; default ``"auto"``):
set it before the first call, since a cached compilation does not see a later change.

The low-precision paths keep the float path's gradients (a custom VJP that differentiates the
float32 expression), so training through them is correct, if not faster.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from invnorm_jax.errors import ArgumentError

__all__ = [
    "COMPUTES",
    "ENV_VAR",
    "INT8_MIN_REDUCTION",
    "auto_compute",
    "binary_product",
    "codes_stay_binary",
    "resolve_compute",
    "set_binary_compute",
]

COMPUTES = ("auto", "float32", "int8", "bfloat16")
ENV_VAR = "INVNORM_JAX_BINARY_COMPUTE"

#: Smallest reduction length (kh * kw * C_in) at which int8 beat float32 on the CPU
#: (docs/lowp.md): 3x3 convs with 64 to 512 input channels ran 3-5x faster in int8; with 16
#: input channels (reduction 144) int8 was 10x slower, with 32 (288) about even.
INT8_MIN_REDUCTION = 576

#: Weight-fault kinds after which binary codes are still exactly ±1.
_BINARY_PRESERVING_KINDS = ("bit_flip", "stuck_at")

_OPERANDS = {"int8": (jnp.int8, jnp.int32), "bfloat16": (jnp.bfloat16, jnp.float32)}


def check_compute(compute, name: str = "compute") -> str | None:
    """``compute`` if it is None or one of :data:`COMPUTES`, else a clear :class:`ArgumentError`."""
    if compute is not None and compute not in COMPUTES:
        raise ArgumentError(
            f"{name}={compute!r} is unknown; expected one of {COMPUTES} (or None: the "
            f"{ENV_VAR} environment variable, default 'auto')."
        )
    return compute


def _default_compute() -> str:
    return check_compute(os.environ.get(ENV_VAR, "auto") or "auto", f"environment variable {ENV_VAR}")


def auto_compute(reduction: int, backend: str | None = None) -> str:
    """The measured rule: ``"int8"`` on CPU for reductions of at least :data:`INT8_MIN_REDUCTION`.

    Args:
      reduction: products summed per output element (``kh * kw * C_in`` or ``in_features``).
      backend: ``jax.default_backend()`` when None.

    >>> auto_compute(3 * 3 * 64, "cpu"), auto_compute(3 * 3 * 16, "cpu"), auto_compute(4608, "gpu")
    ('int8', 'float32', 'float32')
    """
    backend = jax.default_backend() if backend is None else backend
    return "int8" if backend == "cpu" and reduction >= INT8_MIN_REDUCTION else "float32"


def codes_stay_binary(faults) -> bool:
    """Whether a layer's ±1 weight codes stay ±1 under ``faults`` (a ``FaultContext`` or None).

    >>> from invnorm_jax.faults import Fault, FaultContext
    >>> [codes_stay_binary(FaultContext(Fault(kind, 0.1), jax.random.key(0))) for kind in ("bit_flip", "additive")]
    [True, False]
    """
    if faults is None:
        return True
    # Only a chip's Fault says what it does; any other context (e.g. training noise) may not keep ±1.
    # A FaultChoice (one of several faults, picked at run time) keeps them if every choice does.
    choices = getattr(faults, "choices", None) or (getattr(faults, "fault", None),)
    return all(
        getattr(f, "site", None) in ("weights", "preactivation")
        and (f.site != "weights" or f.kind in _BINARY_PRESERVING_KINDS)
        for f in choices
    )


def resolve_compute(compute: str | None, *, reduction: int, exact: bool, who: str, why_not: str = "") -> str:
    """The path a layer takes: ``"float32"``, ``"int8"`` or ``"bfloat16"``.

    ``exact`` says whether both operands are ±1; a forced low-precision ``compute`` without it
    is an :class:`ArgumentError` naming ``why_not``, ``"auto"`` falls back to float32.

    >>> resolve_compute("auto", reduction=4608, exact=False, who="BinaryConv")
    'float32'
    >>> resolve_compute("bfloat16", reduction=144, exact=True, who="BinaryConv")
    'bfloat16'
    """
    mode = _default_compute() if check_compute(compute) is None else compute
    if mode == "auto":
        return auto_compute(reduction) if exact else "float32"
    if mode != "float32" and not exact:
        raise ArgumentError(
            f"{who}: compute={mode!r} needs ±1 operands, but {why_not}. Use compute='auto' (falls back "
            "to float32 there) or compute='float32'."
        )
    return mode


def binary_product(op: Callable, x: jax.Array, codes: jax.Array, scale: jax.Array, mode: str) -> jax.Array:
    """``op(x, codes * scale)`` computed in ``mode`` (``"float32"``, ``"int8"`` or ``"bfloat16"``).

    Args:
      op: ``op(a, b, preferred_element_type)``, a conv or matmul contracting the last axis of
        ``a``; with ``None`` it must be the layer's float expression.
      x: ±1 activations (any float dtype) for the low-precision modes.
      codes: ±1 weight codes ``[..., in, out]``.
      scale: per-output-channel power-of-two scale, broadcastable to ``codes``.
      mode: from :func:`resolve_compute`.

    Returns:
      ``op(x, codes * scale)`` in ``x``'s dtype; the low-precision modes give the float32 path's
      value bit for bit.

    >>> x, codes = jnp.array([[1.0, -1.0, 1.0]]), jnp.array([[1.0], [1.0], [-1.0]])
    >>> matmul = lambda a, b, acc: jnp.matmul(a, b, preferred_element_type=acc)
    >>> binary_product(matmul, x, codes, jnp.array([[0.5]]), "int8")
    Array([[-0.5]], dtype=float32)
    """

    def float_path(x, codes, scale):
        # conv(x, codes) * scale, not conv(x, codes * scale): the same value bit for bit (scale is
        # a power of two), and the same graph after the conv as the low-precision paths, so that
        # XLA fuses what follows alike (it otherwise reorders a later reduction: ulps differ).
        return op(x, codes.astype(x.dtype), None) * jnp.reshape(scale, (-1,)).astype(x.dtype)

    if mode == "float32":
        return float_path(x, codes, scale)
    operand, accumulate = _OPERANDS[mode]

    @jax.custom_vjp
    def lowp_path(x, codes, scale):
        y = op(x.astype(operand), codes.astype(operand), accumulate)
        return (y.astype(jnp.float32) * jnp.reshape(scale, (-1,)).astype(jnp.float32)).astype(x.dtype)

    def fwd(x, codes, scale):
        return lowp_path(x, codes, scale), (x, codes, scale)

    def bwd(res, g):  # the float path's gradients (sign's and EDE's estimators upstream)
        return jax.vjp(float_path, *res)[1](g)

    lowp_path.defvjp(fwd, bwd)
    return lowp_path(x, codes, scale)


def layer_product(layer, op: Callable, x: jax.Array, codes: jax.Array, scale: jax.Array, faults) -> jax.Array:
    """A binary layer's ``op(x, codes * scale)`` on the path its ``compute`` resolves to.

    ``x`` is the layer's (already binarized, where it binarizes) input and ``codes`` its
    (already faulted) codes; ``faults`` says whether they are still ±1.
    """
    if not layer.binarize_input:
        why_not = "its input is not binarized (binarize_input=False: real-valued input)"
    else:
        why_not = f"the weight fault {getattr(faults, 'fault', faults)!r} makes its codes analogue"
    mode = resolve_compute(
        layer.compute,
        reduction=reduction_length(layer.kernel.shape),
        exact=layer.binarize_input and codes_stay_binary(faults),
        who=type(layer).__name__,
        why_not=why_not,
    )
    return binary_product(op, x, codes, scale, mode)


def reduction_length(kernel_shape) -> int:
    """Products summed per output element of a ``[..., in, out]`` kernel."""
    return math.prod(kernel_shape[:-1])


def set_binary_compute(model: nnx.Module, compute: str | None) -> int:
    """Set ``compute`` on every binary layer of ``model``; returns how many layers were set.

    >>> from invnorm_jax.nn.quantized import BinaryDense
    >>> set_binary_compute(BinaryDense(4, 2, rngs=nnx.Rngs(0)), "float32")
    1
    """
    check_compute(compute)
    count = 0
    for _, node in nnx.iter_graph(model):
        if isinstance(node, nnx.Module) and getattr(node, "bits", None) == 1 and hasattr(node, "compute"):
            node.compute = compute
            count += 1
    return count
