"""Conductance drift of the deployed weights (phase-change and resistive memories).

The conductance of a programmed PCM (and, much more weakly, RRAM) cell relaxes after
programming as a power law of the time since programming:

.. math:: g(t) = g(t_0) \\left(\\frac{t}{t_0}\\right)^{-\\nu}, \\qquad
          \\nu \\sim \\mathcal{N}(\\nu_\\mu, \\nu_\\sigma) \\text{ clipped at } 0,

one exponent ``nu`` per device (per weight), drawn once per chip. ``t0`` is the time of the
first (verify) read after programming: the weights were programmed and verified to their
target at ``t0``, so for ``t <= t0`` there is no drift (``t_eff = max(t, t0)``), and
``t = 0`` (the sweep's level 0) is exactly the fault-free chip. (IBM's aihwkit counts the
inference time from the end of programming instead, ``t_eff = t + t0``; both agree to within
``t0`` seconds, i.e. for every time of interest.)

Drift acts on the conductance *magnitude* of every code: a signed weight is a differential
pair ``g+ - g-`` of which only one device is programmed, so drift shrinks ``|w|`` and never
flips its sign. ``0`` codes stay ``0``.

Optional accumulated read (1/f) noise, relative to the drifted magnitude, with a standard
deviation growing as the square root of ``log(t / t0)``:

.. math:: |w'| = \\max\\Big(0,\\; |w| (t_{eff}/t_0)^{-\\nu}
          \\big(1 + r \\sqrt{\\log(t_{eff}/t_0)}\\, n\\big)\\Big), \\qquad n \\sim \\mathcal{N}(0, 1)

Optional global drift compensation (as IMC designs do with a reference read of the array,
e.g. aihwkit's ``GlobalDriftCompensation``): one scalar per layer,
``alpha = sum|w| / sum|w'|`` (the ratio of the mean magnitudes before and after drift),
multiplies the drifted layer; it undoes the common decay and leaves the device-to-device
spread of ``nu`` (and the read noise).

Typical published values:

* PCM: ``nu`` about 0.05 to 0.1. Joshi et al. 2020, "Accurate deep neural network inference
  using computational phase-change memory", Nature Communications 11, 2473; Ambrogio et al.
  2019 (IEDM), "Reducing the impact of phase-change memory conductance drift on the inference
  of large-scale hardware neural networks". IBM aihwkit's PCM statistical model
  (``PCMLikeNoiseModel``) uses ``t0 = 20 s`` and a conductance-dependent mean ``nu`` in
  [0.049, 0.1] with a spread in [0.008, 0.045].
* RRAM: ``nu`` about 0.005 to 0.01 (an order of magnitude below PCM).

The defaults (:data:`PCM`) are a PCM-like model: ``nu ~ N(0.05, 0.02)``, ``t0 = 20 s``, no read
noise, no compensation. :data:`RRAM` is the weak-drift preset. :func:`drift_model` builds a
:class:`DriftModel` from a config entry (a preset name and field overrides).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from invnorm_jax.errors import ArgumentError, ArgumentTypeError, did_you_mean
from invnorm_jax.faults.models import check_level_range, float_dtype

__all__ = ["PCM", "PRESETS", "RRAM", "DriftModel", "drift", "drift_factor_log", "drift_model"]


@dataclasses.dataclass(frozen=True)
class DriftModel:
    """Parameters of :func:`drift` (all but the time).

    Args:
      nu_mean: mean drift exponent (dimensionless), ``>= 0``.
      nu_std: device-to-device standard deviation of the exponent, ``>= 0``.
      t0: time of the reference (verify) read after programming, in seconds, ``> 0``.
      read_noise: relative read-noise coefficient ``r`` (dimensionless), ``>= 0``; its std is
        ``r * sqrt(log(t / t0))`` of the drifted magnitude. 0: off.
      compensate: apply global drift compensation (one scalar per layer).

    Raises:
      ValueError: a parameter out of its range.
      TypeError: a parameter that is not a number (``compensate``: not a bool).

    >>> RRAM.nu_mean, PCM.nu_mean > RRAM.nu_mean
    (0.005, True)
    >>> DriftModel(nu_mean=0.1, compensate=True).t0
    20.0
    """

    nu_mean: float = 0.05
    nu_std: float = 0.02
    t0: float = 20.0
    read_noise: float = 0.0
    compensate: bool = False

    def __post_init__(self):
        # Plain Python numbers: a DriftModel is part of a static jit argument (a Fault), so it
        # must hash, and it is written into sweep cache keys (JSON).
        for name in ("nu_mean", "nu_std", "t0", "read_noise"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise ArgumentTypeError(f"DriftModel {name}={value!r} must be a number.")
            object.__setattr__(self, name, float(value))
        if not isinstance(self.compensate, (bool, np.bool_)):
            raise ArgumentTypeError(f"DriftModel compensate={self.compensate!r} must be True or False.")
        object.__setattr__(self, "compensate", bool(self.compensate))
        for name in ("nu_mean", "nu_std", "read_noise"):
            check_level_range(name, getattr(self, name), 0.0)
        if not float(self.t0) > 0.0:
            raise ArgumentError(f"t0={self.t0!r} is out of range: expected t0 > 0 seconds (the first read).")


#: PCM-like drift (aihwkit's ``t0``, a mean exponent at the low end of the measured range).
PCM = DriftModel()
#: RRAM-like drift: an exponent ten times smaller.
RRAM = DriftModel(nu_mean=0.005, nu_std=0.002)
#: The presets a config names with ``preset=``.
PRESETS = {"pcm": PCM, "rram": RRAM}


def drift_model(spec) -> DriftModel | None:
    """The :class:`DriftModel` of a config entry, e.g. a sweep's ``drift`` key.

    Args:
      spec: None (the fault's default, :data:`PCM`), a :class:`DriftModel`, or a mapping with an
        optional ``preset`` (a key of :data:`PRESETS`, default ``"pcm"``) and any fields of
        :class:`DriftModel`, which override the preset's, e.g.
        ``dict(preset="rram", compensate=True)``.

    Returns:
      None for None, else the model.

    Raises:
      ValueError / TypeError: an unknown preset or field, or a value out of range, named.

    >>> drift_model(dict(preset="rram", compensate=True)) == DriftModel(0.005, 0.002, compensate=True)
    True
    """
    if spec is None or isinstance(spec, DriftModel):
        return spec
    if not isinstance(spec, Mapping):
        raise ArgumentTypeError(
            f"drift={spec!r} must be a mapping of DriftModel fields (e.g. dict(preset='rram', "
            "compensate=True)), a DriftModel or None."
        )
    spec = dict(spec)
    preset = spec.pop("preset", "pcm")
    if preset not in PRESETS:
        raise ArgumentError(f"drift preset={preset!r} is unknown; expected one of {tuple(PRESETS)}.")
    fields = tuple(f.name for f in dataclasses.fields(DriftModel))
    for key in spec:
        if key not in fields:
            raise ArgumentError(
                f"drift has no parameter {key!r}{did_you_mean(key, fields)}; expected 'preset' and any of {fields}."
            )
    return dataclasses.replace(PRESETS[preset], **spec)


def drift_factor_log(t, t0) -> jax.Array:
    """``log(max(t, t0) / t0)``: 0 for every ``t <= t0``, so that no time before the verify
    read drifts (and ``t = 0`` is exactly the identity).

    >>> [round(float(v), 4) for v in drift_factor_log(jnp.array([0.0, 20.0, 200.0]), 20.0)]
    [0.0, 0.0, 2.3026]
    """
    t = jnp.asarray(t, dtype=jnp.result_type(float))
    return jnp.log(jnp.maximum(t, t0) / t0)


def drift(key: jax.Array, w: jax.Array, *, t, model: DriftModel = PCM) -> jax.Array:
    """The deployed weights ``w`` after ``t`` seconds of conductance drift.

    .. math:: w' = \\alpha \\, \\mathrm{sign}(w) \\max\\big(0, |w| e^{-\\nu L}(1 + r\\sqrt{L} n)\\big),
              \\qquad L = \\log(\\max(t, t_0)/t_0)

    with ``nu ~ N(nu_mean, nu_std)`` clipped at 0 per element, ``n ~ N(0, 1)`` per element, and
    ``alpha = sum|w| / sum|w'|`` with ``model.compensate`` (else 1).

    Args:
      key: a PRNG key (one chip's, one layer's).
      w: deployed weights: ±1 codes, k-bit integer codes, or floats; any shape.
      t: time since programming in seconds, ``>= 0``; may be traced.
      model: the drift parameters (:data:`PCM` by default).

    Returns:
      A float array of ``w``'s shape (``w``'s dtype if it is float, else the default float):
      drifted codes are no longer integers. Exactly ``w`` for every ``t <= model.t0``.

    >>> w = jnp.array([1.0, -1.0, 0.0])
    >>> drift(jax.random.key(0), w, t=0.0).tolist()
    [1.0, -1.0, 0.0]
    >>> bool(jnp.all(jnp.abs(drift(jax.random.key(0), w, t=3.15e7)) <= jnp.abs(w)))
    True
    """
    check_level_range("t", t, 0.0)
    dtype = float_dtype(w)
    wf = w.astype(dtype)
    nu_key, noise_key = jax.random.split(key)
    log_ratio = drift_factor_log(t, model.t0).astype(dtype)
    nu = jnp.maximum(model.nu_mean + model.nu_std * jax.random.normal(nu_key, w.shape, dtype=dtype), 0.0)
    magnitude = jnp.abs(wf) * jnp.exp(-nu * log_ratio)  # exp(-0 * nu) == 1 exactly
    if model.read_noise:
        n = jax.random.normal(noise_key, w.shape, dtype=dtype)
        magnitude = jnp.maximum(magnitude * (1.0 + model.read_noise * jnp.sqrt(log_ratio) * n), 0.0)
    if model.compensate:
        before, after = jnp.sum(jnp.abs(wf)), jnp.sum(magnitude)
        magnitude = magnitude * jnp.where(after > 0, before / jnp.where(after > 0, after, 1.0), 1.0)
    return (jnp.sign(wf) * magnitude).astype(dtype)
