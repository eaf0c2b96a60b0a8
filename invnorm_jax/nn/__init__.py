"""Flax NNX layers: thin shells over :mod:`invnorm_jax.functional`."""

from invnorm_jax.nn.dropout import DROPOUT_SITES, CrossbarDropout, crossbar_dropout
from invnorm_jax.nn.keys import number_fault_sites, number_stochastic_sites, path_id, stochastic_site_ids
from invnorm_jax.nn.lowp import set_binary_compute
from invnorm_jax.nn.norm import (
    DETERMINISTIC_METHODS,
    METHODS,
    PAPER_METHODS,
    ConventionalNorm,
    InvertedNorm,
    MCDropout,
    MCSpatialDropout,
    NormSite,
    norm_site,
)
from invnorm_jax.nn.quantized import (
    PACT,
    BinaryConv,
    BinaryDense,
    EDEProgress,
    PreactivationSite,
    QuantConv,
    QuantDense,
    set_training_progress,
)
from invnorm_jax.nn.recurrent import QuantLSTMCell

__all__ = [
    "DROPOUT_SITES",
    "CrossbarDropout",
    "crossbar_dropout",
    "number_fault_sites",
    "number_stochastic_sites",
    "path_id",
    "stochastic_site_ids",
    "PACT",
    "BinaryConv",
    "BinaryDense",
    "PreactivationSite",
    "EDEProgress",
    "QuantConv",
    "QuantDense",
    "QuantLSTMCell",
    "set_training_progress",
    "set_binary_compute",
    "DETERMINISTIC_METHODS",
    "METHODS",
    "PAPER_METHODS",
    "ConventionalNorm",
    "InvertedNorm",
    "MCDropout",
    "MCSpatialDropout",
    "NormSite",
    "norm_site",
]
