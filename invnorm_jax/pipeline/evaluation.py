"""One trained model on simulated chips: its fault-free metric and every fault sweep of a config.

In detail: docs/pipeline.md (`invnorm_jax.pipeline.evaluation`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import pathlib
from collections.abc import Sequence

import jax
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from invnorm_jax import metrics, numerics
from invnorm_jax.checkpoint import raise_if_stopped
from invnorm_jax.data.common import Split
from invnorm_jax.errors import NonFiniteError
from invnorm_jax.faults import Fault
from invnorm_jax.faults.compiling import chip_compiler_options
from invnorm_jax.faults.simulate import iter_simulate_chips
from invnorm_jax.faults.spec import fault_from_spec
from invnorm_jax.nn import DETERMINISTIC_METHODS
from invnorm_jax.pipeline.results import Level, MethodResult

#: The extras key of a :class:`~invnorm_jax.data.Split` whose bool mask selects the test
#: positions that count (DRIVE: the field of view).
TEST_MASK = "test_mask"
#: Config groups that cannot change a sweep level's values (the rest is part of its cache key).
NOT_IN_KEY = ("name", "variant", "overrides", "config_source", "methods", "sweeps", "ood")

log = logging.getLogger(__name__)


def per_chip_metric(
    model,
    x,
    y,
    metric: str,
    *,
    mask=None,
    check_finite: bool | None = None,
    where: str = "evaluation",
    **simulate_kwargs,
) -> np.ndarray:
    """Simulate chips slice by slice and reduce each slice at once: ``[chips]`` metric values.

    Args:
      model: a model with the library's call convention.
      x, y: test inputs and labels / targets.
      metric: a key of :data:`invnorm_jax.metrics.TASK_METRICS`.
      mask: bool ``[N, ...]``, the positions that count (mIoU only).
      check_finite: check every slice's outputs for NaN/Inf (a device read per slice); None:
        the ``INVNORM_CHECK_FINITE`` environment variable decides (default off).
      where: what is evaluated, for the message of a non-finite output.
      **simulate_kwargs: :func:`invnorm_jax.faults.simulate.iter_simulate_chips`'s.
    """
    check = numerics.check_finite_enabled(check_finite)
    total = None
    step = simulate_kwargs.get("batch_size") or len(x)
    for start, out in iter_simulate_chips(model, x, **simulate_kwargs):
        sl = slice(start, start + step)
        if check:
            _check_outputs(out, where, start)
        counts = np.asarray(metrics.chip_counts(out, y[sl], metric, None if mask is None else mask[sl]), np.float64)
        total = counts if total is None else total + counts
    values = metrics.metric_from_counts(total, metric)
    if check:
        numerics.check_array(values, f"{where}: the per-chip {metric}")
    return values


def _check_outputs(out, where: str, start: int) -> None:
    """Name the chips and inputs of a ``[chips, samples, slice, ...]`` output with a NaN or Inf."""
    a = np.asarray(out)
    bad = ~np.isfinite(a.reshape(a.shape[0], a.shape[1], a.shape[2], -1)).all(-1)  # [chips, samples, slice]
    if bad.any():
        chips, _, inputs = np.nonzero(bad)
        raise NonFiniteError(
            f"{where}: the model outputs are not finite on {len(set(chips.tolist()))} of {a.shape[0]} chips "
            f"(first: chip {chips[0]}, test input {start + inputs[0]}; {numerics.describe_nonfinite(a)}). "
            "Check the trained parameters (INVNORM_CHECK_FINITE=1 during training) and the test inputs."
        )


def fingerprint(*trees) -> str:
    """SHA-256 of the paths, shapes, dtypes and bytes of every leaf of ``trees`` (arrays, numbers)."""
    h = hashlib.sha256()
    for tree in trees:
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
            if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
                leaf = jax.random.key_data(leaf)
            a = np.ascontiguousarray(np.asarray(leaf))
            h.update(f"{numerics.path_name(path)}|{a.dtype}|{a.shape}|".encode())
            h.update(a.tobytes())
    return h.hexdigest()


class LevelCache:
    """Finished sweep levels, one small JSON file each in ``folder``: an interrupted sweep resumes.

    A file is named by a hash of everything its per-chip values depend on (:meth:`key`): the
    model's weights, the test data, the config except its sweeps, OOD study and names, the
    fault (kind, site, per-inference) and the level, the faults the compiled chip step serves
    (:func:`program_faults`), the versions of invnorm-jax and JAX, the backend, the devices,
    ``XLA_FLAGS`` and the chip steps' compiler options. Any change (a retrained model, another ``eval.num_chips``,
    ``eval.num_samples``, ``seed`` or fault) gives other names, so stale values are never
    read; a level is reused whatever the other levels of its sweep are, because chip ``i`` is
    the same chip at every level. Files are written atomically (a temporary file, then
    ``os.replace``), so a kill leaves either the whole file or none. Delete the folder to
    recompute everything.
    """

    def __init__(self, folder):
        self.folder = pathlib.Path(folder)

    @staticmethod
    def key(base: dict, **fields) -> dict:
        """The cache key of one result: ``base`` (model, data, config) plus ``fields``."""
        return {**base, **fields}

    def path(self, key: dict) -> pathlib.Path:
        digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:40]
        return self.folder / f"{digest}.json"

    def get(self, key: dict) -> np.ndarray | None:
        """The cached per-chip values of ``key``, or None (a damaged file is ignored with a warning)."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            d = json.loads(path.read_text())
            if json.loads(json.dumps(key, default=str)) != d["key"]:
                return None
            return np.asarray(d["chips"], np.float64)
        except (OSError, ValueError, KeyError, TypeError) as err:
            log.warning("ignoring the damaged sweep result %s (%s); computing it again.", path, err)
            return None

    def put(self, key: dict, values: np.ndarray) -> None:
        """Store ``values`` under ``key`` atomically."""
        path = self.path(key)
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp")
        with open(tmp, "w") as f:
            json.dump({"key": key, "chips": [float(v) for v in values]}, f, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


def cache_base(model, config, split: Split, method: str) -> dict:
    """What every cached level of ``method`` depends on besides its fault and level."""
    from invnorm_jax import __version__
    from invnorm_jax.pipeline import config as config_lib

    conf = {k: v for k, v in config_lib.to_dict(config).items() if k not in NOT_IN_KEY}
    # Other kernels may round differently: values from another JAX, backend, device, XLA_FLAGS or
    # optimization level of the chip steps are not reused.
    devices = f"{jax.local_device_count()} x {jax.devices()[0].device_kind}"
    return {
        "format": 1,
        "invnorm_jax": __version__,
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": devices,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "chip_compile": [list(item) for item in chip_compiler_options()],
        # The faults the compiled step serves (the sweeps are not in "config"): another set is
        # another program, which may round differently.
        "program": [dataclasses.asdict(f) for f in program_faults(config)],
        "method": method,
        "config": conf,
        "model": fingerprint(nnx.to_pure_dict(nnx.state(model))),
        "data": fingerprint(split.x_test, split.y_test, (split.extras or {}).get(TEST_MASK)),
    }


def eval_seed(config) -> int:
    """The root of the chips' and MC samples' keys: ``eval.seed``, independent of the training seed."""
    return int(config.eval.get("seed", 1))


def is_deterministic(config, method: str) -> bool:
    """Whether ``method`` is evaluated without its sampler: it has none, or ``eval.deterministic``."""
    return method in DETERMINISTIC_METHODS or bool(config.eval.deterministic)


def num_samples_of(config, method: str) -> int:
    """MC samples T of ``method``: the config's, or 1 when it is evaluated deterministically."""
    return 1 if is_deterministic(config, method) else int(config.eval.num_samples)


def program_faults(config) -> tuple[Fault, ...]:
    """Every fault a config's chips are simulated with: its sweeps' and its OOD fault's (levels 0).

    Passed as ``compile_for`` to the chip simulator, so that one compiled step per model serves
    every sweep, the fault-free run and the OOD study, the fault picked at run time.
    """
    specs = (*config.sweeps.values(), *([config.ood.fault] if config.ood.get("fault") else []))
    return tuple(dict.fromkeys(fault_from_spec(spec, 0.0) for spec in specs))


def healthy_fault(config) -> Fault:
    """The fault of a config's fault-free runs: its first sweep's (or OOD fault's) kind at level 0.

    A zero-level fault is no fault (every kind, both sites), so the fault-free metric is exact;
    taking a sweep's kind lets the fault-free run, that sweep and the OOD study share one
    compiled chip simulator (:mod:`invnorm_jax.faults.simulate`); with :func:`program_faults` every
    sweep shares it too.
    """
    program = program_faults(config)
    return program[0] if program else Fault("additive", 0.0)


def evaluate_method(
    model,
    config,
    split: Split,
    method: str,
    *,
    sweeps: bool | Sequence[str] = True,
    progress: bool = True,
    reuse_fault_free: bool = True,
    cache: LevelCache | None = None,
    check_finite: bool | None = None,
) -> MethodResult:
    """Fault-free metric and (with ``sweeps``) every sweep of ``config`` for one trained model.

    Args:
      model, config, split, method: the trained model, its config, its data and its method.
      sweeps: True for every sweep of the config, False for none, or the names of some.
      progress: show a progress bar per sweep.
      reuse_fault_free: level 0 of every sweep is the fault-free metric on every chip, without
        simulating it again (False: simulate it, as a check; the values agree to float rounding).
      cache: where finished levels (and the fault-free metric) are kept as they complete and
        read back instead of being computed again (an interrupted sweep resumes); None: none.
      check_finite: check every simulated output for NaN/Inf and name the sweep and level
        where one appears; None: the ``INVNORM_CHECK_FINITE`` environment variable decides.

    Every level of a sweep reuses one compiled chip simulator (the level is traced), and chip
    ``i`` is the same chip at every level. The fault-free metric is one chip at a zero-level
    fault with the same MC sample keys as every chip, so a zero-level fault, which is no fault,
    reproduces it on every chip: a sweep's level 0 costs nothing. The fault-free run is a sweep's
    fault at level 0 (:func:`healthy_fault`), so it compiles nothing of its own.
    """
    ev = config.eval
    deterministic = is_deterministic(config, method)
    num_samples = num_samples_of(config, method)
    common = dict(
        num_samples=num_samples,
        key=jax.random.key(eval_seed(config)),
        deterministic=deterministic,
        batch_size=ev.batch_size,
        chunk_size=ev.chunk_size,
        mask=(split.extras or {}).get(TEST_MASK),
        compile_for=program_faults(config),
    )
    common["check_finite"] = numerics.check_finite_enabled(check_finite)
    x, y, metric = split.x_test, split.y_test, config.metric
    base = cache_base(model, config, split, method) if cache is not None else None

    def cached(where: str, compute, **fields) -> np.ndarray:
        key = None if cache is None else cache.key(base, **fields)
        values = None if key is None else cache.get(key)
        if values is None:
            values = compute(where=f"{config.name}/{method}: {where}")
            if key is not None:
                cache.put(key, values)
        return values

    healthy = cached(
        "the fault-free run",
        lambda where: per_chip_metric(
            model, x, y, metric, fault=healthy_fault(config), num_chips=1, where=where, **common
        ),
        fault_free=True,
    )
    result = MethodResult(fault_free=float(healthy[0]), num_chips=int(ev.num_chips), num_samples=num_samples)
    for name, sweep in config.sweeps.items():
        if not (sweeps is True or (sweeps and name in sweeps)):
            continue
        rows = []
        for level in tqdm(sweep.levels, desc=f"{config.name}/{method}/{name}", disable=not progress, leave=False):
            raise_if_stopped()  # a worker thread of run_task: the main thread was interrupted
            if float(level) == 0.0 and reuse_fault_free:  # no fault: every chip is the fault-free run
                per_chip = np.full(int(ev.num_chips), healthy[0])
            else:
                fault = fault_from_spec(sweep)
                per_chip = cached(
                    f"sweep {name!r} at level {float(level):g}",
                    lambda where, level=float(level), fault=fault: per_chip_metric(
                        model,
                        x,
                        y,
                        metric,
                        fault=fault,
                        level=level,
                        num_chips=int(ev.num_chips),
                        where=where,
                        **common,
                    ),
                    fault={**dataclasses.asdict(fault), "level": float(level)},
                )
            rows.append(
                Level(
                    level=float(level), mean=float(per_chip.mean()), std=float(per_chip.std()), chips=per_chip.tolist()
                )
            )
        result.sweeps[name] = rows
    return result
