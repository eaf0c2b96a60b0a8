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

The product itself takes one of two forms: the layer's own op (``lax.conv_general_dilated`` or
a matmul), or, for a 1-D or 2-D conv, the banded form of :mod:`invnorm_jax.functional.banded`
(one ``[B * rows, kh * W * C] x [kh * W * C, W_out * O]`` matmul: ``W / kw`` times the
multiply-adds, but a matmul, where int8 runs at several times the conv's rate on CPUs with
AMX/VNNI). Its sums are those of the conv, so it is exact on the same terms.

Which path (``compute``):

* ``"float32"``: the float path ``op(x, codes) * scale`` in the input's dtype (the value of
  ``op(x, codes * scale)`` bit for bit, scale being a power of two).
* ``"int8"`` / ``"bfloat16"``: the exact low-precision path; an :class:`ArgumentError` where
  the operands are not ±1 (a forced choice is never silently ignored).
* ``"int8_band"`` / ``"bfloat16_band"``: the same in the banded form (a dense layer's product
  is a matmul already: there they are ``"int8"`` / ``"bfloat16"``).
* ``"auto"`` (default): the measured rule :func:`auto_compute`, on the CPU backend: int8 convs
  where the reduction length (``kernel_h * kernel_w * in_channels``, or ``in_features``) is at
  least :data:`INT8_MIN_REDUCTION`; below it, the int8 banded form where the image is narrow
  (``W / kw <= BAND_MAX_RATIO``), else float32. Float32 on every other backend (not measured).
  Measurements in ``docs/lowp.md`` and ``docs/benchmarks.md``.

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
from invnorm_jax.functional.banded import banded_conv, banded_flops_ratio

__all__ = [
    "COMPUTES",
    "ENV_VAR",
    "BAND_MAX_RATIO",
    "INT8_MIN_REDUCTION",
    "auto_compute",
    "binary_product",
    "codes_stay_binary",
    "resolve_compute",
    "set_binary_compute",
]

COMPUTES = ("auto", "float32", "int8", "bfloat16", "int8_band", "bfloat16_band")
ENV_VAR = "INVNORM_JAX_BINARY_COMPUTE"

#: Smallest reduction length (kh * kw * C_in) at which int8 beat float32 on the CPU
#: (docs/lowp.md): 3x3 convs with 64 to 512 input channels ran 3-5x faster in int8; with 16
#: input channels (reduction 144) int8 was 10x slower, with 32 (288) about even.
INT8_MIN_REDUCTION = 576

#: Largest ``W / kw`` (the banded form's multiply-adds over the conv's) at which the int8 banded
#: form is used below :data:`INT8_MIN_REDUCTION` (docs/lowp.md's per-shape table; docs/benchmarks.md,
#: "Ahead of a torch loop"): the digits convs (``W / kw`` 1.3 and 2.7, 16-32 channels) ran
#: 2.2-3.8x faster than in float32 and 2.7-10x faster than as int8 convs; at ResNet-18's CIFAR
#: shapes (64-512 channels, reduction >= 576) the int8 conv beat the banded form in every layer.
BAND_MAX_RATIO = 3.0

#: Weight-fault kinds after which binary codes are still exactly ±1.
_BINARY_PRESERVING_KINDS = ("bit_flip", "stuck_at")

_OPERANDS = {"int8": (jnp.int8, jnp.int32), "bfloat16": (jnp.bfloat16, jnp.float32)}
_OPERANDS.update({f"{k}_band": v for k, v in _OPERANDS.items()})


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


def auto_compute(reduction: int, backend: str | None = None, band_ratio: float | None = None) -> str:
    """The measured rule, on CPU: ``"int8"`` for reductions of at least :data:`INT8_MIN_REDUCTION`,
    else ``"int8_band"`` where the banded form costs at most :data:`BAND_MAX_RATIO` times the
    conv's multiply-adds, else ``"float32"``; ``"float32"`` on other backends.

    Args:
      reduction: products summed per output element (``kh * kw * C_in`` or ``in_features``).
      backend: ``jax.default_backend()`` when None.
      band_ratio: the banded form's multiply-adds over the conv's
        (:func:`~invnorm_jax.functional.banded.banded_flops_ratio`); None where there is no
        banded form (a dense layer, a 3-D conv).

    >>> auto_compute(3 * 3 * 64, "cpu"), auto_compute(3 * 3 * 16, "cpu"), auto_compute(4608, "gpu")
    ('int8', 'float32', 'float32')
    >>> auto_compute(3 * 3 * 16, "cpu", band_ratio=8 / 3), auto_compute(3 * 3 * 16, "cpu", band_ratio=32 / 3)
    ('int8_band', 'float32')
    """
    backend = jax.default_backend() if backend is None else backend
    if backend != "cpu":
        return "float32"
    if reduction >= INT8_MIN_REDUCTION:
        return "int8"
    return "int8_band" if band_ratio is not None and band_ratio <= BAND_MAX_RATIO else "float32"


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


def resolve_compute(
    compute: str | None, *, reduction: int, exact: bool, who: str, why_not: str = "", band_ratio: float | None = None
) -> str:
    """The path a layer takes: one of :data:`COMPUTES` but ``"auto"``.

    ``exact`` says whether both operands are ±1; a forced low-precision ``compute`` without it
    is an :class:`ArgumentError` naming ``why_not``, ``"auto"`` falls back to float32.

    >>> resolve_compute("auto", reduction=4608, exact=False, who="BinaryConv")
    'float32'
    >>> resolve_compute("bfloat16", reduction=144, exact=True, who="BinaryConv")
    'bfloat16'
    """
    mode = _default_compute() if check_compute(compute) is None else compute
    if mode == "auto":
        return auto_compute(reduction, band_ratio=band_ratio) if exact else "float32"
    if mode != "float32" and not exact:
        raise ArgumentError(
            f"{who}: compute={mode!r} needs ±1 operands, but {why_not}. Use compute='auto' (falls back "
            "to float32 there) or compute='float32'."
        )
    return mode


def binary_product(
    op: Callable, x: jax.Array, codes: jax.Array, scale: jax.Array, mode: str, lowp_op: Callable | None = None
) -> jax.Array:
    """``op(x, codes * scale)`` computed in ``mode`` (one of :data:`COMPUTES` but ``"auto"``).

    Args:
      op: ``op(a, b, preferred_element_type)``, a conv or matmul contracting the last axis of
        ``a``; with ``None`` it must be the layer's float expression.
      x: ±1 activations (any float dtype) for the low-precision modes.
      codes: ±1 weight codes ``[..., in, out]``.
      scale: per-output-channel power-of-two scale, broadcastable to ``codes``.
      mode: from :func:`resolve_compute`.
      lowp_op: the low-precision modes' product, if not ``op`` (the banded form of a conv, for
        the ``*_band`` modes: :func:`layer_product` passes it). The float path and every
        gradient stay ``op``'s.

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
    operand, accumulate = _OPERANDS[mode]  # a *_band mode differs by its op only

    @jax.custom_vjp
    def lowp_path(x, codes, scale):
        y = (op if lowp_op is None else lowp_op)(x.astype(operand), codes.astype(operand), accumulate)
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
    # The banded form exists for 1-D and 2-D convs (a layer with strides and padding).
    banded = getattr(layer, "strides", None) is not None and codes.ndim in (3, 4)
    mode = resolve_compute(
        layer.compute,
        reduction=reduction_length(layer.kernel.shape),
        exact=layer.binarize_input and codes_stay_binary(faults),
        who=type(layer).__name__,
        why_not=why_not,
        band_ratio=banded_flops_ratio(x.shape[1:-1], codes.shape[:-2]) if banded else None,
    )
    lowp_op = None
    if mode.endswith("_band") and banded:

        def lowp_op(a, b, acc):
            return banded_conv(a, b, layer.strides, layer.padding, preferred_element_type=acc)

    return binary_product(op, x, codes, scale, mode, lowp_op)


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
