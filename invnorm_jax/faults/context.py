"""What fault to inject, and the per-chip context that layers consult.

A :class:`Fault` describes a fault (kind, level, site): a pytree whose level may be traced, its kind
a built-in name or a function of your own (:mod:`invnorm_jax.faults.kinds`). A :class:`FaultContext`
pairs it with one chip's key; layers that hold a deployable representation call its two hooks:

* :meth:`FaultContext.weights` on their deployed weights (±1 or integer codes),
* :meth:`FaultContext.preactivation` on the normalized activation just before ``sign()``.

Each hook draws from ``fold_in(chip_key, fault_id)``, so one layer of one chip always gets the
same static faults, whatever the input or MC sample.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from invnorm_jax.errors import ArgumentError, ArgumentTypeError
from invnorm_jax.faults import drift as drift_lib
from invnorm_jax.faults import models as fm
from invnorm_jax.faults.kinds import (  # noqa: F401  (KINDS, SITES: their home is kinds.py)
    KINDS,
    PREACTIVATION_KINDS,
    SITES,
    apply_custom,
    check_kind,
    check_level,
    is_custom,
    kind_name,
)
from invnorm_jax.functional.keys import example_keys, fold_in_each


@dataclasses.dataclass(frozen=True)
class Fault:
    """A fault model at a site, at one level; a pytree whose only leaf is the level.

    Args:
      kind: one of ``"bit_flip"`` (level = flip probability per stored bit), ``"additive"``
        (level = sigma in units of the layer's largest weight magnitude), ``"multiplicative"``
        (level = relative sigma), ``"uniform"`` (level = amplitude a of ``U(-a, a)``, in the
        same units as additive), ``"stuck_at"`` (level = fraction of stuck cells),
        ``"drift"`` (level = seconds since programming; :mod:`invnorm_jax.faults.drift`); or your
        own fault model, a function ``kind(key, array, level) -> array``
        (:mod:`invnorm_jax.faults.kinds` gives the protocol; level in your units).
      level: the strength; 0 means fault-free for the built-in kinds. A number, or a jnp scalar
        that may be traced: ``jax.jit(lambda l: simulate_chips(..., fault=Fault("additive", l)))``.
      site: ``"weights"`` (deployed binary weights / integer codes of every quantized layer) or
        ``"preactivation"`` (normalized activation before ``sign()`` in binary networks).
      per_inference: preactivation only; redraw the noise for every input and MC sample
        (read noise) instead of once per chip and neuron (static variation).
      include_full_precision: also fault the full-precision layers (first conv, classifier,
        1x1 shortcuts), which IMC designs usually keep off the crossbar.
      stuck_high: for ``stuck_at``, the share of stuck cells stuck at the high state.
      drift: for ``drift``, its parameters (a frozen :class:`~invnorm_jax.faults.drift.DriftModel`,
        e.g. ``drift.RRAM`` or ``drift.drift_model(dict(preset="rram", compensate=True))``);
        None: the PCM defaults (``drift.PCM``).

    Every field but ``level`` is static (the pytree's aux data: hashed, and compared, when a
    compiled chip step is looked up; a custom kind by identity). ``dataclasses.replace`` works.

    Raises:
      ArgumentError: an unknown kind or site, a negative or NaN level, a probability above 1, or
        a kind not defined at the site (a ``ValueError``).
      ArgumentTypeError: a level that is not a number (text included), a kind that is neither a
        kind name nor a function of ``(key, array, level)``, ``drift`` not a
        :class:`~invnorm_jax.faults.drift.DriftModel` (a ``TypeError``).

    >>> Fault("bit_flip", 0.1).site
    'weights'
    >>> try:
    ...     Fault("bit_flip", 0.1, site="preactivation")
    ... except ValueError as err:
    ...     print(err)
    Fault kind='bit_flip' is not defined at site='preactivation'; expected one of ('additive', 'multiplicative', 'uniform'), or a function of your own.
    >>> jax.tree.leaves(Fault("additive", 0.1))  # the level is the only leaf
    [0.1]
    >>> jax.jit(lambda level: Fault("additive", level).level * 2)(0.25).tolist()  # a traced level
    0.5
    """

    kind: str | Callable
    level: float
    site: str = "weights"
    per_inference: bool = False
    include_full_precision: bool = False
    stuck_high: float = 0.5
    drift: drift_lib.DriftModel | None = None

    def __post_init__(self):
        check_kind(self.kind)
        if not isinstance(self.site, str) or self.site not in SITES:
            raise ArgumentError(f"Fault site={self.site!r} is unknown; expected one of {SITES}.")
        check_level(self.kind, self.level)
        if self.site == "preactivation" and not (is_custom(self.kind) or self.kind in PREACTIVATION_KINDS):
            raise ArgumentError(
                f"Fault kind={self.kind!r} is not defined at site='preactivation'; "
                f"expected one of {PREACTIVATION_KINDS}, or a function of your own."
            )
        if self.per_inference and self.site != "preactivation":
            raise ArgumentError("per_inference=True applies to site='preactivation' only.")
        if not 0.0 <= float(self.stuck_high) <= 1.0:
            raise ArgumentError(f"stuck_high={self.stuck_high} must be in [0, 1].")
        # Drift parameters (optional; a static jit argument, so a hashable frozen dataclass).
        if self.drift is not None:
            if not isinstance(self.drift, drift_lib.DriftModel):
                raise ArgumentTypeError(
                    f"Fault drift={self.drift!r} must be a DriftModel or None; build one from a "
                    "mapping with invnorm_jax.faults.drift.drift_model(dict(preset='rram', ...))."
                )
            if self.kind != "drift":
                raise ArgumentError(f"Fault drift=... applies to kind='drift' only, not kind={kind_name(self.kind)}.")


_STATIC_FIELDS = tuple(f.name for f in dataclasses.fields(Fault) if f.name != "level")


def _flatten_fault(fault: Fault):
    return ((jax.tree_util.GetAttrKey("level"), fault.level),), tuple(getattr(fault, n) for n in _STATIC_FIELDS)


def _unflatten_fault(static, children) -> Fault:
    # No checks: JAX rebuilds pytrees from tracers, batched values and placeholders alike.
    fault = object.__new__(Fault)
    for name, value in zip(_STATIC_FIELDS, static):
        object.__setattr__(fault, name, value)
    object.__setattr__(fault, "level", children[0])
    return fault


jax.tree_util.register_pytree_with_keys(Fault, _flatten_fault, _unflatten_fault)


def apply_kind(fault: Fault, level, key: jax.Array, w: jax.Array, *, bits: int | None) -> jax.Array:
    if is_custom(fault.kind):
        return apply_custom(fault.kind, key, w, level, bits=bits)
    if fault.kind == "additive":
        return fm.additive_variation(key, w, sigma=level)
    if fault.kind == "multiplicative":
        return fm.multiplicative_variation(key, w, sigma=level)
    if fault.kind == "drift":  # conductance drift (invnorm_jax.faults.drift), PCM-like by default
        return drift_lib.drift(key, w, t=level, model=drift_lib.PCM if fault.drift is None else fault.drift)
    if fault.kind == "uniform":
        # Float before abs: abs(-128) overflows in int8.
        return fm.uniform_noise(key, w, amplitude=level * jnp.max(jnp.abs(w.astype(jnp.float32))))
    if bits is None:
        raise ArgumentError(
            f"Fault kind={fault.kind!r} needs a quantized representation (bits=1..16); "
            "set include_full_precision=False or use a variation fault."
        )
    if fault.kind == "bit_flip":
        return fm.bit_flip(key, w, rate=level, bits=bits)
    return fm.stuck_at(key, w, rate=level, bits=bits, high_fraction=fault.stuck_high)


@dataclasses.dataclass(frozen=True)
class FaultContext:
    """One chip's realization of a :class:`Fault`: the fault and the chip's key.

    ``level`` overrides ``fault.level`` and may be a traced scalar, so that one compiled
    simulation serves every level of a sweep.

    >>> chip = FaultContext(Fault("bit_flip", 1.0), jax.random.key(0))
    >>> chip.weights(0, jnp.ones(3), bits=1).tolist()  # every sign flips
    [-1.0, -1.0, -1.0]
    >>> chip.weights(0, jnp.ones(3), bits=None).tolist()  # full precision: left alone by default
    [1.0, 1.0, 1.0]
    >>> chip.preactivation(0, jnp.ones((1, 3))).tolist()  # not this fault's site
    [[1.0, 1.0, 1.0]]
    """

    fault: Fault
    chip_key: jax.Array
    level: Any = None

    @property
    def _level(self):
        return self.fault.level if self.level is None else self.level

    def _key(self, fault_id: int) -> jax.Array:
        return jax.random.fold_in(self.chip_key, fault_id)

    def weights(self, fault_id: int, w: jax.Array, *, bits: int | None) -> jax.Array:
        """Faulty copy of deployed weights ``w`` (±1 for bits=1, integer codes for k bits).

        ``bits=None`` marks a full-precision layer, left alone unless
        ``include_full_precision``. Returns ``w`` unchanged at other sites.
        """
        if not _touches_weights(self.fault, bits):
            return w
        return apply_kind(self.fault, self._level, self._key(fault_id), w, bits=bits)

    def preactivation(self, fault_id: int, x: jax.Array, *, key: jax.Array | None = None) -> jax.Array:
        """Faulty copy of the activation ``x`` ([batch, ...]) just before ``sign()``.

        Static faults have one draw per neuron (shape ``x.shape[1:]``) shared by every input;
        ``per_inference`` faults draw per example from ``key`` (the forward pass's key, or one
        key per example), folded with ``fault_id``: an example's read noise depends on its own
        key only, never on the batch it sits in. A custom kind is called on each example's
        activation ``x[i]`` with those keys: the site's one key for every example when static,
        so that a function drawing its noise of ``x[i]``'s shape from the key faults each neuron
        alike for every input.
        """
        if self.fault.site != "preactivation":
            return x
        if is_custom(self.fault.kind):

            def one(k, xi):
                return apply_custom(self.fault.kind, k, xi, self._level, bits=None)

            keys = self._noise_keys(fault_id, x, key)
            return jax.vmap(one, in_axes=(0 if self.fault.per_inference else None, 0))(keys, x).astype(x.dtype)
        scale, shift = self.preactivation_terms(fault_id, x, key=key)
        # x's dtype is kept: a sweep's level is a float32 array, which would promote bfloat16.
        y = x if scale is None else x * scale
        return (y if shift is None else y + shift).astype(x.dtype)

    def preactivation_terms(self, fault_id: int, x: jax.Array, *, key: jax.Array | None = None):
        """``(scale, shift)``, so that :meth:`preactivation` is ``x * scale + shift`` (None: 1 or 0).

        Per neuron (shape ``x.shape[1:]``) for static faults, per example (``x.shape``) for
        ``per_inference`` ones; ``(None, None)`` at the other site. A custom kind has no such
        terms (it is any function of ``x``): use :meth:`preactivation`.
        """
        if self.fault.site != "preactivation":
            return None, None
        if is_custom(self.fault.kind):
            raise ArgumentTypeError(
                f"Fault kind={kind_name(self.fault.kind)} is a function of the activation: it has "
                "no (scale, shift) terms; call FaultContext.preactivation instead."
            )
        keys = self._noise_keys(fault_id, x, key)
        if self.fault.per_inference:
            return jax.vmap(lambda k: self._terms(k, x.shape[1:], x.dtype))(keys)
        return self._terms(keys, x.shape[1:], x.dtype)

    def _noise_keys(self, fault_id: int, x: jax.Array, key: jax.Array | None) -> jax.Array:
        """The site's key (static faults), or one key per example of ``x`` (``per_inference``)."""
        if not self.fault.per_inference:
            return self._key(fault_id)
        if key is None:
            raise ArgumentError("A per_inference preactivation fault needs the layer's key=.")
        return fold_in_each(fold_in_each(example_keys(key, x.shape[0]), fault_id), 0x5EED)

    def _terms(self, noise_key: jax.Array, shape: tuple[int, ...], dtype):
        """``(scale, shift)`` of noise of ``shape`` drawn from ``noise_key``."""
        # Preactivation sigma is in units of the normalized activation (unit std): no rescaling.
        if self.fault.kind == "uniform":
            return None, self._level * jax.random.uniform(noise_key, shape, dtype=dtype, minval=-1.0, maxval=1.0)
        n = jax.random.normal(noise_key, shape, dtype=dtype)
        if self.fault.kind == "additive":
            return None, self._level * n
        return 1.0 + self._level * n, None


@dataclasses.dataclass(frozen=True)
class FaultChoice:
    """One chip's realization of one of several faults (:class:`Fault`), picked at run time.

    ``choices`` are static (their levels are ignored); ``index`` (a traced int) says which one this
    call injects, at ``level``. Each hook is a ``lax.switch`` over the choices' hooks, so one
    compiled chip simulator serves every fault kind and site of a config: its sweeps, its
    fault-free run and its OOD study (:func:`~invnorm_jax.faults.simulate_chips`'s
    ``compile_for``). Choice ``i`` draws exactly what ``FaultContext(choices[i], chip_key, level)``
    draws.

    >>> chip = FaultChoice((Fault("bit_flip", 0), Fault("additive", 0)), jax.random.key(0), 1, 0.0)
    >>> chip.weights(0, jnp.ones(3), bits=1).tolist()  # choice 1, additive at level 0: unchanged
    [1.0, 1.0, 1.0]
    >>> FaultChoice((Fault("bit_flip", 0),), jax.random.key(0), 0, 1.0).weights(0, jnp.ones(3), bits=1).tolist()
    [-1.0, -1.0, -1.0]
    """

    choices: tuple[Fault, ...]
    chip_key: jax.Array
    index: Any
    level: Any = None

    def __post_init__(self):
        if (
            not isinstance(self.choices, tuple)
            or not self.choices
            or not all(isinstance(f, Fault) for f in self.choices)
        ):
            raise ArgumentTypeError(
                f"FaultChoice(choices={self.choices!r}, ...): expected a non-empty tuple of Fault, e.g. "
                "(Fault('bit_flip', 0), Fault('additive', 0, site='preactivation'))."
            )
        if not isinstance(self.index, jax.core.Tracer):  # lax.switch would clamp a wrong index silently
            index = int(self.index)
            if not 0 <= index < len(self.choices):
                raise ArgumentError(
                    f"FaultChoice index={index} is out of range for {len(self.choices)} choices "
                    f"(0..{len(self.choices) - 1})."
                )

    def _contexts(self):
        return [FaultContext(f, self.chip_key, self.level) for f in self.choices]

    def _switch(self, branches, *args):
        """``branches[index](*args)``, each branch's outputs cast to one dtype and shape."""
        if len(branches) == 1:
            return branches[0](*args)
        outs = jax.tree.leaves([jax.eval_shape(b, *args) for b in branches])
        shape = jnp.broadcast_shapes(*(o.shape for o in outs))
        dtype = jnp.result_type(*(o.dtype for o in outs))  # e.g. int codes under bit-flips, float under variation

        def cast(branch):
            return lambda *a: jax.tree.map(lambda v: jnp.broadcast_to(v, shape).astype(dtype), branch(*a))

        return jax.lax.switch(jnp.asarray(self.index, jnp.int32), [cast(b) for b in branches], *args)

    def weights(self, fault_id: int, w: jax.Array, *, bits: int | None) -> jax.Array:
        """As :meth:`FaultContext.weights`, for the chosen fault."""
        contexts = self._contexts()
        if not any(_touches_weights(c.fault, bits) for c in contexts):
            return w
        return self._switch([functools.partial(c.weights, fault_id, bits=bits) for c in contexts], w)

    def preactivation(self, fault_id: int, x: jax.Array, *, key: jax.Array | None = None) -> jax.Array:
        """As :meth:`FaultContext.preactivation`, for the chosen fault.

        Only the noise is switched (per neuron for static faults), as ``(scale, shift)``; ``x *
        scale + shift`` then fuses with the layers around it as a single fault's hook does. With a
        custom kind among the pre-activation choices, the faulty activations themselves are switched. The
        values are the chosen fault's own (a scale of 1 and a shift of 0 are exact, except that
        ``-0.0 + 0`` is ``+0.0``, which ``sign()`` and every later sum treat alike).
        """
        contexts = self._contexts()
        if not any(c.fault.site == "preactivation" for c in contexts):
            return x
        if any(c.fault.site == "preactivation" and is_custom(c.fault.kind) for c in contexts):
            # A custom kind is any function of x, not x * scale + shift: switch on the outputs.
            return self._switch([functools.partial(c.preactivation, fault_id, key=key) for c in contexts], x)

        def terms(c):
            def branch(x):
                scale, shift = c.preactivation_terms(fault_id, x, key=key)
                one = jnp.ones((), x.dtype)
                return (one if scale is None else scale), (jnp.zeros((), x.dtype) if shift is None else shift)

            return branch

        scale, shift = self._switch([terms(c) for c in contexts], x)
        return (x * scale + shift).astype(x.dtype)


def _touches_weights(fault: Fault, bits: int | None) -> bool:
    """Whether :meth:`FaultContext.weights` changes a layer's weights under ``fault`` (statically)."""
    return fault.site == "weights" and (bits is not None or fault.include_full_precision)


def has_preactivation_sites(model: Any) -> bool:
    """Whether ``model`` has binary activations (the ``preactivation`` fault site).

    >>> from invnorm_jax import nn as inn
    >>> rngs = nnx.Rngs(0)
    >>> has_preactivation_sites(inn.BinaryDense(4, 2, rngs=rngs)), has_preactivation_sites(nnx.Linear(4, 2, rngs=rngs))
    (True, False)
    """
    return any(
        getattr(node, "has_preactivation_site", False)
        for _, node in nnx.iter_graph(model)
        if isinstance(node, nnx.Module)
    )
