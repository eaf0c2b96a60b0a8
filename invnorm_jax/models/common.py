"""Helpers shared by the models: key folding, pooling, activations, parameter counting.

Every model follows the library's calling convention
``model(x, *, key=None, train=False, deterministic=False, faults=None)``. The helpers here
keep that convention in one place: :func:`fold` derives a sub-layer's key, :class:`Call`
bundles the keyword arguments a sub-layer receives.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from invnorm_jax._checks import check_choice
from invnorm_jax.nn.norm import METHODS


def check_method(method: str) -> None:
    """Raise ``ValueError`` naming the allowed methods unless ``method`` is one of them."""
    check_choice(method, "method", METHODS)


def fold(key: jax.Array | None, i: int) -> jax.Array | None:
    """The key of sub-layer ``i``: ``fold_in(key, i)``, or None when the model got no key.

    Passing None down (rather than failing here) lets deterministic models and
    ``deterministic=True`` calls run key-free; a stochastic site that needs a key raises its
    own clear error.
    """
    return None if key is None else jax.random.fold_in(key, i)


@dataclasses.dataclass(frozen=True)
class Call:
    """The keyword arguments of one forward pass, handed to every sub-layer.

    ``call.at(i)`` gives the keywords for sub-layer ``i`` of the current module: the same
    ``train``, ``deterministic`` and ``faults``, and the key ``fold_in(key, i)``. A nested
    module folds its own key again, so every leaf layer gets a distinct key.
    """

    key: jax.Array | None = None
    train: bool = False
    deterministic: bool = False
    faults: Any = None

    def at(self, i: int) -> dict:
        """Keyword arguments for sub-layer ``i``."""
        return dict(key=fold(self.key, i), train=self.train, deterministic=self.deterministic, faults=self.faults)


def hardtanh(x: jax.Array) -> jax.Array:
    """``clip(x, -1, 1)``: IR-Net's activation between binary layers."""
    return jnp.clip(x, -1.0, 1.0)


def global_avg_pool(x: jax.Array) -> jax.Array:
    """Mean over every axis between batch and channels: ``[B, ..., C] -> [B, C]``."""
    return jnp.mean(x, axis=tuple(range(1, x.ndim - 1)))


def max_pool_if_fits(x: jax.Array, pool: int) -> jax.Array:
    """Max-pool every spatial axis by ``pool`` (window = stride, 'VALID'), if it still fits.

    A spatial axis shorter than ``pool`` would pool to length zero; there the pooling is
    skipped instead, so that one model config serves short and long inputs (MNIST-1D's 40
    samples as well as Speech Commands' 8000).
    """
    spatial = x.shape[1:-1]
    if pool <= 1 or min(spatial) < pool:
        return x
    window = (pool,) * len(spatial)
    return nnx.max_pool(x, window, strides=window, padding="VALID")


def upsample_nearest(x: jax.Array, factor: int = 2) -> jax.Array:
    """Nearest-neighbour upsampling of every spatial axis of ``[B, ..., C]`` by ``factor``."""
    for axis in range(1, x.ndim - 1):
        x = jnp.repeat(x, factor, axis=axis)
    return x


def count_params(model: nnx.Module) -> int:
    """Number of trainable scalars (``nnx.Param``) of ``model``; BatchNorm statistics and
    EDE progress are not parameters and are not counted."""
    return sum(int(p.size) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
