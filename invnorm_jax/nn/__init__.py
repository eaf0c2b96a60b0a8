"""Flax NNX layers: thin shells over :mod:`invnorm_jax.functional`."""

from invnorm_jax.nn.norm import (
    METHODS,
    ConventionalNorm,
    InvertedNorm,
    MCDropout,
    MCSpatialDropout,
    NormSite,
    norm_site,
)

__all__ = [
    "METHODS",
    "ConventionalNorm",
    "InvertedNorm",
    "MCDropout",
    "MCSpatialDropout",
    "NormSite",
    "norm_site",
]
