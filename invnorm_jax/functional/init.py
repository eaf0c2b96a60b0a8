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


def normal_gamma(sigma: float = 0.3):
    """``gamma ~ N(1, sigma)``.

    >>> normal_gamma(0.0)(jax.random.key(0), (3,)).tolist()
    [1.0, 1.0, 1.0]
    """
    check_nonnegative(sigma, "sigma_gamma")

    def init(key, shape, dtype=jnp.float32):
        return 1.0 + sigma * jax.random.normal(key, shape, dtype)

    return init


def normal_beta(sigma: float = 0.3):
    """``beta ~ N(0, sigma)``."""
    check_nonnegative(sigma, "sigma_beta")

    def init(key, shape, dtype=jnp.float32):
        return sigma * jax.random.normal(key, shape, dtype)

    return init


def uniform_gamma(k: float = 2.0):
    """``gamma ~ U(0, k)``; the default k = 2 keeps the mean at one."""
    if not k > 0:
        raise ValueError(f"k_gamma={k!r} must be > 0.")

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, minval=0.0, maxval=k)

    return init


def uniform_beta(k: float = 0.5):
    """``beta ~ U(-k, k)``."""
    if not k > 0:
        raise ValueError(f"k_beta={k!r} must be > 0.")

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, minval=-k, maxval=k)

    return init
