"""The ``digits`` task with a conductance-drift sweep (seconds since programming) instead of its other sweeps.

Not part of the demo: it adds a sweep of seven times to every method. Its training fields are
those of ``digits``, so it evaluates the checkpoints ``digits`` trained::

    invnorm-jax sweep --config digits_drift --workdir runs/digits --out runs/digits-drift

(``--config digits_drift:quick`` with a ``digits:quick`` workdir.) See ``docs/faults.md``, "Drift".
"""

from invnorm_jax.pipeline.configs import digits
from invnorm_jax.pipeline.configs._common import drift_only


def get_config(variant: str = "full"):
    return drift_only(digits.get_config(variant), variant)
