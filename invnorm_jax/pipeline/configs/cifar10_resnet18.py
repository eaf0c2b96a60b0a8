"""Table I, row 1: binary (IR-Net) ResNet-18 on CIFAR-10, accuracy; Fig. 5 sweeps.

Run (paper scale, one GPU; CIFAR-10 prepared as ArrayRecord, see docs/datasets.md)::

    invnorm-jax train --config cifar10_resnet18 --workdir runs/cifar10 \\
      && invnorm-jax sweep --config cifar10_resnet18 --workdir runs/cifar10

Smoke (synthetic data from TFDS's mock, CPU, about 1.5 min per two methods; the numbers mean nothing)::

    invnorm-jax train --config cifar10_resnet18 --smoke --workdir /tmp/cifar10-smoke \\
      && invnorm-jax sweep --config cifar10_resnet18 --smoke --workdir /tmp/cifar10-smoke

Model: ``BinaryResNet`` with the defaults, i.e. ResNet-18 for CIFAR (3x3 stem, no max-pool,
widths 64-128-256-512, 2 blocks per stage, 11.2 M parameters), binary weights and
activations in every block conv (IR-Net: Libra-PB + EDE), full-precision stem, 1x1
shortcuts and classifier. Affine-dropout / MC-dropout rate 0.3 (the paper's).

Recipe. The paper gives no training recipe for this model, so the full variant uses IR-Net's
CIFAR-10 recipe (Qin et al., CVPR 2020, the binary method the paper builds on): SGD with
momentum 0.9 (Nesterov here, as ``TrainConfig`` implements it), peak learning rate 0.1,
cosine decay to 0 (no warm-up), 400 epochs of batch 128 (390 steps per epoch, the last
incomplete batch dropped: 156 000 steps), decoupled weight decay 1e-4 on every parameter,
standard augmentation (random 32x32 crop of the 4-pixel zero-padded image, horizontal flip).
The same recipe for all four methods. ``quick`` is a 30-epoch version with a smaller
evaluation for a first look (a few points below the full run are expected).

Evaluation: 100 chips, T = 10 MC samples per chip and input (NN: 1, it is deterministic), the
10 000 test images, in slices of 200 images (the pre-activation sweep vmaps 10 chips at once:
10 chips x 10 samples x 200 images of 32x32x64 float32 activations is about 5 GB per tensor).

Sweeps (Fig. 5):

* ``bit_flip``: every stored ±1 weight of the binary convs flips with probability p,
  p = 0 ... 30 %.
* ``additive``: static (per chip, per neuron) Gaussian variation of the normalized
  pre-activation just before ``sign()``, sigma in units of its (unit) standard deviation.
"""

from invnorm_jax.pipeline.configs._common import RESNET_SITE, base, check_variant, ood_fault, sweep

TRAIN_EXAMPLES = 50_000


def get_config(variant: str = "full"):
    c = base("cifar10_resnet18", check_variant(variant))
    batch = {"full": 128, "quick": 128, "smoke": 16}[variant]
    steps_per_epoch = TRAIN_EXAMPLES // batch
    steps = {"full": 400 * steps_per_epoch, "quick": 30 * steps_per_epoch, "smoke": 3}[variant]
    flips = {"full": [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3], "quick": [0.0, 0.1, 0.2, 0.3], "smoke": [0.0, 0.2]}[
        variant
    ]
    sigmas = {"full": [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5], "quick": [0.0, 0.5, 1.0, 1.5], "smoke": [0.0, 1.0]}[
        variant
    ]
    c.dataset.name = "cifar10"
    c.model.name = "resnet"
    if variant == "smoke":
        # TFDS mock data (random images and labels) and a ResNet of the same class cut to two
        # narrow stages of one block: XLA compiles the training step and one chip simulator per
        # sweep and method, and the 4-stage net takes minutes of that on 2 CPU cores.
        c.dataset.kwargs.update(dict(synthetic=True, num_train=64, num_test=16))
        c.model.kwargs.update(dict(in_channels=3, num_classes=10, widths=(8, 16), blocks=(1, 1), **RESNET_SITE))
    else:
        c.model.kwargs.update(
            dict(in_channels=3, num_classes=10, widths=(64, 128, 256, 512), blocks=(2, 2, 2, 2), **RESNET_SITE)
        )
    c.augment = "crop_flip"
    c.train.update(
        dict(
            steps=steps,
            batch_size=batch,
            learning_rate=0.1,
            optimizer="sgd",
            schedule="cosine",
            warmup_steps=0,
            weight_decay=1e-4,
            checkpoint_every={"full": 10 * steps_per_epoch, "quick": 5 * steps_per_epoch, "smoke": 10}[variant],
        )
    )
    c.eval.num_chips = {"full": 100, "quick": 100, "smoke": 2}[variant]
    c.eval.num_samples = {"full": 10, "quick": 5, "smoke": 2}[variant]
    c.eval.max_test = {"full": None, "quick": 2000, "smoke": 16}[variant]
    c.eval.batch_size = {"full": 200, "quick": 200, "smoke": None}[variant]
    c.sweeps.bit_flip = sweep("bit_flip", flips)
    c.sweeps.additive = sweep("additive", sigmas, site="preactivation")
    # Fig. 7: rotation and uniform-noise shifts of the test set, healthy and on 10 faulty chips.
    c.ood.shifts = ("rotation", "uniform_noise")
    c.ood.fault = ood_fault("bit_flip", 0.1)
    c.ood.num_chips = {"full": 10, "quick": 10, "smoke": 2}[variant]
    return c
