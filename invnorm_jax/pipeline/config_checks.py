"""The checks behind :func:`invnorm_jax.pipeline.config.validate`: every stage's needs, before anything runs.

A config is checked against the code that will use it: the registries (datasets, models,
metrics, methods, augmentations, OOD shifts), the training recipe, every sweep's fault, and
the arguments of the dataset loader and the model constructor that ``dataset.kwargs`` and
``model.kwargs`` are passed to. Each error names the key and how to fix it; none reads data.
"""

from __future__ import annotations

import inspect

import ml_collections

from invnorm_jax.errors import ConfigError, did_you_mean
from invnorm_jax.nn.dropout import DROPOUT_SITES

#: The groups whose keys are the keyword arguments of a function, open to new keys.
#: The keys every config has (docs/configs.md describes each).
REQUIRED = (
    "name",
    "dataset",
    "model",
    "metric",
    "methods",
    "rate",
    "dropout_site",
    "augment",
    "train",
    "eval",
    "sweeps",
    "ood",
    "seed",
)
KWARGS_GROUPS = ("dataset.kwargs", "model.kwargs")


def kwargs_parameters(config: ml_collections.ConfigDict, group: str) -> tuple[str, ...] | None:
    """The arguments the function fed by ``group`` (:data:`KWARGS_GROUPS`) accepts; None: any."""
    from invnorm_jax.data import DATASETS
    from invnorm_jax.models import MODELS
    from invnorm_jax.pipeline.datasets import dataset_parameters

    if group == "dataset.kwargs" and config.dataset.name in DATASETS:
        return dataset_parameters(config.dataset.name, config.dataset.kwargs.to_dict())
    if group == "model.kwargs" and config.model.name in MODELS:
        params = inspect.signature(MODELS[config.model.name].__init__).parameters.values()
        if any(p.kind is p.VAR_KEYWORD for p in params):
            return None
        return tuple(p.name for p in params if p.kind is p.KEYWORD_ONLY and p.name != "rngs")
    return None


def _check_kwargs(config: ml_collections.ConfigDict) -> None:
    """Every key of ``dataset.kwargs`` / ``model.kwargs`` names an argument of its function."""
    for group in KWARGS_GROUPS:
        allowed = kwargs_parameters(config, group)
        if allowed is None:
            continue
        node = config[group.split(".")[0]].kwargs
        for key in node.keys():
            if key not in allowed and not (group == "dataset.kwargs" and key == "synthetic"):
                hint = did_you_mean(key, allowed)
                owner = config[group.split(".")[0]].name
                raise ConfigError(
                    f"config {config.get('name', '?')!r}: {group}.{key}: {owner!r} takes no argument "
                    f"{key!r}{hint}; its arguments: {', '.join(allowed)}."
                )


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Check every stage's needs before anything runs; errors name the key and the fix."""
    from invnorm_jax import ood as ood_lib
    from invnorm_jax.data import AUGMENTATIONS, DATASETS
    from invnorm_jax.faults import Fault
    from invnorm_jax.faults.spec import fault_from_spec
    from invnorm_jax.metrics import TASK_METRICS
    from invnorm_jax.models import MODELS
    from invnorm_jax.nn import METHODS
    from invnorm_jax.train import TrainConfig

    name = config.get("name", "?")
    missing = [k for k in REQUIRED if k not in config]
    if missing:
        raise ConfigError(f"config {name!r} lacks the keys {missing}; every config needs {list(REQUIRED)}.")

    def choice(value, key, allowed):
        if value not in allowed:
            hint = did_you_mean(value, allowed)
            raise ConfigError(f"config {name!r}: {key}={value!r} is unknown{hint}; expected one of {tuple(allowed)}.")

    choice(config.metric, "metric", tuple(TASK_METRICS))
    choice(config.dataset.name, "dataset.name", tuple(DATASETS))
    choice(config.model.name, "model.name", tuple(MODELS))
    choice(config.augment, "augment", tuple(AUGMENTATIONS))
    _check_kwargs(config)
    if not config.methods:
        raise ConfigError(f"config {name!r}: methods is empty; give at least one of {METHODS}.")
    for method in config.methods:
        choice(method, "methods", METHODS)
    if not 0.0 <= float(config.rate) < 1.0:
        raise ConfigError(f"config {name!r}: rate={config.rate!r} must be in [0, 1).")
    choice(config.dropout_site, "dropout_site", DROPOUT_SITES)
    try:
        TrainConfig(**config.train.to_dict())
    except (TypeError, ValueError) as err:
        raise ConfigError(f"config {name!r}: train: {err}") from None
    ev = config.eval
    if isinstance(ev.get("seed"), bool) or not isinstance(ev.get("seed", 1), int):
        raise ConfigError(f"config {name!r}: eval.seed={ev.get('seed')!r} must be an integer (the chips' key root).")
    for key in ("num_chips", "num_samples"):
        if not isinstance(ev[key], int) or ev[key] < 1:
            raise ConfigError(f"config {name!r}: eval.{key}={ev[key]!r} must be an integer >= 1.")
    for key in ("max_test", "batch_size", "chunk_size"):
        if ev.get(key) is not None and (not isinstance(ev[key], int) or ev[key] < 1):
            raise ConfigError(f"config {name!r}: eval.{key}={ev[key]!r} must be an integer >= 1 or None.")
    for sweep_name, sweep in config.sweeps.items():
        levels = list(sweep.levels)
        if not levels:
            raise ConfigError(f"config {name!r}: sweeps.{sweep_name}.levels is empty.")
        bad = [v for v in levels if isinstance(v, bool) or not isinstance(v, (int, float))]
        if bad:
            raise ConfigError(
                f"config {name!r}: sweeps.{sweep_name}.levels holds {bad[0]!r}: expected numbers, "
                f"e.g. --config.sweeps.{sweep_name}.levels=0,0.1,0.2."
            )
        try:  # fault_from_spec: every key of the sweep (site, per_inference, drift parameters) is checked
            fault_from_spec(sweep, max(levels)), fault_from_spec(sweep, min(levels))
        except (TypeError, ValueError) as err:
            raise ConfigError(f"config {name!r}: sweeps.{sweep_name}: {err}") from None
    if config.ood.shifts:
        if not TASK_METRICS[config.metric].classification:
            raise ConfigError(
                f"config {name!r}: OOD detection needs a classifier, and metric={config.metric!r} is "
                "a regression metric; set --config.ood.shifts=() to run without it."
            )
        for shift in config.ood.shifts:
            choice(shift, "ood.shifts", tuple(ood_lib.SHIFTS))
        choice(config.ood.calibration, "ood.calibration", ("chip", "healthy"))
        choice(config.ood.domain, "ood.domain", ("raw", "model"))
        try:
            ood_lib.nll_threshold([0.0], config.ood.threshold, q=config.ood.q)
            if config.ood.fault is not None:
                Fault(config.ood.fault.kind, config.ood.fault.level, site=config.ood.fault.site)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"config {name!r}: ood: {err}") from None
