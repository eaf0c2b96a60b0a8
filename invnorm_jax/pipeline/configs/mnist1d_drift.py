"""The ``mnist1d`` task with a conductance-drift sweep (seconds since programming) instead of its other sweeps.

Not part of the demo: it adds a sweep of seven times to every method. Its training fields are
those of ``mnist1d``, so it evaluates the checkpoints ``mnist1d`` trained::

    invnorm-jax sweep --config mnist1d_drift --workdir runs/mnist1d --out runs/mnist1d-drift

(``--config mnist1d_drift:quick`` with a ``mnist1d:quick`` workdir.) See ``docs/faults.md``, "Drift".
"""

from invnorm_jax.pipeline.configs import mnist1d
from invnorm_jax.pipeline.configs._common import drift_only


def get_config(variant: str = "full"):
    return drift_only(mnist1d.get_config(variant), variant)
