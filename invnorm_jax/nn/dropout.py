"""The baselines' dropout on a crossbar's input lines (SpinDrop, Spatial-SpinDrop).

Where the baselines' dropout sits is not published; the models offer two readings
(``dropout_site``, :data:`DROPOUT_SITES`):

* ``"norm"``: MC dropout after every normalization site (:class:`~invnorm_jax.nn.NormSite`).
* ``"crossbar"``: a :class:`CrossbarDropout` on the binarized (or k-bit quantized) input of
  every binary or quantized layer, as the spintronic dropout modules of SpinDrop and
  Spatial-SpinDrop sit on a crossbar's input lines; full-precision layers get none.

A :class:`CrossbarDropout` only draws the keep mask; the layer multiplies its input by it and
its output by :attr:`CrossbarDropout.gain` (``1 / (1 - p)``), so that ±1 operands stay in
``{-1, 0, +1}`` and the exact int8 / bfloat16 products of :mod:`invnorm_jax.nn.lowp` stay exact.
"""

from __future__ import annotations

import jax
from flax import nnx

from invnorm_jax._checks import check_choice, check_rate
from invnorm_jax.functional.dropout import dropout_mask
from invnorm_jax.nn.norm import _Stochastic

__all__ = ["DROPOUT_SITES", "CrossbarDropout", "crossbar_dropout", "norm_dropout"]

#: Where the baselines' MC dropout sits: after the norm sites, or on the crossbar inputs.
DROPOUT_SITES = ("crossbar", "norm")

#: The methods whose sampler is MC dropout, and whether theirs drops whole channels.
_SPATIAL = {"spindrop": False, "spatial_spindrop": True}


class CrossbarDropout(_Stochastic):
    """Keep masks for a layer's crossbar inputs: one per example, active at test time.

    Element-wise (SpinDrop: one module per input line) or, with ``spatial=True``, one draw per
    example and input channel, shared by every spatial position (Spatial-SpinDrop: one module
    per input channel). The layer that owns it computes ``op(x * m, W) * gain``.

    Args:
      rate: the drop probability ``p``.
      spatial: one draw per input channel instead of per element.
      deterministic: default of the call's ``deterministic`` (True: no mask).
      rng_collection: the ``nnx.Rngs`` stream the layer keeps.
      rngs: an ``nnx.Rngs`` or ``nnx.RngStream`` the layer keeps a fork of, or None (then its
        layer is called with ``key=``).

    >>> import jax.numpy as jnp
    >>> drop = CrossbarDropout(0.5, spatial=True)
    >>> drop.mask(jnp.ones((2, 4, 4, 3)), key=jax.random.key(0)).shape, drop.gain
    ((2, 1, 1, 3), 2.0)
    >>> drop.mask(jnp.ones((2, 3)), deterministic=True) is None
    True
    """

    def __init__(
        self,
        rate: float = 0.3,
        *,
        spatial: bool = False,
        deterministic: bool = False,
        rng_collection: str = "dropout",
        rngs: nnx.Rngs | nnx.RngStream | None = None,
    ):
        check_rate(rate)
        self.rate = rate
        self.spatial = bool(spatial)
        self._init_stochastic(deterministic, rng_collection, rngs, only_if_named=False)

    @property
    def gain(self) -> float:
        """``1 / (1 - p)``, the rescale of the layer's output (0 when everything is dropped)."""
        return 1.0 / (1.0 - self.rate) if self.rate < 1 else 0.0

    def mask(self, x, *, key=None, rngs=None, deterministic=None) -> jax.Array | None:
        """The 0/1 keep mask for ``x`` (``[batch, ..., channels]``), or None when inactive."""
        if not self._active(deterministic):
            return None
        return dropout_mask(self._keys(key, rngs, x.shape[0]), x, rate=self.rate, spatial=self.spatial)


def crossbar_dropout(method: str, rate: float, dropout_site: str) -> CrossbarDropout | None:
    """The input dropout of one binary or quantized layer of a ``method`` model, or None.

    Only ``spindrop`` (element-wise) and ``spatial_spindrop`` (per channel) with
    ``dropout_site="crossbar"`` have one; full-precision layers must not ask.

    Raises:
      ArgumentError: an unknown ``dropout_site``.

    >>> crossbar_dropout("spatial_spindrop", 0.3, "crossbar").spatial, crossbar_dropout("proposed", 0.3, "crossbar")
    (True, None)
    """
    check_choice(dropout_site, "dropout_site", DROPOUT_SITES)
    if dropout_site != "crossbar" or method not in _SPATIAL:
        return None
    return CrossbarDropout(rate, spatial=_SPATIAL[method])


def norm_dropout(dropout_site: str) -> bool:
    """Whether the baselines' norm sites carry their MC dropout under ``dropout_site``.

    >>> norm_dropout("norm"), norm_dropout("crossbar")
    (True, False)
    """
    check_choice(dropout_site, "dropout_site", DROPOUT_SITES)
    return dropout_site == "norm"
