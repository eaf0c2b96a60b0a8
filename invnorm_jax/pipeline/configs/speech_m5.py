"""Table I, row 2: 8-bit M5 on Google Speech Commands v0.02 (35 words, 8 kHz), accuracy; Fig. 6 sweeps.

Run (paper scale, one GPU; the v0.02 archive extracted under ``$INVNORM_DATA_DIR``, see
docs/datasets.md)::

    invnorm-jax train --config speech_m5 --workdir runs/speech \\
      && invnorm-jax sweep --config speech_m5 --workdir runs/speech

Smoke (a generated folder in the official layout, all 35 words as tone bursts, CPU, about
1.5 min per two methods; the numbers mean nothing)::

    invnorm-jax train --config speech_m5 --smoke --workdir /tmp/speech-smoke \\
      && invnorm-jax sweep --config speech_m5 --smoke --workdir /tmp/speech-smoke

Data: the folder source (``source="folder"``): the 35 words with the archive's own
validation / test lists (84 843 / 9 981 / 11 005 clips), resampled 16 -> 8 kHz, 1 s each.
The TFDS builder is *not* used: it only has the 12-class variant.

Model: ``M5`` with the defaults: the 4-block M5 of Dai et al. (2017) as in the PyTorch
Speech Commands tutorial (first conv 80 taps with stride 16, then 3-tap convs, channels
32-32-64-64, max-pool 4 after every block, global average pool, linear head, 35 outputs),
8-bit weights (symmetric, per output channel) and 8-bit input activations in every conv and
in the head. Affine-dropout / MC-dropout rate 0.3.

Recipe. The paper does not give one; this follows the PyTorch M5 tutorial's optimizer and
learning rate, trained longer with a cosine schedule: Adam-W (decoupled weight decay 1e-4,
optax semantics: the decay is scaled by the learning rate), peak learning rate 1e-2 with
one epoch of linear warm-up then cosine decay to 0, batch 256, 50 epochs (331 steps per
epoch: 16 550 steps). No augmentation. ``quick``: 10 epochs.

Evaluation: 100 chips, T = 10 MC samples (NN: 1), all 11 005 test clips in slices of 2048
(per chip: 10 samples x 2048 clips x 500 x 32 first-layer activations, about 1.3 GB).

Sweeps (Fig. 6):

* ``bit_flip``: every bit of the 8-bit two's-complement weight codes flips independently
  with probability p. An MSB flip moves a code by 128, so the useful rates are far below
  the binary networks': p = 0 ... 5 %.
* ``additive``: Gaussian conductance variation of the stored codes, sigma in units of the
  layer's largest code magnitude.
"""

from invnorm_jax.pipeline.configs._common import base, check_variant, sweep

TRAIN_EXAMPLES = 84_843


def get_config(variant: str = "full"):
    c = base("speech_m5", check_variant(variant))
    batch = {"full": 256, "quick": 256, "smoke": 16}[variant]
    steps_per_epoch = TRAIN_EXAMPLES // batch
    steps = {"full": 50 * steps_per_epoch, "quick": 10 * steps_per_epoch, "smoke": 3}[variant]
    rates = {"full": [0.0, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05], "quick": [0.0, 0.005, 0.02], "smoke": [0.0, 0.01]}[
        variant
    ]
    sigmas = {"full": [0.0, 0.05, 0.1, 0.2, 0.3, 0.4], "quick": [0.0, 0.1, 0.3], "smoke": [0.0, 0.2]}[variant]
    c.dataset.name = "speech_commands"
    if variant == "smoke":
        # 35 words x 3 generated clips (1 validation, 1 test, 1 training): the real label space,
        # the real loader (16 -> 8 kHz resampling, split lists), the full M5.
        c.dataset.kwargs.update(dict(synthetic=True, clips_per_word=3))
    else:
        c.dataset.kwargs.source = "folder"
    c.model.name = "m5"
    c.model.kwargs.update(
        dict(num_classes=35, channels=(32, 32, 64, 64), first_kernel=80, first_stride=16, pool=4, bits=8)
    )
    c.train.update(
        dict(
            steps=steps,
            batch_size=batch,
            learning_rate=1e-2,
            optimizer="adamw",
            schedule="cosine",
            warmup_steps={"full": steps_per_epoch, "quick": steps_per_epoch, "smoke": 1}[variant],
            weight_decay=1e-4,
            checkpoint_every={"full": 5 * steps_per_epoch, "quick": 2 * steps_per_epoch, "smoke": 10}[variant],
        )
    )
    c.eval.num_chips = {"full": 100, "quick": 100, "smoke": 2}[variant]
    c.eval.num_samples = {"full": 10, "quick": 5, "smoke": 2}[variant]
    # Test clips are ordered by word: a prefix would drop words, so no cut but smoke's.
    c.eval.max_test = {"full": None, "quick": None, "smoke": 16}[variant]
    c.eval.batch_size = {"full": 2048, "quick": 2048, "smoke": None}[variant]
    c.sweeps.bit_flip = sweep("bit_flip", rates)
    c.sweeps.additive = sweep("additive", sigmas)
    return c
