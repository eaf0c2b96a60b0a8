"""One trained model on simulated chips: its fault-free metric and every fault sweep of a config.

The per-chip metric is :mod:`invnorm_jax.metrics`'s: :func:`~invnorm_jax.metrics.chip_counts`
on each slice of the test set as the chip simulator yields it, summed, then
:func:`~invnorm_jax.metrics.metric_from_counts`. Only one slice's
``[chips, samples, slice, ...]`` outputs are ever held, so paper-size test sets (DRIVE's full
images, all of CIFAR-10) fit however many chips and samples are simulated.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
from tqdm.auto import tqdm

from invnorm_jax import metrics
from invnorm_jax.data.common import Split
from invnorm_jax.faults import Fault
from invnorm_jax.faults.simulate import iter_simulate_chips
from invnorm_jax.nn import DETERMINISTIC_METHODS
from invnorm_jax.results import Level, MethodResult

#: The extras key of a :class:`~invnorm_jax.data.Split` whose bool mask selects the test
#: positions that count (DRIVE: the field of view).
TEST_MASK = "test_mask"


def per_chip_metric(model, x, y, metric: str, *, mask=None, **simulate_kwargs) -> np.ndarray:
    """Simulate chips slice by slice and reduce each slice at once: ``[chips]`` metric values.

    Args:
      model: a model with the library's call convention.
      x, y: test inputs and labels / targets.
      metric: a key of :data:`invnorm_jax.metrics.TASK_METRICS`.
      mask: bool ``[N, ...]``, the positions that count (mIoU only).
      **simulate_kwargs: :func:`invnorm_jax.faults.simulate.iter_simulate_chips`'s.
    """
    total = None
    step = simulate_kwargs.get("batch_size") or len(x)
    for start, out in iter_simulate_chips(model, x, **simulate_kwargs):
        sl = slice(start, start + step)
        counts = np.asarray(metrics.chip_counts(out, y[sl], metric, None if mask is None else mask[sl]), np.float64)
        total = counts if total is None else total + counts
    return metrics.metric_from_counts(total, metric)


def is_deterministic(config, method: str) -> bool:
    """Whether ``method`` is evaluated without its sampler: it has none, or ``eval.deterministic``."""
    return method in DETERMINISTIC_METHODS or bool(config.eval.deterministic)


def num_samples_of(config, method: str) -> int:
    """MC samples T of ``method``: the config's, or 1 when it is evaluated deterministically."""
    return 1 if is_deterministic(config, method) else int(config.eval.num_samples)


def fault_of(spec, level: float = 0.0) -> Fault:
    """The :class:`Fault` of a config entry (a sweep, or ``ood.fault``) at ``level``."""
    return Fault(spec["kind"], float(level), site=spec.get("site", "weights"),
                 per_inference=spec.get("per_inference", False))


def evaluate_method(model, config, split: Split, method: str, *, sweeps: bool | Sequence[str] = True,
                    progress: bool = True, reuse_fault_free: bool = True) -> MethodResult:
    """Fault-free metric and (with ``sweeps``) every sweep of ``config`` for one trained model.

    Args:
      model, config, split, method: the trained model, its config, its data and its method.
      sweeps: True for every sweep of the config, False for none, or the names of some.
      progress: show a progress bar per sweep.
      reuse_fault_free: level 0 of every sweep is the fault-free metric on every chip, without
        simulating it again (False: simulate it, as a check; the values agree to float rounding).

    Every level of a sweep reuses one compiled chip simulator (the level is traced), and chip
    ``i`` is the same chip at every level. The fault-free metric is one chip at a zero-level
    fault with the same MC sample keys as every chip, so a zero-level fault, which is no fault,
    reproduces it on every chip: a sweep's level 0 costs nothing.
    """
    ev = config.eval
    deterministic = is_deterministic(config, method)
    num_samples = num_samples_of(config, method)
    common = dict(num_samples=num_samples, key=jax.random.key(config.seed + 1), deterministic=deterministic,
                  batch_size=ev.batch_size, chunk_size=ev.chunk_size, mask=(split.extras or {}).get(TEST_MASK))
    x, y, metric = split.x_test, split.y_test, config.metric

    healthy = per_chip_metric(model, x, y, metric, fault=Fault("additive", 0.0), num_chips=1, **common)
    result = MethodResult(fault_free=float(healthy[0]), num_chips=int(ev.num_chips), num_samples=num_samples)
    for name, sweep in config.sweeps.items():
        if not (sweeps is True or (sweeps and name in sweeps)):
            continue
        rows = []
        for level in tqdm(sweep.levels, desc=f"{config.name}/{method}/{name}", disable=not progress, leave=False):
            if float(level) == 0.0 and reuse_fault_free:  # no fault: every chip is the fault-free run
                per_chip = np.full(int(ev.num_chips), healthy[0])
            else:
                per_chip = per_chip_metric(model, x, y, metric, fault=fault_of(sweep), level=float(level),
                                           num_chips=int(ev.num_chips), **common)
            rows.append(Level(level=float(level), mean=float(per_chip.mean()), std=float(per_chip.std()),
                              chips=per_chip.tolist()))
        result.sweeps[name] = rows
    return result
