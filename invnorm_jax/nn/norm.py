"""Normalization sites: the inverted normalization and the baselines' conventional norms.

Thin NNX shells over :mod:`invnorm_jax.functional`: they hold gamma and beta and call the pure
functions. :func:`norm_site` builds the module a model puts after each conv for a given
method, so the four methods share every other line of a model.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from invnorm_jax._checks import check_choice, check_rate
from invnorm_jax.functional import init as inits
from invnorm_jax.functional.dropout import mc_dropout, mc_spatial_dropout
from invnorm_jax.functional.norm import MODES, _check_groups, affine_dropout, inverted_norm, normalize

METHODS = ("nn", "spindrop", "spatial_spindrop", "proposed")
#: Methods without a sampler at test time: one forward pass is their prediction (T = 1).
DETERMINISTIC_METHODS = ("nn",)
NORM_KINDS = ("batch", "layer", "group")
INITS = ("normal", "uniform")


def require_key(key, who: str) -> jax.Array:
    """The key a stochastic module needs, or a clear error saying how to call it."""
    if key is None:
        raise ValueError(
            f"{who} is stochastic: call it with key=jax.random.key(...) "
            "(one key per forward pass / MC sample), or with deterministic=True."
        )
    return key


class InvertedNorm(nnx.Module):
    """Inverted normalization with affine dropout: ``normalize(gamma * x + beta)``.

    Args:
      num_features: channels (last axis of the input).
      num_groups: None for per-instance statistics (LayerNorm-style), else GroupNorm-style.
      rate: affine-dropout probability (the paper's 0.3).
      mode: ``"vector"`` (one draw per vector, the paper's) or ``"element"``.
      per_example: independent draws for every example of a batch (a chip sees one input at a
        time); False draws once for the whole batch.
      init: ``"normal"`` (gamma ~ N(1, sigma_gamma), beta ~ N(0, sigma_beta)) or
        ``"uniform"`` (gamma ~ U(0, k_gamma), beta ~ U(-k_beta, k_beta)).
      rngs: ``nnx.Rngs`` for the initial gamma and beta.

    Call ``layer(x, key=key)`` for a stochastic pass (the Bayesian sampler, at train and test
    time alike) or ``layer(x, deterministic=True)`` to use gamma and beta as they are.

    >>> layer = InvertedNorm(4, rngs=nnx.Rngs(0))
    >>> layer(jnp.ones((2, 3, 4)), key=jax.random.key(1)).shape
    (2, 3, 4)
    """

    def __init__(
        self,
        num_features: int,
        *,
        num_groups: int | None = None,
        rate: float = 0.3,
        mode: str = "vector",
        per_example: bool = True,
        init: str = "normal",
        sigma_gamma: float = 0.3,
        sigma_beta: float = 0.3,
        k_gamma: float = 2.0,
        k_beta: float = 0.5,
        eps: float = 1e-5,
        rngs: nnx.Rngs,
    ):
        check_rate(rate)
        check_choice(mode, "mode", MODES)
        check_choice(init, "init", INITS)
        _check_groups(num_groups, num_features)
        if init == "normal":
            gamma_init, beta_init = inits.normal_gamma(sigma_gamma), inits.normal_beta(sigma_beta)
        else:
            gamma_init, beta_init = inits.uniform_gamma(k_gamma), inits.uniform_beta(k_beta)
        self.num_features = num_features
        self.num_groups = num_groups
        self.rate = rate
        self.mode = mode
        self.per_example = per_example
        self.eps = eps
        self.scale = nnx.Param(gamma_init(rngs.params(), (num_features,)))
        self.bias = nnx.Param(beta_init(rngs.params(), (num_features,)))

    def __call__(self, x, *, key=None, train=False, deterministic=False, faults=None):
        del train, faults  # identical at train and test time; no deployable weights here
        scale, bias = self.scale[...], self.bias[...]
        if not deterministic and self.rate > 0:
            key = require_key(key, "InvertedNorm")
            batch = x.shape[0] if self.per_example else None
            scale, bias = affine_dropout(key, scale, bias, rate=self.rate, mode=self.mode, batch_size=batch)
        return inverted_norm(x, scale, bias, num_groups=self.num_groups, eps=self.eps)


class _MCDropoutBase(nnx.Module):
    def __init__(self, rate: float = 0.3):
        check_rate(rate)
        self.rate = rate

    def __call__(self, x, *, key=None, train=False, deterministic=False, faults=None):
        del train, faults
        if deterministic or self.rate == 0:
            return x
        return self._drop(require_key(key, type(self).__name__), x, rate=self.rate)


class MCDropout(_MCDropoutBase):
    """Monte-Carlo dropout (SpinDrop): element-wise, active at test time."""

    _drop = staticmethod(mc_dropout)


class MCSpatialDropout(_MCDropoutBase):
    """Monte-Carlo spatial dropout (Spatial-SpinDrop): whole channels, active at test time."""

    _drop = staticmethod(mc_spatial_dropout)


class ConventionalNorm(nnx.Module):
    """BatchNorm, LayerNorm or GroupNorm with the usual affine *after* normalizing.

    BatchNorm uses batch statistics when ``train=True`` and running averages otherwise.
    LayerNorm normalizes per instance over every non-batch axis (like the inverted norm's
    default), GroupNorm over the spatial axes and groups of channels.
    """

    def __init__(self, num_features: int, *, kind: str = "batch", num_groups: int | None = None, rngs: nnx.Rngs):
        check_choice(kind, "norm", NORM_KINDS)
        self.kind = kind
        self.num_groups = num_groups if kind == "group" else None
        if kind == "group":
            if num_groups is None:
                raise ValueError("norm='group' needs num_groups=, a divisor of the channels.")
            _check_groups(num_groups, num_features)
        if kind == "batch":
            self.norm = nnx.BatchNorm(num_features, momentum=0.9, epsilon=1e-5, rngs=rngs)
        else:
            self.scale = nnx.Param(jnp.ones((num_features,)))
            self.bias = nnx.Param(jnp.zeros((num_features,)))

    def __call__(self, x, *, key=None, train=False, deterministic=False, faults=None):
        del key, deterministic, faults
        if self.kind == "batch":
            return self.norm(x, use_running_average=not train)
        return normalize(x, num_groups=self.num_groups) * self.scale[...] + self.bias[...]


class NormSite(nnx.Module):
    """A conventional norm followed by an optional MC dropout: the baselines' site."""

    def __init__(self, norm: ConventionalNorm, dropout: nnx.Module | None):
        self.norm = norm
        self.dropout = dropout

    def __call__(self, x, *, key=None, train=False, deterministic=False, faults=None):
        y = self.norm(x, train=train)
        if self.dropout is None:
            return y
        return self.dropout(y, key=key, train=train, deterministic=deterministic)


def norm_site(
    method: str,
    num_features: int,
    *,
    norm: str = "batch",
    num_groups: int | None = None,
    rate: float = 0.3,
    mode: str = "vector",
    rngs: nnx.Rngs,
    **inverted_kwargs,
) -> nnx.Module:
    """The normalization site of ``method`` after a layer with ``num_features`` outputs.

    ========================  ==================================================
    ``nn``                    conventional ``norm``, deterministic
    ``spindrop``              conventional ``norm`` + MC dropout (``rate``)
    ``spatial_spindrop``      conventional ``norm`` + MC spatial dropout
    ``proposed``              :class:`InvertedNorm` + affine dropout (``rate``)
    ========================  ==================================================

    ``norm`` is the baselines' conventional norm (``"batch"`` for CNNs, ``"layer"`` where the
    paper's model has no BatchNorm, ``"group"``); the inverted norm is per instance unless
    ``num_groups`` is given (it is then GroupNorm-style for every method).
    """
    check_choice(method, "method", METHODS)
    if method == "proposed":
        return InvertedNorm(num_features, num_groups=num_groups, rate=rate, mode=mode, rngs=rngs, **inverted_kwargs)
    conventional = ConventionalNorm(num_features, kind=norm, num_groups=num_groups, rngs=rngs)
    dropout = {"nn": None, "spindrop": MCDropout, "spatial_spindrop": MCSpatialDropout}[method]
    return NormSite(conventional, None if dropout is None else dropout(rate))
