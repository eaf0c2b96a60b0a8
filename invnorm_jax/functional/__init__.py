"""Pure ``jax.numpy`` functions: the maths of every layer, with explicit keys."""

from invnorm_jax.functional.banded import banded_conv
from invnorm_jax.functional.dropout import mc_dropout, mc_spatial_dropout
from invnorm_jax.functional.init import normal_beta, normal_gamma, uniform_beta, uniform_gamma
from invnorm_jax.functional.keys import example_keys, fold_in_each, is_key_batch
from invnorm_jax.functional.norm import affine_dropout, inverted_norm, normalize
from invnorm_jax.functional.quantize import (
    ede_schedule,
    fake_quant,
    irnet_binarize_weights,
    libra_pb,
    pact,
    quantize_symmetric,
    sign,
)

__all__ = [
    "affine_dropout",
    "banded_conv",
    "example_keys",
    "fold_in_each",
    "is_key_batch",
    "inverted_norm",
    "normalize",
    "mc_dropout",
    "mc_spatial_dropout",
    "normal_gamma",
    "normal_beta",
    "uniform_gamma",
    "uniform_beta",
    "sign",
    "ede_schedule",
    "libra_pb",
    "irnet_binarize_weights",
    "quantize_symmetric",
    "fake_quant",
    "pact",
]
