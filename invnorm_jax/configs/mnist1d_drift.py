"""The ``mnist1d`` task with a conductance-drift sweep (seconds since programming) instead of its other sweeps.

Not part of the demo: it adds a sweep of seven times to every method. Its training fields are
those of ``mnist1d``, so it evaluates the checkpoints ``mnist1d`` trained::

    invnorm-jax sweep --config mnist1d_drift --workdir runs/mnist1d --out runs/mnist1d-drift

(``--config mnist1d_drift:quick`` with a ``mnist1d:quick`` workdir.) See ``docs/faults.md``, "Drift".
"""

from ml_collections import ConfigDict

from invnorm_jax.configs import mnist1d
from invnorm_jax.configs._common import drift_sweep


def get_config(variant: str = "full"):
    c = mnist1d.get_config(variant)
    c.name = "mnist1d_drift"
    c.sweeps = ConfigDict(dict(drift=drift_sweep(variant)))
    c.ood.shifts = ()
    return c
