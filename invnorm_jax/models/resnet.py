"""IR-Net style binary ResNet (ResNet-18 for CIFAR-10 by default, tiny ones for digits).

Structure (channels last)::

    stem:   QuantConv 3x3 (full precision, stride 1, no max-pool) -> site -> hardtanh
    stages: len(widths) stages of BasicBlocks (stride 2 at the start of every stage but the first)
    head:   global average pool -> QuantDense (full precision) -> logits

Every conv is followed by the normalization site of ``method`` (:func:`norm_site`): an
inverted norm with affine dropout for ``proposed``, BatchNorm for the baselines, whose MC
dropout sits on the binary convs' inputs (``dropout_site="crossbar"``) or after every norm
(``"norm"``). The binary convs binarize both their weights (IR-Net: Libra-PB + EDE) and their
inputs (``sign``); the stem, the 1x1 shortcut convs and the classifier stay full precision, as
IMC designs usually keep them off the binary crossbar.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
from flax import nnx

from invnorm_jax._checks import check_choice
from invnorm_jax.errors import ArgumentError
from invnorm_jax.functional.init import normal_beta, normal_gamma
from invnorm_jax.models.common import Call, check_method, global_avg_pool, hardtanh
from invnorm_jax.nn.dropout import crossbar_dropout, norm_dropout
from invnorm_jax.nn.keys import number_fault_sites
from invnorm_jax.nn.norm import norm_site
from invnorm_jax.nn.quantized import BinaryConv, PreactivationSite, QuantConv, QuantDense

#: Where pre-activation variation goes in a block (docs/faults.md): on the standardized
#: activation (every method alike), after the baselines' affine and dropout, or at sign()'s input.
PREACTIVATION_SITES = ("normalized", "norm_output", "sign_input")


def _full_precision_conv(in_ch: int, out_ch: int, kernel: int, stride: int, rngs: nnx.Rngs) -> QuantConv:
    # No bias: the norm site right after it has its own beta.
    return QuantConv(
        in_ch, out_ch, (kernel, kernel), bits=None, act_bits=None, strides=stride, use_bias=False, rngs=rngs
    )


class BasicBlock(nnx.Module):
    """IR-Net basic block with two binary 3x3 convs and two identity-style shortcuts.

    ::

        out = hardtanh(site1(binconv1(x)) + shortcut(x))
        y   = hardtanh(site2(binconv2(out)) + out)

    The second shortcut (around ``binconv2``) is IR-Net's: every binary conv gets its own
    real-valued skip, which keeps the information the sign() throws away. ``shortcut`` is
    the identity, or a full-precision 1x1 conv + site when the shape changes.

    Pre-activation faults (``preactivation_site``): ``"normalized"`` (default) perturbs the
    standardized activation ``x_hat`` of ``site1`` and ``site2``, before anything that follows the
    normalization (the baselines' affine and dropout, the residual add, the hardtanh): the
    inverted norm's output is ``x_hat``, so for ``proposed`` it is that output, and for the
    baselines the site sits inside the :class:`~invnorm_jax.nn.NormSite`. ``"norm_output"``
    perturbs ``site1(...)`` and ``site2(...)`` (after the baselines' affine and dropout), before
    the residual add and the hardtanh; ``"sign_input"`` perturbs the input of each binary
    conv's ``sign()`` instead. ``dropout_site``: see :class:`BinaryResNet`.

    >>> block = BasicBlock("proposed", 4, 8, 2, rate=0.3, rngs=nnx.Rngs(0))
    >>> block(jax.numpy.ones((1, 6, 6, 4)), key=jax.random.key(0)).shape  # stride 2, 4 -> 8 channels
    (1, 3, 3, 8)
    """

    def __init__(
        self,
        method: str,
        in_ch: int,
        out_ch: int,
        stride: int,
        *,
        rate: float,
        rngs: nnx.Rngs,
        preactivation_site: str = "normalized",
        dropout_site: str = "crossbar",
        site_kwargs: dict | None = None,
    ):
        check_choice(preactivation_site, "preactivation_site", PREACTIVATION_SITES)
        at_sign = preactivation_site == "sign_input"
        # Inside the norm site (between standardization and affine) for the baselines only.
        inside = preactivation_site == "normalized" and method != "proposed"
        site_kwargs = dict(site_kwargs or {}, rate=rate, dropout=norm_dropout(dropout_site), rngs=rngs)
        self.conv1 = BinaryConv(
            in_ch,
            out_ch,
            (3, 3),
            strides=stride,
            input_faults=at_sign,
            input_dropout=crossbar_dropout(method, rate, dropout_site),
            rngs=rngs,
        )
        self.site1 = norm_site(method, out_ch, preactivation=PreactivationSite() if inside else None, **site_kwargs)
        self.conv2 = BinaryConv(
            out_ch,
            out_ch,
            (3, 3),
            input_faults=at_sign,
            input_dropout=crossbar_dropout(method, rate, dropout_site),
            rngs=rngs,
        )
        self.site2 = norm_site(method, out_ch, preactivation=PreactivationSite() if inside else None, **site_kwargs)
        # Not built at sign()'s input, so "sign_input" keeps the fault ids it always had.
        self.preact1 = None if at_sign or inside else PreactivationSite()
        self.preact2 = None if at_sign or inside else PreactivationSite()
        if stride != 1 or in_ch != out_ch:
            self.shortcut_conv = _full_precision_conv(in_ch, out_ch, 1, stride, rngs)
            self.shortcut_site = norm_site(method, out_ch, **site_kwargs)
        else:
            self.shortcut_conv = None
            self.shortcut_site = None

    def _shortcut(self, x: jax.Array, call: Call) -> jax.Array:
        if self.shortcut_conv is None:
            return x
        return self.shortcut_site(self.shortcut_conv(x, **call.kw), **call.kw)

    def __call__(self, x, *, key=None, train=False, deterministic=None, faults=None):
        call = Call(key, train, deterministic, faults)
        out = self._preact(self.preact1, self.site1(self.conv1(x, **call.kw), **call.kw), call)
        out = hardtanh(out + self._shortcut(x, call))
        y = self._preact(self.preact2, self.site2(self.conv2(out, **call.kw), **call.kw), call)
        return hardtanh(y + out)

    @staticmethod
    def _preact(site, x, call: Call):
        return x if site is None else site(x, **call.kw)


class BinaryResNet(nnx.Module):
    """Binary ResNet (IR-Net) with a CIFAR stem; ResNet-18 with the default widths and blocks.

    Args:
      method: ``"nn"``, ``"spindrop"``, ``"spatial_spindrop"`` or ``"proposed"``; it only
        changes the normalization sites.
      num_classes: classifier outputs.
      in_channels: input channels (3 for CIFAR-10, 1 for digits).
      widths: channels of each stage.
      blocks: BasicBlocks per stage (same length as ``widths``).
      rate: dropout rate of the site (affine dropout, MC dropout or spatial dropout).
      mode: affine dropout's ``"vector"`` (the paper's) or ``"element"`` draws (``proposed`` only).
      init_std: std of the ``N(1, s)`` gamma and ``N(0, s)`` beta initializers (``proposed``
        only; the paper's "variance 0.3" read as a std, 0.55 read literally).
      preactivation_site: where pre-activation faults go: ``"normalized"`` (default: on the
        standardized activation, the same units for every method), ``"norm_output"`` (after the
        baselines' affine and dropout, before the residual add and hardtanh) or
        ``"sign_input"`` (see :class:`BasicBlock`).
      dropout_site: where the baselines' MC dropout sits: ``"crossbar"`` (default: on every
        binary conv's binarized input, element-wise for ``spindrop``, per input channel for
        ``spatial_spindrop``; none on the full-precision stem, shortcuts and classifier) or
        ``"norm"`` (after every normalization site). ``nn`` and ``proposed`` ignore it.
      rngs: ``nnx.Rngs`` for the initial weights.

    The default (widths ``(64, 128, 256, 512)``, blocks ``(2, 2, 2, 2)``) has 11,173,962
    parameters for 10 classes, whatever the method.

    >>> import jax.numpy as jnp
    >>> model = BinaryResNet("proposed", in_channels=1, widths=(16, 32), blocks=(1, 1), rngs=nnx.Rngs(0))
    >>> model(jnp.zeros((2, 8, 8, 1)), key=jax.random.key(0)).shape
    (2, 10)
    """

    def __init__(
        self,
        method: str,
        *,
        num_classes: int = 10,
        in_channels: int = 3,
        widths: Sequence[int] = (64, 128, 256, 512),
        blocks: Sequence[int] = (2, 2, 2, 2),
        rate: float = 0.3,
        mode: str = "vector",
        init_std: float = 0.3,
        preactivation_site: str = "normalized",
        dropout_site: str = "crossbar",
        rngs: nnx.Rngs,
    ):
        check_method(method)
        if len(widths) != len(blocks) or not widths:
            raise ArgumentError(
                f"widths={tuple(widths)} and blocks={tuple(blocks)} must be non-empty and equally long."
            )
        self.method = method
        self.stem = _full_precision_conv(in_channels, widths[0], 3, 1, rngs)
        site_kwargs = dict(mode=mode, scale_init=normal_gamma(init_std), bias_init=normal_beta(init_std))
        self.stem_site = norm_site(
            method, widths[0], rate=rate, dropout=norm_dropout(dropout_site), rngs=rngs, **site_kwargs
        )
        layers, in_ch = [], widths[0]
        for stage, (width, count) in enumerate(zip(widths, blocks)):
            for b in range(count):
                stride = 2 if stage > 0 and b == 0 else 1
                layers.append(
                    BasicBlock(
                        method,
                        in_ch,
                        width,
                        stride,
                        rate=rate,
                        rngs=rngs,
                        preactivation_site=preactivation_site,
                        dropout_site=dropout_site,
                        site_kwargs=site_kwargs,
                    )
                )
                in_ch = width
        self.blocks = nnx.List(layers)
        self.classifier = QuantDense(in_ch, num_classes, bits=None, act_bits=None, rngs=rngs)
        self.num_fault_sites = number_fault_sites(self)

    def __call__(self, x, *, key=None, train=False, deterministic=None, faults=None):
        """Logits ``[B, num_classes]`` of images ``[B, H, W, in_channels]``."""
        call = Call(key, train, deterministic, faults)
        h = hardtanh(self.stem_site(self.stem(x, **call.kw), **call.kw))
        for block in self.blocks:
            h = block(h, **call.kw)
        return self.classifier(global_avg_pool(h), **call.kw)
