"""Out-of-distribution shifts: pure functions of an input batch, in a registry with their stages.

Rotation of images ``[N, H, W(, C)]``, additive uniform noise on images, additive Gaussian
noise on 1D / time-series inputs. They live in a small registry, :data:`SHIFTS`, each with its
default sweep of levels (*stages*), so an experiment loops over ``SHIFTS[name].stages`` and a
new shift needs only :func:`register_shift`, no change to the evaluation code. Detection and
scoring are in :mod:`invnorm_jax.ood`, which re-exports these names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from scipy import ndimage

from invnorm_jax.errors import ArgumentError

__all__ = [
    "NOISE_STAGES",
    "ROTATION_STAGES",
    "SHIFTS",
    "Shift",
    "gaussian_noise_shift",
    "register_shift",
    "rotate",
    "uniform_noise_shift",
]

# --------------------------------------------------------------------------------- shifts


def rotate(images, degrees: float) -> np.ndarray:
    """Rotate every image counter-clockwise by ``degrees`` about its centre (bilinear).

    Uses ``scipy.ndimage.rotate(order=1, reshape=False)`` on axes (1, 2), so the image keeps
    its size and corners revealed by the rotation are filled with 0. At 90 degrees a square
    image equals ``np.rot90(images, axes=(1, 2))``. Rotation by a multiple of 360 returns an
    exact copy (the interpolator is skipped).

    Args:
      images: ``[N, H, W]`` or ``[N, H, W, C]`` (NumPy or JAX).
      degrees: angle, counter-clockwise.

    Returns:
      A NumPy array of the same shape and dtype.

    >>> x = np.arange(4.0).reshape(1, 2, 2)
    >>> bool(np.array_equal(rotate(x, 0), x))
    True
    """
    x = np.asarray(images)
    if x.ndim not in (3, 4):
        raise ArgumentError(f"images.shape={x.shape}: expected [N, H, W] or [N, H, W, C].")
    if float(degrees) % 360.0 == 0.0:
        return x.copy()
    return ndimage.rotate(x, float(degrees), axes=(1, 2), reshape=False, order=1, mode="constant", cval=0.0)


def _noise(key_or_seed, shape, dtype, kind: str, use_jax: bool):
    """Unit noise (``U(-1, 1)`` or ``N(0, 1)``) from a JAX key or a NumPy seed / Generator."""
    if use_jax:
        if kind == "uniform":
            return jax.random.uniform(key_or_seed, shape, dtype=dtype, minval=-1.0, maxval=1.0)
        return jax.random.normal(key_or_seed, shape, dtype=dtype)
    rng = np.random.default_rng(key_or_seed)
    noise = rng.uniform(-1.0, 1.0, shape) if kind == "uniform" else rng.standard_normal(shape)
    return noise.astype(dtype)


def _is_jax_key(key_or_seed) -> bool:
    return isinstance(key_or_seed, jax.Array) and (
        jax.dtypes.issubdtype(key_or_seed.dtype, jax.dtypes.prng_key) or key_or_seed.dtype == jnp.uint32
    )


def _add_noise(key_or_seed, x, strength: float, kind: str, clip):
    name = "strength"
    if not isinstance(strength, jax.core.Tracer) and not float(strength) >= 0.0:
        raise ArgumentError(f"{name}={strength!r} is out of range: expected {name} >= 0.")
    use_jax = _is_jax_key(key_or_seed)
    xp = jnp if use_jax else np
    x = xp.asarray(x)
    dtype = x.dtype if xp.issubdtype(x.dtype, xp.floating) else np.float32
    y = x.astype(dtype) + strength * _noise(key_or_seed, x.shape, dtype, kind, use_jax)
    return y if clip is None else xp.clip(y, *clip)


def uniform_noise_shift(key_or_seed, images, strength: float, *, clip: tuple[float, float] | None = None):
    """Additive uniform noise: :math:`x' = x + u`, :math:`u \\sim \\mathcal{U}(-s, s)`.

    ``strength`` ``s`` is in the units of the data (for images scaled to [0, 1]: the share of
    the pixel range). Strength 0 is the exact identity (``x + 0 * u``).

    Args:
      key_or_seed: a JAX key (JAX result) or an int seed / ``np.random.Generator`` (NumPy result).
      images: any shape, typically ``[N, H, W, C]``.
      strength: half-width ``s >= 0``.
      clip: optional ``(low, high)`` to clip the result to the data range.

    >>> x = np.zeros((1, 2, 2, 1), np.float32)
    >>> bool(np.all(np.abs(uniform_noise_shift(0, x, 0.3)) <= 0.3))
    True
    """
    return _add_noise(key_or_seed, images, strength, "uniform", clip)


def gaussian_noise_shift(key_or_seed, x, strength: float, *, clip: tuple[float, float] | None = None):
    """Additive Gaussian noise for 1D / time-series inputs: :math:`x' = x + s\\,n`, :math:`n \\sim \\mathcal{N}(0, 1)`.

    ``strength`` ``s`` is the noise std in the units of the data (std units for standardized
    series). Strength 0 is the exact identity. Arguments as :func:`uniform_noise_shift`.

    >>> x = np.ones((2, 5), np.float32)
    >>> bool(np.array_equal(gaussian_noise_shift(0, x, 0.0), x))
    True
    """
    return _add_noise(key_or_seed, x, strength, "gaussian", clip)


@dataclasses.dataclass(frozen=True)
class Shift:
    """A registered distribution shift: ``shift(key_or_seed, x, level)`` and its default stages.

    >>> shift = Shift(lambda key, x, level: x + level, stages=(0.0, 0.5))
    >>> shift(0, np.zeros(2), 0.5).tolist(), shift.axis_label
    ([0.5, 0.5], 'strength')
    """

    fn: Callable[[Any, Any, float], Any]
    stages: tuple[float, ...]
    unit: str = ""  # appended to a stage in tables ("°")
    axis_label: str = "strength"  # the x-axis of a plot

    def __call__(self, key_or_seed, x, level):
        return self.fn(key_or_seed, x, level)


SHIFTS: dict[str, Shift] = {}


def register_shift(
    name: str,
    fn: Callable[[Any, Any, float], Any],
    stages: Sequence[float],
    *,
    unit: str = "",
    axis_label: str | None = None,
) -> Shift:
    """Add a shift to :data:`SHIFTS` (replacing any of the same name) and return it.

    Args:
      name: registry key.
      fn: ``fn(key_or_seed, x, level) -> shifted x``; deterministic shifts ignore the key.
      stages: default sweep of levels; by convention the first is 0, the unshifted reference.
      unit: appended to a stage where reports print it (e.g. ``"°"``).
      axis_label: the x-axis label of plots (default ``"<name> strength"``).

    >>> s = register_shift("flip_lr", lambda key, x, level: x[:, :, ::-1] if level else x, (0, 1))
    >>> SHIFTS["flip_lr"].stages
    (0.0, 1.0)
    >>> _ = SHIFTS.pop("flip_lr")
    """
    shift = Shift(
        fn=fn,
        stages=tuple(float(s) for s in stages),
        unit=unit,
        axis_label=axis_label or f"{name.replace('_', ' ')} strength",
    )
    SHIFTS[name] = shift
    return shift


# Rotation: 7-degree steps, 13 levels 0, 7, ..., 84 (the unshifted reference plus 12 shifted
# stages, the paper's Fig. 7 sweep). Noise: the same number of levels, 0 .. 1.2 in 0.1 steps.
ROTATION_STAGES = tuple(float(7 * i) for i in range(13))
NOISE_STAGES = tuple(round(0.1 * i, 1) for i in range(13))

register_shift(
    "rotation", lambda key, x, level: rotate(x, level), ROTATION_STAGES, unit="°", axis_label="rotation (degrees)"
)
register_shift("uniform_noise", uniform_noise_shift, NOISE_STAGES)
register_shift("gaussian_noise", gaussian_noise_shift, NOISE_STAGES)
