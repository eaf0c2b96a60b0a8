"""Normalization sites: the inverted normalization and the baselines' conventional norms.

Thin NNX shells over :mod:`invnorm_jax.functional`: they hold gamma and beta and call the pure
functions. :func:`norm_site` builds the module a model puts after each conv for a given
method, so the four methods share every other line of a model.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
from flax import nnx
from flax.nnx.module import first_from

from invnorm_jax._checks import check_channels, check_choice, check_float_input, check_positive_int, check_rate
from invnorm_jax.errors import ArgumentError
from invnorm_jax.functional import init as inits
from invnorm_jax.functional.dropout import mc_dropout, mc_spatial_dropout
from invnorm_jax.functional.norm import MODES, affine_dropout, check_groups, inverted_norm, normalize
from invnorm_jax.nn.keys import layer_key_id, layer_keys, resolve_key, rng_stream

METHODS = ("nn", "spindrop", "spatial_spindrop", "proposed", "noisy_training")
#: The paper's four methods (its Table I), the configs' default; ``noisy_training`` is an extra baseline.
PAPER_METHODS = METHODS[:4]
#: Methods without a sampler at test time: one forward pass is their prediction (T = 1).
DETERMINISTIC_METHODS = ("nn", "noisy_training")
NORM_KINDS = ("batch", "layer", "group")


def require_key(key, who: str) -> jax.Array:
    """The key a stochastic module needs, or a clear error saying how to call it."""
    return resolve_key(key, None, None, "dropout", who)


def _check_input(x, num_features: int, who: str) -> None:
    check_float_input(x, who)
    check_channels(x, num_features, who, size_name="num_features")


class _Stochastic(nnx.Module):
    """What every Bayesian sampler shares: ``deterministic``, its key id and its key source."""

    def _init_stochastic(self, deterministic, rng_collection, rngs, *, only_if_named):
        self.deterministic = deterministic
        self.rng_collection = rng_collection
        self.rngs = rng_stream(rngs, rng_collection, only_if_named=only_if_named)
        self.key_id = None  # its path's id: set by number_stochastic_sites, else found when called

    def _active(self, deterministic) -> bool:
        return not first_from(deterministic, self.deterministic, error_msg="deterministic is None") and self.rate > 0

    def _keys(self, key, rngs, batch_size: int) -> jax.Array:
        key = resolve_key(key, rngs, self.rngs, self.rng_collection, type(self).__name__)
        return layer_keys(key, layer_key_id(self), batch_size)

    def set_view(self, deterministic: bool | None = None):
        """For ``nnx.view``: ``deterministic=True`` switches the sampler off."""
        if deterministic is not None:
            self.deterministic = deterministic


class InvertedNorm(_Stochastic):
    """Inverted normalization with affine dropout: ``normalize(gamma * x + beta)``.

    .. math:: y = \\frac{\\tilde\\gamma x + \\tilde\\beta - \\mu}{\\sqrt{\\sigma^2 + \\epsilon}}, \\quad
              \\tilde\\gamma = m_\\gamma \\gamma + (1 - m_\\gamma), \\quad \\tilde\\beta = m_\\beta \\beta,
              \\quad m \\sim \\mathrm{Bernoulli}(1 - p)

    with ``mu``, ``sigma^2`` the statistics of ``gamma~ x + beta~`` per instance (or group),
    and ``m = 1`` (no dropout) when deterministic. See
    :func:`~invnorm_jax.functional.inverted_norm` and :func:`~invnorm_jax.functional.affine_dropout`.

    Follows ``nnx.LayerNorm``'s conventions: ``epsilon``, ``dtype`` / ``param_dtype``,
    ``scale_init`` / ``bias_init``; statistics in float32, the output in the input's dtype
    (or ``dtype``).

    Args:
      num_features: channels (last axis of the input).
      num_groups: None for per-instance statistics (LayerNorm-style), else GroupNorm-style.
      rate: affine-dropout probability (the paper's 0.3).
      mode: ``"vector"`` (one draw per vector, the paper's) or ``"element"``.
      per_example: independent draws for every example of a batch (a chip sees one input at a
        time); False draws once for the whole batch (from the first example's key).
      epsilon: added to the variance.
      dtype: dtype of the output; default the input's.
      param_dtype: dtype of gamma and beta.
      scale_init: initializer of gamma; default ``normal_gamma(0.3)`` (``N(1, 0.3)``), or
        e.g. ``invnorm_jax.functional.uniform_gamma(2.0)`` (``U(0, 2)``).
      bias_init: initializer of beta; default ``normal_beta(0.3)`` (``N(0, 0.3)``).
      deterministic: default of the call's ``deterministic`` (``model.eval()`` sets it True).
      rng_collection: the ``nnx.Rngs`` stream the sampler keeps.
      rngs: ``nnx.Rngs`` for gamma and beta (``rngs.params()``). As ``nnx.Dropout``, the layer
        keeps a fork of its ``rng_collection`` stream (the default stream if it names none:
        ``nnx.Rngs(0)``) and draws from it when called without ``key=`` or ``rngs=``.
      keep_rngs: False keeps no stream unless ``rngs`` names ``rng_collection`` (the layer
        then holds no RNG state and is called with ``key=``; :func:`norm_site`, so the
        library's models, built from ``nnx.Rngs(seed)``, carry none).
      eps: deprecated spelling of ``epsilon``.

    Call ``layer(x, key=key)`` for a stochastic pass (the Bayesian sampler, at train and test
    time alike), ``layer(x, rngs=rngs)`` or, with a stream, ``layer(x)``; ``key`` may hold one
    key per example. ``layer(x, deterministic=True)`` uses gamma and beta as they are.

    Raises:
      ArgumentError: a bad ``num_features``, ``rate``, ``mode`` or ``num_groups``; at call
        time, a stochastic pass without ``key=``, ``rngs=`` or a stream.

    >>> layer = InvertedNorm(4, rngs=nnx.Rngs(0))
    >>> layer(jnp.ones((2, 3, 4)), key=jax.random.key(1)).shape
    (2, 3, 4)
    >>> x = jax.random.normal(jax.random.key(2), (2, 3, 4))
    >>> y = layer(x, deterministic=True)
    >>> bool(jnp.allclose(y.mean(axis=(1, 2)), 0.0, atol=1e-5)), bool(jnp.allclose(y.std(axis=(1, 2)), 1.0, atol=1e-3))
    (True, True)
    """

    def __init__(
        self,
        num_features: int,
        *,
        num_groups: int | None = None,
        rate: float = 0.3,
        mode: str = "vector",
        per_example: bool = True,
        epsilon: float = 1e-5,
        dtype=None,
        param_dtype=jnp.float32,
        scale_init=inits.normal_gamma(0.3),  # noqa: B008  (a pure initializer, as nnx's defaults)
        bias_init=inits.normal_beta(0.3),  # noqa: B008
        deterministic: bool = False,
        rng_collection: str = "dropout",
        rngs: nnx.Rngs,
        keep_rngs: bool = True,
        eps: float | None = None,
    ):
        check_positive_int(num_features, "num_features")
        check_rate(rate)
        check_choice(mode, "mode", MODES)
        check_groups(num_groups, num_features)
        if eps is not None:
            warnings.warn(
                "InvertedNorm(eps=...) is deprecated; use epsilon=, as nnx.LayerNorm.", DeprecationWarning, stacklevel=2
            )
            epsilon = eps
        self.num_features = num_features
        self.num_groups = num_groups
        self.rate = rate
        self.mode = mode
        self.per_example = per_example
        self.epsilon = epsilon
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.scale = nnx.Param(scale_init(rngs.params(), (num_features,), param_dtype))
        self.bias = nnx.Param(bias_init(rngs.params(), (num_features,), param_dtype))
        self._init_stochastic(deterministic, rng_collection, rngs, only_if_named=not keep_rngs)

    def __call__(self, x, *, key=None, rngs=None, train=False, deterministic=None, faults=None):
        del train, faults  # identical at train and test time; no deployable weights here
        _check_input(x, self.num_features, type(self).__name__)
        scale, bias = self.scale[...], self.bias[...]
        if self._active(deterministic):
            keys = self._keys(key, rngs, x.shape[0])
            keys = keys if self.per_example else keys[0]
            scale, bias = affine_dropout(keys, scale, bias, rate=self.rate, mode=self.mode)
        return inverted_norm(x, scale, bias, num_groups=self.num_groups, eps=self.epsilon, dtype=self.dtype)


class _MCDropoutBase(_Stochastic):
    def __init__(
        self,
        rate: float = 0.3,
        *,
        deterministic: bool = False,
        rng_collection: str = "dropout",
        rngs: nnx.Rngs | nnx.RngStream | None = None,
    ):
        check_rate(rate)
        self.rate = rate
        self._init_stochastic(deterministic, rng_collection, rngs, only_if_named=False)

    def __call__(self, x, *, key=None, rngs=None, train=False, deterministic=None, faults=None):
        del train, faults
        if not self._active(deterministic):
            return x
        return self._drop(self._keys(key, rngs, x.shape[0]), x, rate=self.rate)


class MCDropout(_MCDropoutBase):
    """Monte-Carlo dropout (SpinDrop): element-wise, active at test time, one mask per example.

    .. math:: y = x \\odot m / (1 - p), \\quad m_j \\sim \\mathrm{Bernoulli}(1 - p)

    (:func:`~invnorm_jax.functional.mc_dropout`).

    Args:
      rate: the drop probability ``p``.
      deterministic: default of the call's ``deterministic`` (True: the identity).
      rng_collection: the ``nnx.Rngs`` stream the layer keeps.
      rngs: an ``nnx.Rngs`` or ``nnx.RngStream`` the layer keeps a fork of, or None (then call
        it with ``key=``).

    >>> drop = MCDropout(0.5)
    >>> y = drop(jnp.ones((1, 8)), key=jax.random.key(0))
    >>> sorted(set(y.ravel().tolist())), drop(jnp.ones((1, 2)), deterministic=True).tolist()
    ([0.0, 2.0], [[1.0, 1.0]])
    """

    _drop = staticmethod(mc_dropout)


class MCSpatialDropout(_MCDropoutBase):
    """Monte-Carlo spatial dropout (Spatial-SpinDrop): whole channels, active at test time.

    .. math:: y_{b,\\ldots,c} = x_{b,\\ldots,c} \\, m_{b,c} / (1 - p), \\quad m_{b,c} \\sim \\mathrm{Bernoulli}(1 - p)

    (:func:`~invnorm_jax.functional.mc_spatial_dropout`). Arguments as :class:`MCDropout`.

    >>> y = MCSpatialDropout(0.5)(jnp.ones((2, 4, 4, 3)), key=jax.random.key(0))
    >>> bool(jnp.all(y.min(axis=(1, 2)) == y.max(axis=(1, 2))))  # each feature map kept or dropped whole
    True
    """

    _drop = staticmethod(mc_spatial_dropout)


class ConventionalNorm(nnx.Module):
    """BatchNorm, LayerNorm or GroupNorm with the usual affine *after* normalizing.

    BatchNorm uses batch statistics when ``train=True`` and running averages otherwise.
    LayerNorm normalizes per instance over every non-batch axis (like the inverted norm's
    default), GroupNorm over the spatial axes and groups of channels.

    .. math:: y = \\gamma \\, \\frac{x - \\mu}{\\sqrt{\\sigma^2 + \\epsilon}} + \\beta

    Args:
      num_features: channels (last axis of the input).
      kind: ``"batch"``, ``"layer"`` or ``"group"``.
      num_groups: for ``"group"``, a divisor of ``num_features``.
      rngs: ``nnx.Rngs`` (BatchNorm's).

    Raises:
      ArgumentError: an unknown ``kind``, or ``"group"`` without a valid ``num_groups``.

    >>> import numpy as np
    >>> norm = ConventionalNorm(3, kind="layer", rngs=nnx.Rngs(0))
    >>> y = norm(jnp.array([[1.0, 2.0, 3.0]]))
    >>> np.round(np.asarray(y, np.float64), 4).tolist()
    [[-1.2247, 0.0, 1.2247]]
    """

    def __init__(self, num_features: int, *, kind: str = "batch", num_groups: int | None = None, rngs: nnx.Rngs):
        check_positive_int(num_features, "num_features")
        check_choice(kind, "norm", NORM_KINDS)
        self.kind = kind
        self.num_features = num_features
        self.num_groups = num_groups if kind == "group" else None
        if kind == "group":
            if num_groups is None:
                raise ArgumentError("norm='group' needs num_groups=, a divisor of the channels.")
            check_groups(num_groups, num_features)
        if kind == "batch":
            self.norm = nnx.BatchNorm(num_features, momentum=0.9, epsilon=1e-5, rngs=rngs)
        else:
            self.scale = nnx.Param(jnp.ones((num_features,)))
            self.bias = nnx.Param(jnp.zeros((num_features,)))

    def __call__(self, x, *, key=None, rngs=None, train=False, deterministic=None, faults=None):
        del key, rngs, deterministic, faults
        _check_input(x, self.num_features, type(self).__name__)
        if self.kind == "batch":
            return self.norm(x, use_running_average=not train)
        return self.affine(normalize(x, num_groups=self.num_groups))

    def standardize(self, x, *, train=False) -> jax.Array:
        """``x_hat = (x - mean) / sqrt(var + eps)``, the norm before its affine.

        BatchNorm: batch statistics when ``train`` (updating the running ones with the norm's
        momentum, as ``nnx.BatchNorm`` does), else the running ones. ``affine(standardize(x))``
        is the call's value up to float rounding.
        """
        _check_input(x, self.num_features, type(self).__name__)
        if self.kind != "batch":
            return normalize(x, num_groups=self.num_groups)
        bn = self.norm
        x, mean, var = bn.promote_dtype((x, bn.mean[...], bn.var[...]), dtype=bn.dtype)
        if train:
            # nnx.BatchNorm's statistics (its "fast variance", E[x^2] - E[x]^2), written out: the
            # helper Flax computes them with is private.
            axes = tuple(range(x.ndim - 1))
            xf = x.astype(jnp.promote_types(jnp.float32, x.dtype))
            mean = jnp.mean(xf, axes)
            var = jnp.maximum(0.0, jnp.mean(jnp.square(xf), axes) - jnp.square(mean))
            bn.mean[...] = jax.lax.stop_gradient(bn.momentum * bn.mean[...] + (1 - bn.momentum) * mean)
            bn.var[...] = jax.lax.stop_gradient(bn.momentum * bn.var[...] + (1 - bn.momentum) * var)
        return (x - mean) * jax.lax.rsqrt(var + bn.epsilon)

    def affine(self, x_hat) -> jax.Array:
        """``gamma * x_hat + beta`` with the norm's own gamma and beta."""
        owner = self.norm if self.kind == "batch" else self
        return x_hat * owner.scale[...].astype(x_hat.dtype) + owner.bias[...].astype(x_hat.dtype)


class NormSite(nnx.Module):
    """A conventional norm followed by an optional MC dropout: the baselines' site.

    With a ``preactivation`` site (a :class:`~invnorm_jax.nn.PreactivationSite`), a call with
    ``faults=`` computes ``affine(preactivation(x_hat))``: pre-activation variation lands on the
    standardized activation, before the affine and the dropout, as on the inverted norm's output.
    Without ``faults`` the norm runs as it is (BatchNorm: exactly ``nnx.BatchNorm``).

    >>> site = NormSite(ConventionalNorm(3, kind="layer", rngs=nnx.Rngs(0)), MCDropout(0.3))
    >>> site(jnp.ones((2, 3)), key=jax.random.key(0)).shape
    (2, 3)
    """

    def __init__(self, norm: ConventionalNorm, dropout: nnx.Module | None, preactivation: nnx.Module | None = None):
        self.norm = norm
        self.preactivation = preactivation
        self.dropout = dropout

    def __call__(self, x, *, key=None, rngs=None, train=False, deterministic=None, faults=None):
        if faults is None or self.preactivation is None:
            y = self.norm(x, train=train)
        else:
            x_hat = self.preactivation(self.norm.standardize(x, train=train), key=key, train=train, faults=faults)
            y = self.norm.affine(x_hat)
        if self.dropout is None:
            return y
        return self.dropout(y, key=key, rngs=rngs, train=train, deterministic=deterministic)


def norm_site(
    method: str,
    num_features: int,
    *,
    norm: str = "batch",
    num_groups: int | None = None,
    rate: float = 0.3,
    mode: str = "vector",
    dropout: bool = True,
    preactivation: nnx.Module | None = None,
    rngs: nnx.Rngs,
    **inverted_kwargs,
) -> nnx.Module:
    """The normalization site of ``method`` after a layer with ``num_features`` outputs.

    ========================  ==================================================
    ``nn``                    conventional ``norm``, deterministic
    ``spindrop``              conventional ``norm`` + MC dropout (``rate``)
    ``spatial_spindrop``      conventional ``norm`` + MC spatial dropout
    ``proposed``              :class:`InvertedNorm` + affine dropout (``rate``)
    ``noisy_training``        as ``nn`` (its weight noise: ``nn.noise_training``)
    ========================  ==================================================

    ``norm`` is the baselines' conventional norm (``"batch"`` for CNNs, ``"layer"`` where the
    paper's model has no BatchNorm, ``"group"``); the inverted norm is per instance unless
    ``num_groups`` is given (it is then GroupNorm-style for every method).

    Args:
      method: ``"nn"``, ``"spindrop"``, ``"spatial_spindrop"``, ``"proposed"`` or ``"noisy_training"``.
      num_features: channels of the preceding layer's output.
      norm: the baselines' norm, ``"batch"``, ``"layer"`` or ``"group"``.
      num_groups: groups of channels (GroupNorm-style), or None.
      rate: the dropout / affine-dropout probability.
      mode: affine dropout's ``"vector"`` or ``"element"`` (``proposed`` only).
      dropout: whether the baselines' site carries its MC dropout (False where their dropout
        sits on the crossbar inputs instead: :mod:`invnorm_jax.nn.dropout`).
      preactivation: a pre-activation fault site put between the conventional norm's
        standardization and its affine (baselines only; the inverted norm's output already
        is the standardized activation, so its caller puts the site right after it).
      rngs: ``nnx.Rngs`` for the parameters.
      **inverted_kwargs: more :class:`InvertedNorm` arguments (``proposed`` only).

    Returns:
      An :class:`InvertedNorm` (``proposed``) or a :class:`NormSite`.

    Raises:
      ArgumentError: an unknown ``method`` or ``norm``.

    >>> rngs = nnx.Rngs(0)
    >>> [type(norm_site(m, 8, norm="layer", rngs=rngs)).__name__ for m in ("nn", "spindrop", "proposed")]
    ['NormSite', 'NormSite', 'InvertedNorm']
    >>> type(norm_site("spatial_spindrop", 8, rngs=rngs).dropout).__name__
    'MCSpatialDropout'
    """
    check_choice(method, "method", METHODS)
    if method == "proposed":
        inverted_kwargs.setdefault("keep_rngs", False)  # the library's models hold no RNG state
        return InvertedNorm(num_features, num_groups=num_groups, rate=rate, mode=mode, rngs=rngs, **inverted_kwargs)
    conventional = ConventionalNorm(num_features, kind=norm, num_groups=num_groups, rngs=rngs)
    sampler = {"nn": None, "noisy_training": None, "spindrop": MCDropout, "spatial_spindrop": MCSpatialDropout}[method]
    return NormSite(conventional, sampler(rate) if sampler is not None and dropout else None, preactivation)
