"""The fair study of the paper's claims: every offline task, several training seeds, both readings
of where the baselines' dropout sits, one claims report (``invnorm-jax study``).

What it runs (docs/claims.md, "The study"):

* tasks :data:`STUDY_TASKS`: digits (4 binary convs), digits_deep (12), MNIST-1D (8-bit M5) and
  the CO2 forecast (8-bit LSTM), each with the same recipe, seeds and chips for every method;
* ``seeds`` training seeds per method (3 by default); chip ``i`` is the same chip for all;
* the baselines under both readings of :data:`READINGS`: dropout on the crossbar inputs (the
  default) and after every normalization. ``nn`` and ``proposed`` do not depend on the reading:
  they are trained once and appear in both readings' tasks (``digits`` and ``digits@norm``);
* every (task, reading, method, seed) job in one pool of workers, longest first.

>>> configs = study_configs("smoke")                                # doctest: +SKIP
>>> sorted(configs)[:2]                                             # doctest: +SKIP
['co2', 'co2@norm']
"""

from __future__ import annotations

import copy
import pathlib

from invnorm_jax.nn.dropout import DROPOUT_SITES
from invnorm_jax.pipeline import config as config_lib
from invnorm_jax.pipeline.results import TaskResult

STUDY_TASKS = ("digits", "digits_deep", "mnist1d", "co2")
#: The baselines' dropout placements, the default first (docs/models.md says why).
READINGS = DROPOUT_SITES
#: The methods whose model depends on the reading (the others are shared between readings).
READING_METHODS = ("spindrop", "spatial_spindrop")
#: Chips per fault level in the full study (the demo's 100 x 3 seeds would take over two hours
#: on a 2-core CPU): with 3 seeds, 60 (seed, chip) pairs per level; ``--chips`` changes it.
FULL_STUDY_CHIPS = 20
#: Tasks whose OOD study the study skips: the deeper digits network asks only whether the gain
#: under faults grows with depth; the OOD claims are measured on digits and MNIST-1D.
NO_OOD_TASKS = ("digits_deep",)


def reading_task(task: str, reading: str) -> str:
    """The name of ``task`` under ``reading`` in the study's results: the default reading keeps
    the task's name, another one adds ``@<reading>``.

    >>> reading_task("digits", "crossbar"), reading_task("digits", "norm")
    ('digits', 'digits@norm')
    """
    return task if reading == READINGS[0] else f"{task}@{reading}"


def study_configs(variant: str | None = None, overrides=(), tasks=STUDY_TASKS, methods=None) -> dict:
    """``{task name: config}`` of every task under every reading; every config is validated here,
    before anything runs.

    ``methods``: a subset of the methods (default all four). The other readings' configs hold
    only the methods that depend on the reading (:data:`READING_METHODS`).
    """
    configs = {}
    if variant in (None, "full"):
        overrides = (f"eval.num_chips={FULL_STUDY_CHIPS}", *overrides)  # a later --chips wins
    for task in tasks:
        for reading in READINGS:
            config = config_lib.load_config(task, variant, (*overrides, f"dropout_site={reading}"))
            wanted = tuple(m for m in config.methods if methods is None or m in methods)
            if reading != READINGS[0]:
                wanted = tuple(m for m in wanted if m in READING_METHODS)
            if not wanted:
                continue
            config.methods = wanted
            if task in NO_OOD_TASKS:
                config.ood.shifts = ()
            configs[reading_task(task, reading)] = config
    return configs


def share_readings(results: dict[str, TaskResult]) -> dict[str, TaskResult]:
    """Give every other reading's task the shared methods (and their OOD rows) of the default reading's."""
    for name, task in results.items():
        base_name, _, reading = name.partition("@")
        if not reading or base_name not in results:
            continue
        base = results[base_name]
        shared = {m: e for m, e in base.methods.items() if m not in task.methods}
        task.methods = {**shared, **task.methods}
        if base.ood is not None and task.ood is not None:
            for shift_name, shift in task.ood.shifts.items():
                theirs = base.ood.shifts[shift_name].methods
                shift.methods = {**{m: copy.deepcopy(v) for m, v in theirs.items() if m in shared}, **shift.methods}
            task.ood.num_samples = {
                **{m: base.ood.num_samples[m] for m in shared if m in base.ood.num_samples},
                **task.ood.num_samples,
            }
    return results


#: The pre-activation placement the paper's earlier runs used (after the baselines' affine and
#: dropout), re-measured on the same models so that the variation claims are reported under it too.
EARLIER_PLACEMENT = "norm_output"


def placement_configs(configs: dict, placement: str = EARLIER_PLACEMENT) -> dict:
    """The configs of ``configs`` with a pre-activation sweep, re-aimed at ``placement``: only those
    sweeps, no OOD study. The placement moves no weight (an evaluation-only key), so they
    evaluate the same checkpoints."""
    out = {}
    for name, config in configs.items():
        sweeps = {k: v for k, v in config.sweeps.items() if v.site == "preactivation"}
        if not sweeps or "preactivation_site" not in config.model.kwargs:
            continue
        config = config.copy_and_resolve_references()
        config.model.kwargs.preactivation_site = placement
        with config.unlocked():
            for k in [k for k in config.sweeps if k not in sweeps]:
                del config.sweeps[k]
        config.ood.shifts = ()
        out[name] = config
    return out


def study_workdirs(configs: dict, out) -> dict[str, pathlib.Path]:
    """Each task's folder: ``out/<task>`` (``out/digits@norm`` for the second reading)."""
    return {name: pathlib.Path(out) / name for name in configs}


def run_study(
    configs: dict, out, *, seeds: int = 3, progress: bool = True, ood: bool = True, train_models: bool = True
) -> dict[str, TaskResult]:
    """Run every config of :func:`study_configs` in one pool of workers; see :func:`study_workdirs`."""
    from invnorm_jax.pipeline.experiment import run_tasks

    results = run_tasks(
        configs, study_workdirs(configs, out), progress=progress, seeds=seeds, ood=ood, train_models=train_models
    )
    return share_readings(results)


def report_earlier_placement(configs: dict, out, *, seeds: int, progress: bool, settings: dict) -> pathlib.Path | None:
    """The study's pre-activation sweeps again at :data:`EARLIER_PLACEMENT`, on the trained models,
    reported (claims included) in ``out/preactivation_<placement>``; None when no task has one."""
    import logging

    from invnorm_jax.pipeline import report
    from invnorm_jax.pipeline.results import Results

    earlier = placement_configs(configs)
    if not earlier:
        return None
    logging.getLogger("invnorm_jax").info("== the pre-activation sweeps at preactivation_site=%r", EARLIER_PLACEMENT)
    placed = Results(tasks=run_study(earlier, out, seeds=seeds, progress=progress, ood=False, train_models=False))
    placed.settings = {**settings, "preactivation_site": EARLIER_PLACEMENT}
    return report.write_report(placed, pathlib.Path(out) / f"preactivation_{EARLIER_PLACEMENT}")
