"""Hardware non-idealities: fault models, the sites they hit, and the chip simulator."""

from invnorm_jax.faults.context import Fault, FaultChoice, FaultContext, has_preactivation_sites
from invnorm_jax.faults.inject import inject, path_name, select_paths
from invnorm_jax.faults.models import additive_variation, bit_flip, multiplicative_variation, stuck_at, uniform_noise
from invnorm_jax.faults.simulate import DEFAULT_CHUNK, chip_keys, iter_simulate_chips, sample_keys, simulate_chips
from invnorm_jax.faults.spec import fault_from_spec
from invnorm_jax.nn.keys import number_fault_sites  # numbers both kinds of site: it lives with the layers

__all__ = [
    "fault_from_spec",
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
