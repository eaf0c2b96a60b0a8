"""A :class:`~invnorm_jax.faults.Fault` from a plain mapping (a sweep of a config, a JSON entry)."""

from __future__ import annotations

from collections.abc import Mapping

from invnorm_jax.faults import drift as drift_lib
from invnorm_jax.faults.context import Fault


def fault_from_spec(spec: Mapping, level: float = 0.0) -> Fault:
    """The :class:`Fault` that ``spec`` describes, at ``level``.

    ``spec`` holds ``kind`` and optionally ``site`` (default ``"weights"``), ``per_inference``
    and ``drift`` (None, or a mapping of a ``preset`` and
    :class:`~invnorm_jax.faults.drift.DriftModel` fields; :func:`~invnorm_jax.faults.drift.drift_model`).

    >>> fault_from_spec({"kind": "additive", "site": "preactivation"}, 0.3)
    Fault(kind='additive', level=0.3, site='preactivation', per_inference=False, include_full_precision=False, stuck_high=0.5, drift=None)
    """
    drift = spec.get("drift")
    if drift is not None and hasattr(drift, "to_dict"):  # an ml_collections.ConfigDict
        drift = drift.to_dict()
    return Fault(
        spec["kind"],
        float(level),
        site=spec.get("site", "weights"),
        per_inference=spec.get("per_inference", False),
        drift=drift_lib.drift_model(drift),
    )


__all__ = ["fault_from_spec"]
