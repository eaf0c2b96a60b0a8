"""The ``co2`` task with a conductance-drift sweep (seconds since programming) instead of its other sweeps.

Not part of the demo: it adds a sweep of seven times to every method. Its training fields are
those of ``co2``, so it evaluates the checkpoints ``co2`` trained::

    invnorm-jax sweep --config co2_drift --workdir runs/co2 --out runs/co2-drift

(``--config co2_drift:quick`` with a ``co2:quick`` workdir.) See ``docs/faults.md``, "Drift".
"""

from invnorm_jax.pipeline.configs import co2
from invnorm_jax.pipeline.configs._common import drift_only


def get_config(variant: str = "full"):
    return drift_only(co2.get_config(variant), variant)
