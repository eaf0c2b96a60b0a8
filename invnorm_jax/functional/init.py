"""Initializers for the inverted normalization's gamma and beta.

The paper draws gamma and beta at random rather than at (1, 0): with affine dropout the network
is trained to be right both with and without them, and a spread of initial values keeps the
two paths from collapsing into one. Each factory returns a ``jax.nn.initializers``-style
function ``init(key, shape, dtype) -> array``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from invnorm_jax._checks import check_nonnegative
from invnorm_jax.errors import ArgumentError


def normal_gamma(sigma: float = 0.3):
    """Initializer of the inverted norm's weight: ``gamma ~ N(1, sigma)``.

    Args:
      sigma: the standard deviation, >= 0 (the paper: 0.3).

    Returns:
      ``init(key, shape, dtype=float32) -> array``.

    >>> normal_gamma(0.0)(jax.random.key(0), (3,)).tolist()
    [1.0, 1.0, 1.0]
    """
    check_nonnegative(sigma, "sigma_gamma")

    def init(key, shape, dtype=jnp.float32):
        return 1.0 + sigma * jax.random.normal(key, shape, dtype)

    return init


def normal_beta(sigma: float = 0.3):
    """Initializer of the inverted norm's bias: ``beta ~ N(0, sigma)``.

    Args:
      sigma: the standard deviation, >= 0 (the paper: 0.3).

    Returns:
      ``init(key, shape, dtype=float32) -> array``.

    >>> beta = normal_beta(0.3)(jax.random.key(0), (10_000,))
    >>> round(float(beta.std()), 2), abs(float(beta.mean())) < 0.01
    (0.3, True)
    """
    check_nonnegative(sigma, "sigma_beta")

    def init(key, shape, dtype=jnp.float32):
        return sigma * jax.random.normal(key, shape, dtype)

    return init


def uniform_gamma(k: float = 2.0):
    """Initializer of the inverted norm's weight: ``gamma ~ U(0, k)``; the default k = 2 keeps the mean at one.

    Args:
      k: the upper bound, > 0.

    Returns:
      ``init(key, shape, dtype=float32) -> array``.

    Raises:
      ValueError: ``k <= 0``.

    >>> gamma = uniform_gamma(2.0)(jax.random.key(0), (10_000,))
    >>> bool(gamma.min() >= 0 and gamma.max() < 2), round(float(gamma.mean()), 1)
    (True, 1.0)
    """
    if not k > 0:
        raise ArgumentError(f"k_gamma={k!r} must be > 0.")

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, minval=0.0, maxval=k)

    return init


def uniform_beta(k: float = 0.5):
    """Initializer of the inverted norm's bias: ``beta ~ U(-k, k)``.

    Args:
      k: the half-width, > 0.

    Returns:
      ``init(key, shape, dtype=float32) -> array``.

    Raises:
      ValueError: ``k <= 0``.

    >>> beta = uniform_beta(0.5)(jax.random.key(0), (10_000,))
    >>> bool(beta.min() >= -0.5 and beta.max() < 0.5), abs(float(beta.mean())) < 0.02
    (True, True)
    """
    if not k > 0:
        raise ArgumentError(f"k_beta={k!r} must be > 0.")

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, minval=-k, maxval=k)

    return init
