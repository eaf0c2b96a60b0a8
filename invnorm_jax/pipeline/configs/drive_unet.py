"""Table I, row 4: U-Net with binary weights and 4-bit activations on DRIVE vessels, mIoU; Fig. 6 sweep.

Run (paper scale, one GPU; DRIVE unzipped at ``$INVNORM_DATA_DIR/DRIVE``, see
docs/datasets.md)::

    invnorm-jax train --config drive_unet --workdir runs/drive \\
      && invnorm-jax sweep --config drive_unet --workdir runs/drive

Smoke (a generated folder in the official DRIVE layout: 2 + 2 images of 64x64 with
synthetic vessels, a two-level U-Net, CPU, about 1.5 min per two methods; the numbers
mean nothing)::

    invnorm-jax train --config drive_unet --smoke --workdir /tmp/drive-smoke \\
      && invnorm-jax sweep --config drive_unet --smoke --workdir /tmp/drive-smoke

Data: the green channel, standardized per image inside its field of view (FOV), zero outside;
training on 20 000 random 48x48 patches of the 20 training images (centres inside the FOV,
drawn once, seeded); testing on the 20 whole test images padded to 592x576, the metric
computed inside the FOV only. No CLAHE (see docs/datasets.md).

Model: ``UNet`` with 4 levels of widths 16-32-64-128, binary (±1, IR-Net) weights in every
conv but the first and the 1x1 head, 4-bit PACT activations, the inverted norm in groups of
C/8 channels (``num_groups=8``) for the proposed method, BatchNorm for the baselines.
Dropout rate 0.3. Loss: per-pixel cross-entropy; metric: mIoU over background and vessel.

Recipe. The paper does not give one; chosen here: Adam, peak learning rate 1e-3 with 500
warm-up steps then cosine decay to 0, batch 64, 80 passes over the patch set (312 steps
each: 24 960 steps), no weight decay, no augmentation beyond the random patches.
``quick``: 16 passes.

Evaluation: 100 chips, T = 5 MC samples (NN: 1), the 20 test images in slices of 5.
T is 5, not 10, for memory: the sweep keeps every chip's per-sample logits of the whole test
set, ``100 x T x 20 x 592 x 576 x 2`` float32 = 27 GB at T = 5 (and a softmaxed copy), which
fits a 141 GB H200 under JAX's default 75 % preallocation; T = 10 would not.

Sweeps (Fig. 5): ``bit_flip``: every stored ±1 weight of the binary convs flips with
probability p, p = 0 ... 30 %; ``additive``: the stored ±1 weights get ``sigma * N(0, 1)``,
sigma = 0 ... 1.5 (in units of the weight).
"""

from invnorm_jax.pipeline.configs._common import base, check_variant, sweep

NUM_PATCHES = 20_000


def get_config(variant: str = "full"):
    c = base("drive_unet", check_variant(variant))
    batch = {"full": 64, "quick": 64, "smoke": 8}[variant]
    steps_per_pass = NUM_PATCHES // batch
    steps = {"full": 80 * steps_per_pass, "quick": 16 * steps_per_pass, "smoke": 3}[variant]
    flips = {"full": [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3], "quick": [0.0, 0.1, 0.2, 0.3], "smoke": [0.0, 0.2]}[
        variant
    ]
    c.dataset.name = "drive"
    c.model.name = "unet"
    if variant == "smoke":
        c.dataset.kwargs.update(
            dict(synthetic=True, height=64, width=64, num_train=2, num_test=2, patch_size=32, num_patches=64)
        )
        c.model.kwargs.update(dict(in_channels=1, num_classes=2, widths=(8, 16), num_groups=8, act_bits=4))
    else:
        c.dataset.kwargs.update(
            dict(channel="green", patch_size=48, num_patches=NUM_PATCHES, seed=0, pad_multiple=16, patches_in_fov=True)
        )
        c.model.kwargs.update(dict(in_channels=1, num_classes=2, widths=(16, 32, 64, 128), num_groups=8, act_bits=4))
    c.metric = "miou"
    c.train.update(
        dict(
            steps=steps,
            batch_size=batch,
            learning_rate=1e-3,
            optimizer="adam",
            schedule="cosine",
            warmup_steps={"full": 500, "quick": 200, "smoke": 1}[variant],
            checkpoint_every={"full": 10 * steps_per_pass, "quick": 4 * steps_per_pass, "smoke": 10}[variant],
        )
    )
    c.eval.num_chips = {"full": 100, "quick": 100, "smoke": 2}[variant]
    c.eval.num_samples = {"full": 5, "quick": 5, "smoke": 2}[variant]
    c.eval.max_test = {"full": None, "quick": None, "smoke": 2}[variant]
    c.eval.batch_size = {"full": 5, "quick": 5, "smoke": None}[variant]
    c.sweeps.bit_flip = sweep("bit_flip", flips)
    # Fig. 5: additive variation of the stored ±1 weights (sigma in units of the weight, 1).
    c.sweeps.additive = sweep(
        "additive", {"full": [0.0, 0.25, 0.5, 0.75, 1.0, 1.5], "quick": [0.0, 0.5, 1.0], "smoke": [0.0, 1.0]}[variant]
    )
    return c
