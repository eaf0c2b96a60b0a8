"""One experiment = one config: train every method once, then sweep faults and study OOD with it.

In detail: docs/pipeline.md (`invnorm_jax.pipeline.experiment`).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import os
import pathlib
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
from flax import nnx

from invnorm_jax.checkpoint import clear_stop, request_stop
from invnorm_jax.data import AUGMENTATIONS
from invnorm_jax.data.common import Split
from invnorm_jax.errors import ArgumentError, ConfigError
from invnorm_jax.metrics import TASK_METRICS
from invnorm_jax.models import build_model
from invnorm_jax.pipeline import config as config_lib
from invnorm_jax.pipeline.datasets import get_dataset
from invnorm_jax.pipeline.evaluation import LevelCache, evaluate_method, num_samples_of
from invnorm_jax.pipeline.ood_eval import method_ood, ood_result
from invnorm_jax.pipeline.results import SweepInfo, TaskResult, pool_seeds
from invnorm_jax.pipeline.schedule import forward_flops, job_flops, longest_first
from invnorm_jax.train import Checkpointer, TrainConfig, train

log = logging.getLogger(__name__)


def load_data(config) -> Split:
    """The config's dataset, with the test set cut to ``eval.max_test`` inputs."""
    split = get_dataset(config.dataset.name, config.dataset.kwargs.to_dict())
    limit = config.eval.max_test
    if limit is not None:
        split = dataclasses.replace(split, x_test=split.x_test[:limit], y_test=split.y_test[:limit])
    return split


def make_model(config, method: str) -> nnx.Module:
    """The config's model for ``method``, initialized from the config's seed."""
    kwargs = config.model.kwargs.to_dict()
    kwargs.setdefault("rate", config.rate)
    kwargs.setdefault("dropout_site", config.dropout_site)
    return build_model(config.model.name, method, rngs=nnx.Rngs(config.seed), **kwargs)


def train_config(config) -> TrainConfig:
    """The :class:`~invnorm_jax.train.TrainConfig` of ``config``: its recipe, loss and seed."""
    return TrainConfig(loss=TASK_METRICS[config.metric].loss, seed=config.seed, **config.train.to_dict())


def train_method(config, method: str, split: Split, workdir, *, progress: bool = True) -> nnx.Module:
    """Train (or resume, or just load) ``method``'s model; checkpoints and config in ``workdir``."""
    config_lib.check_same_training(config, workdir)
    if not (pathlib.Path(workdir) / "config.json").is_file():  # the config it was trained with, kept
        config_lib.save(config, workdir)
    model = make_model(config, method)
    train(
        model,
        split.x_train,
        split.y_train,
        train_config(config),
        workdir=workdir,
        augment=AUGMENTATIONS[config.augment],
        progress=progress,
        description=f"{config.name}/{method}",
    )
    return model


def load_trained(config, method: str, workdir) -> nnx.Module:
    """``method``'s model with the weights of its last checkpoint in ``workdir``."""
    config_lib.check_same_training(config, workdir)
    model = make_model(config, method)
    ckpt = Checkpointer(workdir)
    try:
        ckpt.restore(model)
    finally:
        ckpt.close()
    return model


def with_seed(config, seed: int):
    """A copy of ``config`` whose training seed (initialization, data order, dropout draws) is ``seed``.

    The chips and MC-sample keys come from ``eval.seed``, not from ``seed``: chip ``i`` is the
    same chip for every training seed.
    """
    config = config.copy_and_resolve_references()
    config.seed = int(seed)
    return config


def seed_workdir(workdir, method: str, seed_index: int) -> pathlib.Path:
    """Where training seed number ``seed_index`` of ``method`` lives: ``workdir/method`` for the first
    (so a one-seed run's checkpoints serve a several-seed run), ``workdir/seed<i>/method`` for the others."""
    workdir = pathlib.Path(workdir)
    return workdir / method if seed_index == 0 else workdir / f"seed{seed_index}" / method


def check_seeds(seeds) -> int:
    """``seeds`` as a positive int (how many training seeds a run trains and evaluates)."""
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ArgumentError(
            f"seeds={seeds!r}: expected a positive integer, the number of training seeds "
            "(1: one model per method; the study uses 3)."
        )
    return seeds


def check_methods(config, methods: Sequence[str] | None) -> tuple[str, ...]:
    """``methods`` (default: the config's), each one the config knows."""
    methods = tuple(methods or config.methods)
    unknown = [m for m in methods if m not in config.methods]
    if unknown:
        raise ConfigError(
            f"methods {unknown} are not among the methods of config {config.name!r}, "
            f"{tuple(config.methods)}: pick from those or set --config.methods."
        )
    return methods


def _sweep_info(spec) -> SweepInfo:
    """A config's sweep entry as recorded in ``results.json``; a drift sweep with its resolved parameters."""
    drift = None
    if spec.kind == "drift":
        from invnorm_jax.faults import drift as drift_lib

        params = spec.get("drift")
        params = params.to_dict() if hasattr(params, "to_dict") else params
        drift = dataclasses.asdict(drift_lib.drift_model(params) or drift_lib.PCM)
    return SweepInfo(kind=spec.kind, site=spec.site, per_inference=spec.per_inference, drift=drift)


def naive_of(config, split: Split) -> dict[str, float] | None:
    """The RMSE of the trivial forecasts on ``split``'s test windows for a forecast task, else None."""
    if config.metric != "rmse":
        return None
    from invnorm_jax.data import naive_forecasts

    return naive_forecasts(split)


def task_result(config) -> TaskResult:
    """An empty :class:`TaskResult` of ``config``: metric, direction, sweeps, the config itself."""
    return TaskResult(
        metric=config.metric,
        higher_is_better=TASK_METRICS[config.metric].higher_is_better,
        sweeps={n: _sweep_info(s) for n, s in config.sweeps.items()},
        config=config_lib.to_dict(config),
    )


def method_workers(num_methods: int) -> int:
    """How many methods :func:`run_task` trains and evaluates side by side.

    ``INVNORM_WORKERS`` if set; else on a CPU 2 (when the machine has 2 cores or more), so that
    one method's XLA compilation, which uses one core, overlaps another's training or sweeps;
    else 1 (an accelerator's chip steps size their chunks to its free memory, one at a time).
    The results do not depend on it: each method has its own keys and models.

    Raises:
      ArgumentError: ``INVNORM_WORKERS`` not a positive integer.
    """
    text = os.environ.get("INVNORM_WORKERS", "").strip()
    if text:
        if not text.isdigit() or int(text) < 1:
            raise ArgumentError(f"INVNORM_WORKERS={text!r} must be a positive integer (1: one method at a time).")
        workers = int(text)
    else:
        workers = 2 if jax.default_backend() == "cpu" and (os.cpu_count() or 1) >= 2 else 1
    return max(1, min(workers, num_methods))


def in_workers(fn, items: Sequence, workers: int) -> list:
    """``[fn(item) for item in items]``, ``workers`` at a time in threads (in order of ``items``).

    A Ctrl-C in the main thread or an error in one call stops the others at their next training
    step or sweep level (:func:`invnorm_jax.checkpoint.request_stop`: each saves its checkpoint
    and raises ``KeyboardInterrupt``), cancels the calls not yet started, waits for the running
    ones, and raises.
    """
    items = list(items)
    workers = max(1, min(int(workers), len(items)))
    if workers == 1:
        return [fn(item) for item in items]
    clear_stop()  # a stop left by an earlier run (a second Ctrl-C while its workers were stopping)
    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="invnorm-method") as pool:
        futures = [pool.submit(fn, item) for item in items]
        try:
            # The first error stops the others at once, whichever call raised it.
            done, _ = concurrent.futures.wait(futures, return_when=concurrent.futures.FIRST_EXCEPTION)
            for future in done:
                future.result()  # raises a failed call's error
            return [future.result() for future in futures]
        except BaseException:  # Ctrl-C here, or an error of one call: stop the others, checkpoints saved
            request_stop()
            for future in futures:
                future.cancel()
            concurrent.futures.wait(futures)
            clear_stop()
            raise


def run_task(
    config,
    workdir,
    *,
    methods: Sequence[str] | None = None,
    train_models: bool = True,
    sweeps: bool | Sequence[str] = True,
    ood: bool = True,
    progress: bool = True,
    resume_sweeps: bool = True,
    workers: int | None = None,
    seeds: int = 1,
) -> TaskResult:
    """Train (or load) each method once, evaluate it, and run the OOD study on the same models.

    Args:
      config: a resolved config (:func:`invnorm_jax.pipeline.config.load_config`).
      workdir: the task's folder; method ``m`` lives in ``workdir/m``.
      methods: a subset of the config's methods (default all).
      train_models: train (resuming where a run stopped); False only loads checkpoints.
      sweeps: run the config's fault sweeps (False: the fault-free metric only; or some names).
      ood: run the OOD study when the config has one (``ood.shifts`` not empty): each method's
        part right after its sweeps, in its worker (:func:`~invnorm_jax.pipeline.ood_eval.method_ood`).
      progress: progress bars.
      resume_sweeps: keep each finished sweep level in ``workdir/<method>/sweep_levels`` and
        reuse the ones a previous (interrupted) run of the same model and evaluation finished.
      workers: methods run side by side in threads (default :func:`method_workers`). A Ctrl-C
        or an error in one stops the others at their next training step or sweep level, each
        with its checkpoint saved.
      seeds: training seeds per method (``config.seed``, ``config.seed + 1``, ...), each trained
        and swept on the same chips (:func:`with_seed`, :func:`seed_workdir`); the results pool
        them (:func:`invnorm_jax.pipeline.results.pool_seeds`). The OOD study uses the first seed's models.
    """
    return run_tasks(
        {config.name: config},
        {config.name: workdir},
        methods=methods,
        train_models=train_models,
        sweeps=sweeps,
        ood=ood,
        progress=progress,
        resume_sweeps=resume_sweeps,
        workers=workers,
        seeds=seeds,
    )[config.name]


def run_tasks(
    configs: Mapping[str, Any],
    workdirs: Mapping[str, Any],
    *,
    methods: Sequence[str] | None = None,
    train_models: bool = True,
    sweeps: bool | Sequence[str] = True,
    ood: bool = True,
    progress: bool = True,
    resume_sweeps: bool = True,
    workers: int | None = None,
    seeds: int = 1,
) -> dict[str, TaskResult]:
    """:func:`run_task` for several tasks at once, every method of every task in one pool of workers.

    ``configs`` and ``workdirs`` map a task's name to its config and its folder; the other
    arguments are :func:`run_task`'s, for every task. Each (task, method) pair is one job. With
    more than one worker the jobs start longest first by an estimate of their FLOPs
    (:mod:`invnorm_jax.pipeline.schedule`), so that no core idles while a task's last method finishes
    alone. The results are those of :func:`run_task` on each task: the order changes only when
    a job runs, and every method has its own keys. Returns ``{task: TaskResult}`` in the order
    of ``configs``. With ``seeds`` > 1 each (task, method, seed) is one job.
    """
    seeds = check_seeds(seeds)
    tasks = {}
    for name, config in configs.items():
        task_methods = check_methods(config, methods)
        result = task_result(config)
        if sweeps is not True:
            result.sweeps = {n: s for n, s in result.sweeps.items() if sweeps and n in sweeps}
        split = load_data(config)
        result.seeds = [int(config.seed) + s for s in range(seeds)]
        result.naive = naive_of(config, split)
        tasks[name] = (config, split, task_methods, result)
    jobs = [
        (name, method, s)
        for name, (_, _, task_methods, _) in tasks.items()
        for method in task_methods
        for s in range(seeds)
    ]

    def with_ood(config) -> bool:
        return bool(ood and config.ood.shifts)

    def run_job(job):
        name, method, s = job
        config, split, _, _ = tasks[name]
        config = with_seed(config, config.seed + s) if s else config
        wd = seed_workdir(workdirs[name], method, s)
        start = time.perf_counter()
        if train_models:
            model = train_method(config, method, split, wd, progress=progress)
        else:
            model = load_trained(config, method, wd)
        trained = time.perf_counter()
        cache = LevelCache(wd / "sweep_levels") if resume_sweeps else None
        entry = evaluate_method(model, config, split, method, sweeps=sweeps, progress=progress, cache=cache)
        evaluated = time.perf_counter()
        entry.seconds = {"train": round(trained - start, 1), "evaluate": round(evaluated - trained, 1)}
        log.info("%s/%s (seed %d): fault-free %s = %.4f", name, method, config.seed, config.metric, entry.fault_free)
        # The method's OOD study right away, on the same model: it overlaps the other methods' work.
        shifts = (
            method_ood(config, model, split, method, num_samples=num_samples_of(config, method))
            if with_ood(config) and s == 0
            else None
        )
        return entry, shifts, time.perf_counter() - evaluated

    workers = method_workers(len(jobs)) if workers is None else int(workers)
    if workers > 1:
        jobs = longest_first(jobs, _job_lengths(tasks))
    done = dict(zip(jobs, in_workers(run_job, jobs, workers)))
    results = {}
    for name, (config, split, task_methods, result) in tasks.items():
        per_method = {m: done[name, m, 0] for m in task_methods}
        for method in task_methods:
            result.methods[method] = pool_seeds([done[name, method, s][0] for s in range(seeds)])
        if with_ood(config):
            result.ood = ood_result(
                config,
                split,
                {m: shifts for m, (_, shifts, _) in per_method.items()},
                {m: num_samples_of(config, m) for m in task_methods},
                seconds=sum(s for _, _, s in per_method.values()),
            )
        results[name] = result
    return results


def _job_lengths(tasks: dict):
    """``(task, method) -> estimated FLOPs`` of :func:`run_tasks`' jobs (one trace of each task's
    model; none for a single task, whose jobs share the factor)."""

    def per_example_flops(config, split, method) -> float:
        if len(tasks) == 1:
            return 1.0
        try:
            return forward_flops(nnx.eval_shape(lambda: make_model(config, method)), split.x_test)
        except Exception as err:  # the order is only an optimization: a model it cannot trace runs as listed
            log.debug("%s: no FLOP estimate (%s); its jobs are ordered by their examples alone", config.name, err)
            return 1.0

    per_example = {
        name: per_example_flops(config, split, methods[0]) for name, (config, split, methods, _) in tasks.items()
    }

    def length(job):
        name, method = job[:2]
        config, split, _, _ = tasks[name]
        return job_flops(config, method, per_example=per_example[name], num_test=len(split.x_test))

    return length
