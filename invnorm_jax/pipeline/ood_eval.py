"""Uncertainty under distribution shift, on a healthy model and on faulty chips (the paper's Fig. 7).

In detail: docs/pipeline.md (`invnorm_jax.pipeline.ood_eval`).
"""

from __future__ import annotations

import dataclasses
import time
import zlib

import jax
import numpy as np
from tqdm.auto import tqdm

from invnorm_jax import ood
from invnorm_jax.data.common import Split
from invnorm_jax.errors import ArgumentError
from invnorm_jax.faults import Fault, simulate_chips
from invnorm_jax.faults.spec import fault_from_spec
from invnorm_jax.pipeline.evaluation import eval_seed, healthy_fault, is_deterministic, program_faults
from invnorm_jax.pipeline.results import OODResult, OODShift


def shift_stages(settings) -> dict[str, tuple[float, ...]]:
    """``{shift: stages}`` of a config's ``ood`` entry: the registry's default stages unless overridden."""
    custom = settings.get("stages") or {}
    return {name: tuple(float(v) for v in custom.get(name, ood.SHIFTS[name].stages)) for name in settings["shifts"]}


def shifted_inputs(x, stages: dict, *, key, mean=None, std=None) -> tuple[np.ndarray, dict]:
    """All stages of all shifts of ``x`` in one array, the unshifted ``x`` first.

    With ``mean``/``std`` the shift acts on the de-standardized inputs ``x * std + mean`` (so a
    rotation fills corners with the blank background, and noise strength is in data units) and
    its result is standardized again. A stage that leaves the inputs unchanged is not repeated:
    it points at the unshifted block. The noise key is fixed per shift name, so the stages of a
    noise shift scale one noise pattern.

    Returns:
      ``(x_all, blocks)``: ``x_all`` is ``[M * N, ...]``; ``blocks[shift][i]`` the block index
      (slice ``block * N : (block + 1) * N``) of stage ``i``, block 0 being the unshifted ``x``.
    """
    x = np.asarray(x)
    raw = x if mean is None else x * np.float32(std) + np.float32(mean)
    parts, blocks = [x], {}
    for name, levels in stages.items():
        shift_key = jax.random.fold_in(key, zlib.crc32(name.encode()) & 0x7FFFFFFF)  # stable per shift name
        blocks[name] = []
        for level in levels:
            y = np.asarray(ood.SHIFTS[name](shift_key, raw, level), dtype=x.dtype)
            if y.shape != x.shape:
                raise ArgumentError(f"shift {name!r} at stage {level} changed the input shape {x.shape} to {y.shape}.")
            if np.array_equal(y, raw):
                blocks[name].append(0)
                continue
            parts.append(y if mean is None else ((y - np.float32(mean)) / np.float32(std)).astype(x.dtype))
            blocks[name].append(len(parts) - 1)
    return np.concatenate(parts), blocks


def _rows(chip_scores, blocks, stages, taus) -> dict[str, list[list[dict]]]:
    """``{shift: [stage][chip] row}`` with chip ``c``'s threshold ``taus[c]``."""
    return {
        name: [
            [dict(stage=float(level), **ood.stage_row(cs[0], cs[b], taus[c])) for c, cs in enumerate(chip_scores)]
            for level, b in zip(stages[name], blocks[name])
        ]
        for name in stages
    }


def evaluate_shifts(
    model,
    x,
    y,
    stages: dict,
    *,
    num_samples: int,
    key,
    deterministic: bool = False,
    fault: Fault | None = None,
    num_chips: int = 10,
    threshold: str = "mean",
    q: float = 0.95,
    calibration: str = "chip",
    mean=None,
    std=None,
    batch_size=None,
    chunk_size=None,
    healthy: Fault | None = None,
    compile_for=(),
) -> dict:
    """OOD metrics of one model at every stage of ``stages``, healthy and (with ``fault``) on faulty chips.

    Two :func:`~invnorm_jax.faults.simulate_chips` calls: the healthy model (one chip of
    ``healthy``, a zero-level fault, default ``fault`` at level 0) and ``num_chips`` chips carrying
    ``fault``, each on every stage of every shift (:func:`shifted_inputs`) in slices of
    ``batch_size`` inputs (default: ``len(x)``). With the sweeps' ``compile_for``
    (:func:`~invnorm_jax.pipeline.evaluation.program_faults`), the test set's slice shape and the sweeps'
    ``chunk_size``, both reuse the sweeps' compiled call (on a CPU a call computes only its
    active chips: :func:`~invnorm_jax.faults.simulate.chips_per_call`).

    Returns:
      ``{shift: {"healthy": [row per stage], "faulty": [row per stage]}}`` (rows as in the
      module docstring; ``"faulty"`` only with a fault).
    """
    x_all, blocks = shifted_inputs(x, stages, key=jax.random.fold_in(key, 1), mean=mean, std=std)
    num_blocks = len(x_all) // len(x)
    common = dict(
        num_samples=num_samples,
        key=key,
        deterministic=deterministic,
        batch_size=batch_size or len(x),
        chunk_size=chunk_size,
        compile_for=tuple(compile_for),
    )
    if healthy is None:
        healthy = Fault("additive", 0.0) if fault is None else dataclasses.replace(fault, level=0.0)
    out = simulate_chips(model, x_all, fault=healthy, num_chips=1, **common)
    healthy = ood.block_scores(out, y, num_blocks)
    tau_healthy = ood.nll_threshold(healthy[0][0].nll, threshold, q=q)
    rows = _rows(healthy, blocks, stages, [tau_healthy])
    result = {name: {"healthy": [r[0] for r in rows[name]]} for name in stages}
    if fault is None:
        return result

    out = simulate_chips(model, x_all, fault=fault, num_chips=int(num_chips), **common)
    faulty = ood.block_scores(out, y, num_blocks)
    del out
    taus = [tau_healthy if calibration == "healthy" else ood.nll_threshold(cs[0].nll, threshold, q=q) for cs in faulty]
    rows = _rows(faulty, blocks, stages, taus)
    for name in stages:
        result[name]["faulty"] = [
            {"stage": r[0]["stage"], **ood.summarize_chips([_without_stage(x) for x in r])} for r in rows[name]
        ]
    return result


def _without_stage(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "stage"}


def run_ood(config, models: dict, split: Split, *, num_samples: dict[str, int], progress: bool = True) -> OODResult:
    """The OOD study of trained ``models`` (``{method: model}``) on ``split``'s test set.

    Args:
      config: a resolved experiment config (:func:`invnorm_jax.pipeline.config.load_config`) with a
        non-empty ``ood.shifts``.
      models: the trained models by method (the ones the sweeps evaluated).
      split: the task's data; ``split.mean``/``std`` are used for ``domain="raw"``.
      num_samples: MC samples T per method (1 where :func:`~invnorm_jax.pipeline.evaluation.is_deterministic`).
      progress: a progress bar over methods.
    """
    start = time.time()
    per_method = {
        method: method_ood(config, model, split, method, num_samples=num_samples[method])
        for method, model in tqdm(models.items(), desc=f"{config.name}/ood", disable=not progress, leave=False)
    }
    return ood_result(config, split, per_method, num_samples, seconds=time.time() - start)


def method_ood(config, model, split: Split, method: str, *, num_samples: int) -> dict:
    """One method's part of :func:`run_ood`: ``{shift: entry}`` (what :func:`ood_result` collects).

    Methods are independent: :func:`invnorm_jax.pipeline.experiment.run_task` runs each right after its
    sweeps, side by side with the other methods.
    """
    s = config.ood
    raw = _raw_domain(config, split)
    return evaluate_shifts(
        model,
        split.x_test,
        split.y_test,
        shift_stages(s),
        num_samples=num_samples,
        key=jax.random.key(eval_seed(config)),
        deterministic=is_deterministic(config, method),
        fault=_ood_fault(config),
        num_chips=int(s.num_chips),
        threshold=s.threshold,
        q=s.q,
        calibration=s.calibration,
        mean=split.mean if raw else None,
        std=split.std if raw else None,
        batch_size=config.eval.batch_size,
        chunk_size=config.eval.chunk_size,
        healthy=healthy_fault(config),
        compile_for=program_faults(config),
    )


def ood_result(
    config, split: Split, per_method: dict[str, dict], num_samples: dict[str, int], *, seconds: float
) -> OODResult:
    """The :class:`OODResult` of the methods' :func:`method_ood` entries (in the order given)."""
    s = config.ood
    stages = shift_stages(s)
    fault = _ood_fault(config)
    raw = _raw_domain(config, split)
    result = OODResult(
        threshold=s.threshold,
        q=s.q if s.threshold == "quantile" else None,
        calibration=s.calibration,
        domain="raw" if raw else "model",
        num_test=int(len(split.x_test)),
        fault=None
        if fault is None
        else {"kind": fault.kind, "site": fault.site, "level": fault.level, "num_chips": int(s.num_chips)},
        num_samples={},
        shifts={name: OODShift(stages=list(levels)) for name, levels in stages.items()},
    )
    for method, per_shift in per_method.items():
        result.num_samples[method] = num_samples[method]
        for name, entry in per_shift.items():
            result.shifts[name].methods[method] = entry
    result.seconds = round(seconds, 1)
    return result


def _raw_domain(config, split: Split) -> bool:
    """Whether shifts act on de-standardized inputs: ``domain="raw"`` and the split has mean/std."""
    return config.ood.domain == "raw" and split.mean is not None and split.std is not None


def _ood_fault(config) -> Fault | None:
    """The faulty run's fault (None: healthy only)."""
    return None if config.ood.fault is None else fault_from_spec(config.ood.fault, config.ood.fault.level)
