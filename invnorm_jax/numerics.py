"""Guards against NaN and Inf: say where a non-finite value first appeared.

Two kinds:

* Opt-in checks (``INVNORM_CHECK_FINITE=1``, or ``check_finite=True`` where a function takes
  it): training inputs, every parameter after every step, the loss of every step, and the
  outputs of every evaluated chip. They read values back from the device, so they are off by
  default; when off, not one of them runs (the jitted functions are the same either way: the
  checks sit outside them, on the host).
* An always-on check of the training loss, which is read every ``log_every`` steps anyway,
  and of the parameters before a checkpoint is written (on the host, as the save reads them
  anyway), so that a diverged run stops with a clear error and never leaves a NaN checkpoint.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from invnorm_jax.errors import NonFiniteError

#: The environment variable that switches the opt-in checks on (``1``, ``true``, ``yes``).
ENV_VAR = "INVNORM_CHECK_FINITE"


def check_finite_enabled(flag: bool | None = None) -> bool:
    """Whether the opt-in checks run: ``flag`` when given, else ``INVNORM_CHECK_FINITE``.

    >>> check_finite_enabled(True), check_finite_enabled(False)
    (True, False)
    """
    if flag is not None:
        return bool(flag)
    return os.environ.get(ENV_VAR, "").strip().lower() in ("1", "true", "yes", "on")


def path_name(path) -> str:
    """``"blocks/0/conv1/kernel"`` of a ``jax.tree_util`` key path.

    >>> [path_name(p) for p, _ in jax.tree_util.tree_flatten_with_path({"blocks": [{"kernel": 0.0}]})[0]]
    ['blocks/0/kernel']
    """
    return "/".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path)


def describe_nonfinite(value) -> str | None:
    """``"2 NaN, 1 Inf of 64 values, first at index (3, 1)"``, or None if every value is finite.

    >>> describe_nonfinite(np.array([[1.0, np.nan], [np.inf, np.nan]]))
    '2 NaN, 1 Inf of 4 values, first at index (0, 1)'
    >>> describe_nonfinite(np.ones(3)) is None
    True
    """
    a = np.asarray(value)
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.complexfloating)):
        return None
    bad = ~np.isfinite(a)
    if not bad.any():
        return None
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    return f"{int(np.isnan(a).sum())} NaN, {int(np.isinf(a).sum())} Inf of {a.size} values, first at index {first}"


def check_array(value, what: str, hint: str = "") -> None:
    """Raise :class:`NonFiniteError` naming ``what`` if ``value`` holds a NaN or Inf.

    Raises:
      NonFiniteError: ``value`` holds a NaN or Inf; the message names ``what`` and ends with ``hint``.

    >>> try:
    ...     check_array(np.array([0.5, np.inf]), "the loss", "lower the learning rate.")
    ... except NonFiniteError as err:
    ...     print(err)
    the loss: 0 NaN, 1 Inf of 2 values, first at index (1,). lower the learning rate.
    """
    found = describe_nonfinite(value)
    if found is not None:
        raise NonFiniteError(f"{what}: {found}." + (f" {hint}" if hint else ""))


def nonfinite_leaves(tree) -> list[str]:
    """``"path (what)"`` for every leaf of ``tree`` with a NaN or Inf (host-side; reads every leaf).

    >>> nonfinite_leaves({"w": np.array([np.nan, 1.0]), "b": np.zeros(2)})
    ['w (1 NaN, 0 Inf of 2 values, first at index (0,))']
    """
    out = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            continue
        found = describe_nonfinite(leaf)
        if found is not None:
            out.append(f"{path_name(path)} ({found})")
    return out


def check_tree(tree, what: str, hint: str = "") -> None:
    """Raise :class:`NonFiniteError` naming every leaf of ``tree`` that holds a NaN or Inf.

    Raises:
      NonFiniteError: at least one leaf holds a NaN or Inf; the message names up to five.

    >>> try:
    ...     check_tree({"w": np.array([np.nan]), "b": np.zeros(1)}, "parameters after step 3")
    ... except NonFiniteError as err:
    ...     print(err)
    parameters after step 3: non-finite values in w (1 NaN, 0 Inf of 1 values, first at index (0,)).
    """
    bad = nonfinite_leaves(tree)
    if bad:
        listed = "; ".join(bad[:5]) + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise NonFiniteError(f"{what}: non-finite values in {listed}." + (f" {hint}" if hint else ""))


__all__ = [
    "ENV_VAR",
    "NonFiniteError",
    "check_array",
    "check_finite_enabled",
    "check_tree",
    "describe_nonfinite",
    "nonfinite_leaves",
    "path_name",
]
