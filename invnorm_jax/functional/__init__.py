"""Pure ``jax.numpy`` functions: the maths of every layer, with explicit keys."""

from invnorm_jax.functional.dropout import mc_dropout, mc_spatial_dropout
from invnorm_jax.functional.init import normal_beta, normal_gamma, uniform_beta, uniform_gamma
from invnorm_jax.functional.norm import affine_dropout, inverted_norm, normalize

__all__ = [
    "affine_dropout",
    "inverted_norm",
    "normalize",
    "mc_dropout",
    "mc_spatial_dropout",
    "normal_gamma",
    "normal_beta",
    "uniform_gamma",
    "uniform_beta",
]
