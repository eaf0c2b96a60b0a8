"""Hardware non-idealities: fault models, the sites they hit, and the chip simulator."""

from invnorm_jax.faults.context import Fault, FaultChoice, FaultContext, has_preactivation_sites, number_fault_sites
from invnorm_jax.faults.models import additive_variation, bit_flip, multiplicative_variation, stuck_at, uniform_noise
from invnorm_jax.faults.inject import inject, path_name, select_paths
from invnorm_jax.faults.simulate import DEFAULT_CHUNK, chip_keys, iter_simulate_chips, sample_keys, simulate_chips

__all__ = [
    "DEFAULT_CHUNK",
    "Fault",
    "FaultChoice",
    "FaultContext",
    "additive_variation",
    "bit_flip",
    "chip_keys",
    "has_preactivation_sites",
    "inject",
    "iter_simulate_chips",
    "path_name",
    "select_paths",
    "multiplicative_variation",
    "number_fault_sites",
    "sample_keys",
    "simulate_chips",
    "stuck_at",
    "uniform_noise",
]
