"""Offline demo task: a binary (IR-Net) ResNet on scikit-learn's 8x8 digits.

Full:  invnorm-jax train --config experiments/configs/digits.py && invnorm-jax sweep --config experiments/configs/digits.py
Demo:  invnorm-jax demo --tasks digits
"""

METHODS = ("nn", "spindrop", "spatial_spindrop", "proposed")


def get_config(variant: str = "full") -> dict:
    steps = {"full": 1500, "quick": 200, "smoke": 8}[variant]
    levels = {
        "full": [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3],
        "quick": [0.0, 0.15, 0.3],
        "smoke": [0.0, 0.2],
    }[variant]
    sigmas = {"full": [0.0, 0.25, 0.5, 0.75, 1.0, 1.5], "quick": [0.0, 1.0], "smoke": [0.0, 1.0]}[variant]
    return dict(
        name="digits",
        dataset=dict(name="digits", kwargs=dict(seed=0)),
        # The same BinaryResNet class as CIFAR-10's ResNet-18, at 8x8 size: two stages of one block.
        model=dict(name="resnet", kwargs=dict(in_channels=1, num_classes=10, widths=(16, 32), blocks=(1, 1))),
        metric="accuracy",
        methods=METHODS,
        rate=0.3,
        train=dict(steps=steps, batch_size=64, learning_rate=3e-3, optimizer="adam", schedule="cosine",
                   warmup_steps=min(50, steps // 4), checkpoint_every=max(steps // 3, 1)),
        eval=dict(num_chips={"full": 100, "quick": 20, "smoke": 4}[variant],
                  num_samples={"full": 5, "quick": 3, "smoke": 2}[variant],
                  max_test={"full": None, "quick": None, "smoke": 32}[variant]),
        sweeps={
            # Retention bit-flips of the stored ±1 weights (the paper's Fig. 5 left).
            "bit_flip": dict(kind="bit_flip", site="weights", levels=levels),
            # Conductance variation seen at the normalized activation before sign() (Fig. 5 right).
            "additive": dict(kind="additive", site="preactivation", levels=sigmas),
        },
        # Fig. 7: rotation 0..84 degrees, uniform noise; the same on chips with 10 % bit-flips.
        ood=dict(shifts=("rotation", "uniform_noise"), fault=dict(kind="bit_flip", site="weights", level=0.1),
                 num_chips={"full": 10, "quick": 3, "smoke": 2}[variant]),
        seed=0,
    )
