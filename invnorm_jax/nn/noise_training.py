"""Hardware-aware training: the ``noisy_training`` method (weight noise in every training pass).

A deterministic network (the ``nn`` architecture: conventional norm, no dropout) trained with
the device model in the loop: every training forward pass sees its own draw of Gaussian noise
on the deployed weights (±1 or k-bit codes) of every faultable layer, the same variation model
as the ``additive`` / ``multiplicative`` fault sweeps:

* ``additive``:       ``w' = w + level · max|w| · n``   (level in units of the layer's largest
  code magnitude, as ``Fault("additive", level)``),
* ``multiplicative``: ``w' = w · (1 + level · n)``,

``n ~ N(0, 1)`` per weight, redrawn every step from the training key. Gradients are
straight-through: ``dL/dw`` is the gradient at the noisy weights, passed to the latent
weights through the layers' usual estimators (EDE for binary, STE for k-bit). At evaluation
(``train=False``) the model is exactly the ``nn`` model; faults come only from the chip
simulator.

The noise travels the fault sites' own path: :class:`NoisyTraining` hands the wrapped model
a :class:`TrainingNoise` in place of a chip's ``FaultContext`` when ``train=True``, so every
layer that a ``weights`` fault reaches gets the noise, and no layer needs a training flag.
Full-precision layers (first conv, classifier, 1x1 shortcuts) are left alone, as by the
fault sweeps, unless ``include_full_precision``.

>>> from invnorm_jax.models import build_model
>>> model = build_model("digits", "noisy_training", rngs=nnx.Rngs(0))   # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from invnorm_jax._checks import check_choice
from invnorm_jax.errors import ArgumentError

__all__ = ["DEFAULT_LEVEL", "DEFAULT_NOISE", "NOISE_KINDS", "NoisyTraining", "TrainingNoise", "enable_weight_noise"]

NOISE_KINDS = ("additive", "multiplicative")
#: The default device model of ``noisy_training``: additive variation of sigma 0.1 x max|w|.
DEFAULT_NOISE, DEFAULT_LEVEL = "additive", 0.1
_NOISE_STREAM = 0x7A1  # folded into the training key: the noise never reuses a dropout draw


def _check_noise(kind: str, level) -> float:
    check_choice(kind, "train_noise", NOISE_KINDS)
    value = float(level)
    if not value >= 0.0:  # also NaN
        raise ArgumentError(f"train_noise_level={level!r} must be >= 0 (a sigma; 0 trains without noise).")
    return value


@dataclasses.dataclass(frozen=True)
class TrainingNoise:
    """One training step's weight noise, with the fault-site hooks of a ``FaultContext``.

    Args:
      kind: ``"additive"`` or ``"multiplicative"``.
      level: sigma (additive: in units of the layer's largest code magnitude; relative for
        multiplicative).
      key: the step's key; layer ``i`` draws from ``fold_in(key, i)``.
      include_full_precision: also perturb the full-precision layers (``bits=None``).

    .. math:: w' = w + \\sigma \\max_j |w_j| \\, n \\;\\text{(additive)}, \\qquad
              w' = w (1 + \\sigma n) \\;\\text{(multiplicative)}, \\qquad n \\sim \\mathcal{N}(0, 1)

    with the gradient of ``w'`` passed straight through to ``w``.

    >>> noise = TrainingNoise("multiplicative", 0.0, jax.random.key(0))
    >>> noise.weights(0, jnp.array([1.0, -1.0]), bits=1).tolist()  # sigma 0: the weights themselves
    [1.0, -1.0]
    >>> noisy = TrainingNoise("additive", 0.1, jax.random.key(0)).weights(0, jnp.ones(1000), bits=1)
    >>> round(float(noisy.std()), 1)
    0.1
    """

    kind: str
    level: Any
    key: jax.Array
    include_full_precision: bool = False

    def weights(self, fault_id: int, w: jax.Array, *, bits: int | None) -> jax.Array:
        """Noisy deployed weights, with the gradient of ``w`` passed straight through."""
        if bits is None and not self.include_full_precision:
            return w
        dtype = w.dtype if jnp.issubdtype(w.dtype, jnp.floating) else jnp.float32
        wf = w.astype(dtype)
        clean = jax.lax.stop_gradient(wf)
        n = jax.random.normal(jax.random.fold_in(self.key, fault_id), w.shape, dtype=dtype)
        if self.kind == "additive":
            noisy = clean + self.level * jnp.max(jnp.abs(clean)) * n
        else:
            noisy = clean * (1.0 + self.level * n)
        return noisy + (wf - clean)  # forward: noisy, bit for bit; backward: identity to w

    def preactivation(self, fault_id: int, x: jax.Array, *, key: jax.Array | None = None) -> jax.Array:
        """No activation noise: training noise is on the weights only."""
        del fault_id, key
        return x


class NoisyTraining(nnx.Module):
    """A model trained with weight noise: ``model`` itself at evaluation.

    ``wrapper(x, key=k, train=True)`` runs ``model`` with :class:`TrainingNoise` drawn from
    ``k`` as its fault context; any other call (``train=False``, or with a chip's ``faults=``)
    is exactly ``model(x, ...)``.

    Args:
      model: a model with the library's call convention (built for method ``"nn"``).
      kind: ``"additive"`` (default) or ``"multiplicative"``.
      level: the noise sigma (default 0.1).
      include_full_precision: also perturb the full-precision layers.

    Raises:
      ValueError: an unknown ``kind`` or a negative ``level``; at call time, ``train=True``
        without ``key=``.

    A model with the library's call convention and one weight site (a layer's id 0):

    >>> class Scale(nnx.Module):
    ...     def __init__(self):
    ...         self.w = nnx.Param(jnp.ones(3))
    ...     def __call__(self, x, *, key=None, train=False, deterministic=None, faults=None):
    ...         return x * (self.w[...] if faults is None else faults.weights(0, self.w[...], bits=8))
    >>> wrapped = NoisyTraining(Scale(), level=0.1)
    >>> x = jnp.ones((1, 3))
    >>> wrapped(x).tolist()  # evaluation: the model itself
    [[1.0, 1.0, 1.0]]
    >>> bool(jnp.all(wrapped(x, key=jax.random.key(0), train=True) == 1.0))  # training: noisy weights
    False
    """

    def __init__(
        self,
        model: nnx.Module,
        *,
        kind: str = DEFAULT_NOISE,
        level: float = DEFAULT_LEVEL,
        include_full_precision: bool = False,
    ):
        self.level = _check_noise(kind, level)
        self.kind = kind
        self.include_full_precision = bool(include_full_precision)
        self.model = model

    def __call__(self, x, *, key=None, train: bool = False, deterministic: bool | None = None, faults=None, **kwargs):
        if train and faults is None:
            if key is None:
                raise ArgumentError(
                    "noisy_training draws its weight noise from the forward pass's key: call "
                    "model(x, key=key, train=True) (invnorm_jax.train does)."
                )
            step_key = key if jnp.ndim(key) == 0 else jnp.ravel(key)[0]
            faults = TrainingNoise(
                self.kind, self.level, jax.random.fold_in(step_key, _NOISE_STREAM), self.include_full_precision
            )
        return self.model(x, key=key, train=train, deterministic=deterministic, faults=faults, **kwargs)


def enable_weight_noise(
    model: nnx.Module, kind: str = DEFAULT_NOISE, level: float = DEFAULT_LEVEL, *, include_full_precision: bool = False
) -> NoisyTraining:
    """``model`` wrapped to train with weight noise ``kind`` at ``level`` (see :class:`NoisyTraining`).

    >>> wrapped = enable_weight_noise(nnx.Linear(4, 2, rngs=nnx.Rngs(0)), "multiplicative", 0.2)
    >>> type(wrapped).__name__, wrapped.kind, wrapped.level
    ('NoisyTraining', 'multiplicative', 0.2)
    """
    return NoisyTraining(model, kind=kind, level=level, include_full_precision=include_full_precision)
