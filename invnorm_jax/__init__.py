"""invnorm-jax: inverted normalization with stochastic affine transformations.

Bayesian neural networks whose normalization applies the affine transform before normalizing
and randomly drops gamma to one and beta to zero, so that they stay accurate on faulty
in-memory-computing chips and still say how unsure they are.

>>> import jax, jax.numpy as jnp
>>> import invnorm_jax as inj
>>> x = jax.random.normal(jax.random.key(0), (2, 5, 4))              # [batch, ..., channels]
>>> scale, bias = inj.affine_dropout(jax.random.key(1), jnp.full(4, 1.5), jnp.full(4, 0.2),
...                                  rate=0.3, batch_size=2)          # one draw per example
>>> y = inj.inverted_norm(x, scale, bias)                             # normalize(gamma * x + beta)
>>> y.shape, scale.shape, sorted(set(scale.ravel().tolist())) <= [1.0, 1.5]
((2, 5, 4), (2, 4), True)

Every error in what a caller asked for (an argument, a config, a dataset folder, a checkpoint,
a results file) is an :class:`InputError` (``except inj.InputError``); each is also the builtin
one would expect (``ArgumentError`` is a ``ValueError``, ``DatasetNotFoundError`` a
``FileNotFoundError``). docs/errors.md lists them with their messages.
"""

from invnorm_jax import errors, faults, functional, metrics, models, nn
from invnorm_jax.errors import (
    ArgumentError,
    ArgumentTypeError,
    CheckpointCorruptError,
    CheckpointError,
    CheckpointIncompatibleError,
    CheckpointMissingError,
    ConfigError,
    DatasetNotFoundError,
    InputError,
    MissingDependencyError,
    NonFiniteError,
    ResultsError,
    TrainingDivergedError,
    UsageError,
)
from invnorm_jax.faults import Fault, simulate_chips
from invnorm_jax.functional import affine_dropout, inverted_norm

__version__ = "0.1.0"

__all__ = [
    # errors in the input: every one is an InputError, a ValueError (the command line prints it on one line)
    "InputError",
    "ArgumentError",
    "ArgumentTypeError",
    "MissingDependencyError",
    "ConfigError",
    "DatasetNotFoundError",
    "UsageError",
    "ResultsError",
    "CheckpointError",
    "CheckpointMissingError",
    "CheckpointIncompatibleError",
    "CheckpointCorruptError",
    "TrainingDivergedError",
    "NonFiniteError",
    "Fault",
    "affine_dropout",
    "errors",
    "faults",
    "functional",
    "inverted_norm",
    "metrics",
    "models",
    "nn",
    "simulate_chips",
    "__version__",
]
