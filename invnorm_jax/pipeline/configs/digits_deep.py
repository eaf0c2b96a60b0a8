"""The ``digits`` task with a deeper binary ResNet: 12 binary convolutions instead of 4.

Asks whether the proposed method's gain over the NN and over the dropout BayNNs grows with
depth. Everything but the network's size is ``digits``'s (the recipe, the sweeps, the OOD study
and the variants): three stages of widths (16, 32, 64) with two BasicBlocks each (8x8 -> 4x4 ->
2x2), instead of two stages of one block. Its checkpoints are its own (the model differs)::

    invnorm-jax train --config digits_deep --workdir runs/digits_deep
    invnorm-jax sweep --config digits_deep --workdir runs/digits_deep
    invnorm-jax ood --config digits_deep --workdir runs/digits_deep --no-train
    invnorm-jax ablate --config digits_deep --out runs/ablate-digits_deep

``digits_deep:quick`` and ``--smoke`` are ``digits``'s smaller variants. Compare with the same
commands on ``--config digits`` (same seeds, chips and levels).
"""

from invnorm_jax.pipeline.configs import digits


def get_config(variant: str = "full"):
    c = digits.get_config(variant)
    c.name = "digits_deep"
    c.model.kwargs.update(dict(widths=(16, 32, 64), blocks=(2, 2, 2)))
    return c
