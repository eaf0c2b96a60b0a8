"""invnorm-jax: inverted normalization with stochastic affine transformations.

Bayesian neural networks whose normalization applies the affine transform before normalizing
and randomly drops gamma to one and beta to zero, so that they stay accurate on faulty
in-memory-computing chips and still say how unsure they are.

>>> import invnorm_jax as inj
>>> y = inj.inverted_norm(x, scale, bias)                       # doctest: +SKIP
>>> scale, bias = inj.affine_dropout(key, scale, bias, rate=0.3) # doctest: +SKIP
"""

from invnorm_jax import faults, functional, metrics, models, nn
from invnorm_jax.faults import Fault, simulate_chips
from invnorm_jax.functional import affine_dropout, inverted_norm

__version__ = "0.1.0"

__all__ = [
    "Fault",
    "affine_dropout",
    "faults",
    "functional",
    "inverted_norm",
    "metrics",
    "models",
    "nn",
    "simulate_chips",
    "__version__",
]
