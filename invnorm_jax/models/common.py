"""Helpers shared by the models: key folding, pooling, activations, parameter counting.

Every model follows the library's calling convention
``model(x, *, key=None, train=False, deterministic=None, faults=None)``. :class:`Call`
bundles the keyword arguments every sub-layer receives: the *same* key for all of them. Each
stochastic layer folds in its own id, the hash of its path in the model
(:func:`invnorm_jax.nn.number_stochastic_sites`), so keys follow the structure, not a
hand-counted position.
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


@dataclasses.dataclass(frozen=True)
class Call:
    """The keyword arguments of one forward pass, handed unchanged to every sub-layer.

    ``call.kw`` is ``dict(key=, train=, deterministic=, faults=)``. The key is not split here:
    the stochastic layers derive theirs from it and from their path, so inserting a layer does
    not move anyone else's draws. ``deterministic=None`` lets each layer use its own attribute
    (set by ``model.eval()`` / ``model.train()``).
    """

    key: jax.Array | None = None
    train: bool = False
    deterministic: bool | None = None
    faults: Any = None

    @property
    def kw(self) -> dict:
        """Keyword arguments for any sub-layer."""
        return dict(key=self.key, train=self.train, deterministic=self.deterministic, faults=self.faults)

    def at(self, i: int) -> dict:
        """Deprecated: the same as :attr:`kw`; ``i`` is ignored (keys follow paths, not positions)."""
        del i
        return self.kw


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
    EDE progress are not parameters and are not counted.

    >>> count_params(nnx.Linear(3, 2, rngs=nnx.Rngs(0)))  # a 3x2 kernel and 2 biases
    8
    >>> count_params(nnx.BatchNorm(4, rngs=nnx.Rngs(0)))  # scale and bias; not the running mean and var
    8
    """
    return sum(int(p.size) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
