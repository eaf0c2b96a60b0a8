"""The benchmarked models, at their benchmark shapes, with inputs and targets.

Speed does not depend on the weights or the data, so the models are untrained and, apart from
the digits images, the inputs are seeded normal noise of the dataset's shape.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
from flax import nnx

from experiments.benchmarks.common import load_inputs
from invnorm_jax.faults import Fault
from invnorm_jax.models import build_model


@dataclasses.dataclass(frozen=True)
class Spec:
    """A benchmarked model: ``build_model(name, ...)`` on inputs of ``shape`` (one example)."""

    label: str
    name: str
    shape: tuple[int, ...]
    loss: str  # train.loss_fn's kind
    fault: Fault
    outputs: int = 10


SPECS = {
    "digits": Spec("digits CNN", "digits", (8, 8, 1), "xent", Fault("bit_flip", 0.05)),
    "m5": Spec("M5 (mnist1d)", "mnist1d", (40, 1), "xent", Fault("bit_flip", 0.05)),
    "lstm": Spec("LSTM (co2)", "co2", (104, 1), "mse", Fault("bit_flip", 0.05), outputs=26),
    "resnet18": Spec("ResNet-18 (CIFAR)", "resnet", (32, 32, 3), "xent", Fault("bit_flip", 0.05)),
}


def build(key: str, method: str = "proposed", seed: int = 0):
    """The model of ``SPECS[key]`` for ``method``."""
    return build_model(SPECS[key].name, method, rngs=nnx.Rngs(seed))


def inputs(key: str, n: int, seed: int = 0) -> jnp.ndarray:
    """``n`` inputs of ``SPECS[key]``'s shape."""
    if key == "digits":
        return load_inputs(n)
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.standard_normal((n,) + SPECS[key].shape), jnp.float32)


def targets(key: str, n: int, seed: int = 0) -> jnp.ndarray:
    """``n`` training targets: class labels, or regression values for the LSTM."""
    rng = np.random.default_rng(seed + 1)
    if SPECS[key].loss == "mse":
        return jnp.asarray(rng.standard_normal((n, SPECS[key].outputs)), jnp.float32)
    return jnp.asarray(rng.integers(0, SPECS[key].outputs, n), jnp.int32)
