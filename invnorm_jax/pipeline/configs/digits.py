"""Offline demo task: a binary (IR-Net) ResNet on scikit-learn's 8x8 digits, accuracy.

Run::

    invnorm-jax train --config digits --workdir runs/digits && invnorm-jax sweep --config digits --workdir runs/digits

Demo: ``invnorm-jax demo --tasks digits`` (``--quick``: the ``quick`` variant).
"""

from invnorm_jax.models import PRESETS
from invnorm_jax.pipeline.configs._common import RESNET_SITE, base, ood_fault, sweep


def get_config(variant: str = "full"):
    c = base("digits", variant)
    steps = {"full": 1500, "quick": 200, "smoke": 8}[variant]
    flips = {"full": [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3], "quick": [0.0, 0.15, 0.3], "smoke": [0.0, 0.2]}[variant]
    sigmas = {"full": [0.0, 0.25, 0.5, 0.75, 1.0, 1.5], "quick": [0.0, 1.0], "smoke": [0.0, 1.0]}[variant]
    c.dataset.name, c.dataset.kwargs.seed = "digits", 0
    # The same BinaryResNet class as CIFAR-10's ResNet-18, at 8x8 size: two stages of one block.
    c.model.name, preset = PRESETS["digits"]  # the model is the library's preset, one home for it
    c.model.kwargs.update(dict(preset, **RESNET_SITE))
    c.train.update(
        dict(
            steps=steps,
            batch_size=64,
            learning_rate=3e-3,
            optimizer="adam",
            schedule="cosine",
            warmup_steps=min(50, steps // 4),
            checkpoint_every=max(steps // 3, 1),
        )
    )
    c.eval.num_chips = {"full": 100, "quick": 20, "smoke": 4}[variant]
    c.eval.num_samples = {"full": 5, "quick": 3, "smoke": 2}[variant]
    c.eval.max_test = {"full": None, "quick": None, "smoke": 32}[variant]
    # Retention bit-flips of the stored ±1 weights (the paper's Fig. 5 left).
    c.sweeps.bit_flip = sweep("bit_flip", flips)
    # Conductance variation seen at the normalized activation before sign() (Fig. 5 right).
    c.sweeps.additive = sweep("additive", sigmas, site="preactivation")
    # Fig. 7: rotation 0..84 degrees, uniform noise; the same on chips with 10 % bit-flips.
    c.ood.shifts = ("rotation", "uniform_noise")
    c.ood.fault = ood_fault("bit_flip", 0.1)
    c.ood.num_chips = {"full": 10, "quick": 3, "smoke": 2}[variant]
    return c
