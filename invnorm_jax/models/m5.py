"""M5: the 1-D convolutional audio classifier (Dai et al., 2017), with 8-bit weights and
activations, for Speech Commands (``[B, 8000, 1]``) and, small, for MNIST-1D (``[B, 40, 1]``).

Structure (channels last)::

    QuantConv1D(1 -> c0, first_kernel, stride first_stride) -> site -> ReLU -> max-pool
    QuantConv1D(c0 -> c1, 3)                                  -> site -> ReLU -> max-pool
    ... one such block per further entry of ``channels``
    global average pool over time -> QuantDense(c_last -> num_classes)

Every conv and the classifier are ``bits``-bit (weights: symmetric per output channel;
input activations: per example), so the whole network, head included, lives on the 8-bit
crossbar, as in the paper; with ``dropout_site="crossbar"`` (default) the baselines' MC dropout
sits on the quantized input of every one of them (``bits=None``: full precision, none), with
``"norm"`` after every site. Convs are "SAME"-padded and the max-pool is skipped once the
sequence is shorter than ``pool``, so one config serves short and long inputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
from flax import nnx

from invnorm_jax.errors import ArgumentError
from invnorm_jax.models.common import Call, check_method, global_avg_pool, max_pool_if_fits
from invnorm_jax.nn.dropout import crossbar_dropout, norm_dropout
from invnorm_jax.nn.keys import number_fault_sites
from invnorm_jax.nn.norm import norm_site
from invnorm_jax.nn.quantized import QuantConv, QuantDense


class M5(nnx.Module):
    """M5 with k-bit weights and activations and the normalization site of ``method``.

    Args:
      method: ``"nn"``, ``"spindrop"``, ``"spatial_spindrop"`` or ``"proposed"``.
      num_classes: classifier outputs (35 Speech Commands words).
      in_channels: input channels (1 for raw audio / MNIST-1D).
      channels: output channels of each conv block; the first block uses ``first_kernel``
        and ``first_stride``, the others kernel 3, stride 1.
      first_kernel: kernel of the first conv (80 samples = 5 ms at 16 kHz).
      first_stride: stride of the first conv.
      pool: max-pool window and stride after every block (skipped when the sequence is
        shorter than ``pool``).
      bits: weight and activation bit width of every layer (None: full precision).
      rate: dropout rate of the site.
      dropout_site: where the baselines' MC dropout sits: ``"crossbar"`` (on every quantized
        layer's input, classifier included) or ``"norm"`` (after every site); see
        :mod:`invnorm_jax.nn.dropout`. ``nn`` and ``proposed`` ignore it.
      rngs: ``nnx.Rngs`` for the initial weights.

    >>> import jax.numpy as jnp
    >>> model = M5("nn", num_classes=10, first_kernel=5, first_stride=1, pool=2, rngs=nnx.Rngs(0))
    >>> model(jnp.zeros((2, 40, 1))).shape
    (2, 10)
    """

    def __init__(
        self,
        method: str,
        *,
        num_classes: int = 35,
        in_channels: int = 1,
        channels: Sequence[int] = (32, 32, 64, 64),
        first_kernel: int = 80,
        first_stride: int = 16,
        pool: int = 4,
        bits: int | None = 8,
        rate: float = 0.3,
        dropout_site: str = "crossbar",
        rngs: nnx.Rngs,
    ):
        check_method(method)
        if not channels:
            raise ArgumentError("channels must name at least one conv block, e.g. channels=(32, 32, 64, 64).")
        self.method = method
        self.pool = pool
        convs, sites, in_ch = [], [], in_channels
        # Full-precision layers (bits=None) are off the crossbar: no input dropout there.
        drop = lambda: None if bits is None else crossbar_dropout(method, rate, dropout_site)  # noqa: E731
        for i, out_ch in enumerate(channels):
            kernel, stride = (first_kernel, first_stride) if i == 0 else (3, 1)
            # No conv bias: the site right after it has its own beta.
            convs.append(
                QuantConv(
                    in_ch,
                    out_ch,
                    kernel,
                    strides=stride,
                    bits=bits,
                    act_bits=bits,
                    use_bias=False,
                    input_dropout=drop(),
                    rngs=rngs,
                )
            )
            sites.append(norm_site(method, out_ch, rate=rate, dropout=norm_dropout(dropout_site), rngs=rngs))
            in_ch = out_ch
        self.convs = nnx.List(convs)
        self.sites = nnx.List(sites)
        self.classifier = QuantDense(in_ch, num_classes, bits=bits, act_bits=bits, input_dropout=drop(), rngs=rngs)
        self.num_fault_sites = number_fault_sites(self)

    def __call__(self, x, *, key=None, train=False, deterministic=None, faults=None):
        """Logits ``[B, num_classes]`` of sequences ``[B, L, in_channels]``."""
        call = Call(key, train, deterministic, faults)
        h = x
        for conv, site in zip(self.convs, self.sites):
            h = site(conv(h, **call.kw), **call.kw)
            h = max_pool_if_fits(jax.nn.relu(h), self.pool)
        return self.classifier(global_avg_pool(h), **call.kw)
