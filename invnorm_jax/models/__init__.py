"""The paper's models, for all four methods, and a registry that builds them by name.

Every model takes the method first (``"nn"``, ``"spindrop"``, ``"spatial_spindrop"``,
``"proposed"``; it only changes the normalization sites) and is called as
``model(x, *, key=None, train=False, deterministic=False, faults=None)``.

========== ======================== ===================================================
name       class                    task
========== ======================== ===================================================
resnet     :class:`BinaryResNet`    binary IR-Net ResNet-18, CIFAR-10 ``[B, 32, 32, 3]``
m5         :class:`M5`              8-bit M5, Speech Commands ``[B, 8000, 1]``
lstm       :class:`LSTMForecaster`  8-bit LSTM, CO2 windows ``[B, 52, 1] -> [B, 1]``
unet       :class:`UNet`            binary / 4-bit PACT U-Net, segmentation
========== ======================== ===================================================

:data:`PRESETS` are the small configurations of the offline demo (each trains in seconds on
a laptop CPU): ``digits`` (8x8 images), ``mnist1d`` (length-40 sequences) and ``co2``.

>>> model = build_model("co2", "proposed", rngs=nnx.Rngs(0))   # the LSTM preset: [B, 104, 1] -> [B, 26]
>>> type(model).__name__
'LSTMForecaster'

"""

from __future__ import annotations

from typing import Any

from flax import nnx

from invnorm_jax.errors import ArgumentError
from invnorm_jax.models.common import check_method, count_params
from invnorm_jax.models.lstm import LSTMForecaster
from invnorm_jax.models.m5 import M5
from invnorm_jax.models.resnet import BasicBlock, BinaryResNet
from invnorm_jax.models.unet import UNet
from invnorm_jax.nn.noise_training import DEFAULT_LEVEL, DEFAULT_NOISE, enable_weight_noise

MODELS: dict[str, type[nnx.Module]] = {"resnet": BinaryResNet, "m5": M5, "lstm": LSTMForecaster, "unet": UNet}

#: name -> (model name, constructor defaults) of the offline demo's small models.
PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    # sklearn digits, [B, 8, 8, 1]: two stages of one block each.
    "digits": ("resnet", dict(in_channels=1, num_classes=10, widths=(16, 32), blocks=(1, 1))),
    # MNIST-1D, [B, 40, 1]: no stride in the first conv, pool 2 (40 -> 20 -> 10 -> 5 -> 2).
    "mnist1d": ("m5", dict(num_classes=10, channels=(32, 32, 64, 64), first_kernel=5, first_stride=1, pool=2)),
    # CO2, [B, 104, 1] -> [B, 26]: the next 26 weeks from two years (configs/co2.py).
    "co2": ("lstm", dict(hidden=32, num_layers=2, out_features=26, norm_placement="hidden")),
}


def available_models() -> tuple[str, ...]:
    """Every name :func:`build_model` accepts: the models, then the presets.

    >>> available_models()
    ('resnet', 'm5', 'lstm', 'unet', 'digits', 'mnist1d', 'co2')
    """
    return tuple(MODELS) + tuple(PRESETS)


def build_model(name: str, method: str, *, rngs: nnx.Rngs, **kwargs) -> nnx.Module:
    """Build model ``name`` (a model or a preset) for ``method``.

    Args:
      name: ``"resnet"``, ``"m5"``, ``"lstm"``, ``"unet"``, or a preset of :data:`PRESETS`.
      method: ``"nn"``, ``"spindrop"``, ``"spatial_spindrop"``, ``"proposed"`` or
        ``"noisy_training"`` (the ``nn`` model wrapped by
        :class:`~invnorm_jax.nn.noise_training.NoisyTraining`: weight noise in training only).
      rngs: ``nnx.Rngs`` for the initial weights.
      **kwargs: constructor arguments; they override a preset's. Every model takes
        ``dropout_site``: ``"crossbar"`` (default; the baselines' MC dropout on the binary /
        quantized layers' inputs) or ``"norm"`` (after every normalization site). ``train_noise``
        (``"additive"``, default, or ``"multiplicative"``) and ``train_noise_level`` (default
        0.1) set ``noisy_training``'s weight noise; the other methods ignore them.

    Returns:
      The model, an ``nnx.Module`` with the library's call convention and numbered fault sites.

    Raises:
      ValueError: for an unknown name or method; the message lists the allowed ones.

    >>> model = build_model("co2", "spindrop", rngs=nnx.Rngs(0), hidden=8, num_layers=1)
    >>> type(model).__name__, count_params(model) < count_params(build_model("co2", "spindrop", rngs=nnx.Rngs(0)))
    ('LSTMForecaster', True)
    >>> try:
    ...     build_model("vgg", "proposed", rngs=nnx.Rngs(0))
    ... except ValueError as err:
    ...     print(err)
    model name='vgg' is unknown; expected one of ('resnet', 'm5', 'lstm', 'unet', 'digits', 'mnist1d', 'co2').
    """
    if name in PRESETS:
        name, defaults = PRESETS[name]
        kwargs = {**defaults, **kwargs}
    if name not in MODELS:
        raise ArgumentError(f"model name={name!r} is unknown; expected one of {available_models()}.")
    check_method(method)
    noise = {k: kwargs.pop(k) for k in ("train_noise", "train_noise_level") if k in kwargs}
    if method == "noisy_training":  # the nn network, trained with weight noise (nn.noise_training)
        return enable_weight_noise(
            MODELS[name]("nn", rngs=rngs, **kwargs),
            noise.get("train_noise", DEFAULT_NOISE),
            noise.get("train_noise_level", DEFAULT_LEVEL),
        )
    return MODELS[name](method, rngs=rngs, **kwargs)


__all__ = [
    "MODELS",
    "PRESETS",
    "BasicBlock",
    "BinaryResNet",
    "LSTMForecaster",
    "M5",
    "UNet",
    "available_models",
    "build_model",
    "count_params",
]
