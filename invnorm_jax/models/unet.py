"""U-Net with binary weights and 4-bit PACT activations, for segmentation (e.g. DRIVE vessels).

Structure (channels last, ``L = len(widths)`` levels)::

    encoder level l:  conv_a -> site -> PACT -> conv_b -> site -> PACT   (then 2x2 max-pool)
    decoder level l:  nearest 2x upsample -> concat skip_l -> conv_a -> site -> PACT
                      -> conv_b -> site -> PACT
    head:             1x1 conv (full precision) -> logits [B, H, W, num_classes]

The very first conv (on the raw image) and the 1x1 head are full precision; every other conv
is a :class:`BinaryConv` with ``binarize_input=False``: its weights are ±1 (IR-Net), its
inputs are the 4-bit PACT activations, not sign(). The site after every conv is the inverted
norm GroupNorm-style (``num_groups`` groups of ``C / num_groups`` channels) for ``proposed``
and BatchNorm for the baselines. The baselines' MC dropout sits on every binary conv's (PACT)
input with ``dropout_site="crossbar"`` (default; none on the two full-precision convs), or
after every site with ``"norm"``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from invnorm_jax.errors import ArgumentError
from invnorm_jax.models.common import Call, check_method, max_pool_if_fits, upsample_nearest
from invnorm_jax.nn.dropout import crossbar_dropout, norm_dropout
from invnorm_jax.nn.keys import number_fault_sites
from invnorm_jax.nn.norm import norm_site
from invnorm_jax.nn.quantized import PACT, BinaryConv, QuantConv

# Normalized activations have unit variance and rarely exceed 3: starting PACT's clip there
# spends the 2**act_bits levels on the range actually used (it is learned afterwards).
PACT_ALPHA_INIT = 3.0


class ConvUnit(nnx.Module):
    """``conv -> site -> PACT``; the conv is binary unless ``full_precision``."""

    def __init__(
        self,
        method: str,
        in_ch: int,
        out_ch: int,
        *,
        full_precision: bool,
        num_groups: int,
        act_bits: int,
        rate: float,
        dropout_site: str = "crossbar",
        rngs: nnx.Rngs,
    ):
        if full_precision:
            self.conv = QuantConv(in_ch, out_ch, (3, 3), bits=None, act_bits=None, use_bias=False, rngs=rngs)
        else:
            self.conv = BinaryConv(
                in_ch,
                out_ch,
                (3, 3),
                binarize_input=False,
                input_dropout=crossbar_dropout(method, rate, dropout_site),
                rngs=rngs,
            )
        groups = num_groups if method == "proposed" else None
        self.site = norm_site(
            method, out_ch, norm="batch", num_groups=groups, rate=rate, dropout=norm_dropout(dropout_site), rngs=rngs
        )
        self.act = PACT(bits=act_bits, alpha_init=PACT_ALPHA_INIT)

    def __call__(self, x, *, key=None, train=False, deterministic=None, faults=None):
        call = Call(key, train, deterministic, faults)
        return self.act(self.site(self.conv(x, **call.kw), **call.kw), **call.kw)


class UNet(nnx.Module):
    """Binary-weight, 4-bit-activation U-Net with the normalization site of ``method``.

    Args:
      method: ``"nn"``, ``"spindrop"``, ``"spatial_spindrop"`` or ``"proposed"``.
      in_channels: image channels (1 for the green channel of DRIVE).
      num_classes: output classes per pixel.
      widths: channels per level, from the top (full resolution) to the bottleneck.
      num_groups: groups of the inverted norm for ``proposed`` (must divide every width).
      act_bits: PACT activation bits.
      rate: dropout rate of the site.
      dropout_site: where the baselines' MC dropout sits: ``"crossbar"`` (on every binary
        conv's input) or ``"norm"`` (after every site); ``nn`` and ``proposed`` ignore it.
      rngs: ``nnx.Rngs`` for the initial weights.

    Inputs are ``[B, H, W, in_channels]`` with H and W multiples of ``2 ** (len(widths) - 1)``.

    >>> model = UNet("nn", widths=(8, 16), rngs=nnx.Rngs(0))
    >>> model(jnp.zeros((1, 16, 16, 1))).shape
    (1, 16, 16, 2)
    """

    def __init__(
        self,
        method: str,
        *,
        in_channels: int = 1,
        num_classes: int = 2,
        widths: Sequence[int] = (16, 32, 64, 128),
        num_groups: int = 8,
        act_bits: int = 4,
        rate: float = 0.3,
        dropout_site: str = "crossbar",
        rngs: nnx.Rngs,
    ):
        check_method(method)
        if not widths:
            raise ArgumentError("widths must name at least one level, e.g. widths=(16, 32, 64, 128).")
        self.method = method
        self.levels = len(widths)
        unit = dict(num_groups=num_groups, act_bits=act_bits, rate=rate, dropout_site=dropout_site, rngs=rngs)
        down, in_ch = [], in_channels
        for level, width in enumerate(widths):
            first = ConvUnit(method, in_ch, width, full_precision=level == 0, **unit)
            down.append(nnx.List([first, ConvUnit(method, width, width, full_precision=False, **unit)]))
            in_ch = width
        up = []
        for level in reversed(range(len(widths) - 1)):
            cat = widths[level + 1] + widths[level]
            up.append(
                nnx.List(
                    [
                        ConvUnit(method, cat, widths[level], full_precision=False, **unit),
                        ConvUnit(method, widths[level], widths[level], full_precision=False, **unit),
                    ]
                )
            )
        self.down = nnx.List(down)
        self.up = nnx.List(up)
        self.head = QuantConv(widths[0], num_classes, (1, 1), bits=None, act_bits=None, rngs=rngs)
        self.num_fault_sites = number_fault_sites(self)

    def _check_input(self, x: jax.Array) -> None:
        multiple = 2 ** (self.levels - 1)
        if x.ndim != 4 or x.shape[1] % multiple or x.shape[2] % multiple:
            raise ArgumentError(
                f"x.shape={x.shape}: expected [batch, H, W, channels] with H and W multiples of {multiple} "
                f"(2 ** (len(widths) - 1))."
            )

    def __call__(self, x, *, key=None, train=False, deterministic=None, faults=None):
        """Per-pixel logits ``[B, H, W, num_classes]`` of images ``[B, H, W, in_channels]``."""
        self._check_input(x)
        call = Call(key, train, deterministic, faults)
        skips, h = [], x
        for level, pair in enumerate(self.down):
            if level > 0:
                h = max_pool_if_fits(h, 2)
            for unit in pair:
                h = unit(h, **call.kw)
            skips.append(h)
        for pair, skip in zip(self.up, reversed(skips[:-1])):
            h = jnp.concatenate([upsample_nearest(h, 2), skip], axis=-1)
            for unit in pair:
                h = unit(h, **call.kw)
        return self.head(h, **call.kw)
