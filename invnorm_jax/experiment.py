"""One experiment = one config: train every method, then sweep faults over simulated chips.

A config file (big_vision style) defines ``get_config(variant="full")`` returning a dict:

.. code-block:: python

    dict(
        name="digits",
        dataset=dict(name="digits", kwargs={}),         # invnorm_jax.data.get_dataset
        model=dict(name="digits", kwargs={}),           # invnorm_jax.models.build_model
        metric="accuracy",                              # or "rmse", "miou"
        methods=("nn", "spindrop", "spatial_spindrop", "proposed"),
        rate=0.3,
        train=dict(steps=..., batch_size=..., learning_rate=...),   # TrainConfig
        eval=dict(num_chips=100, num_samples=10, max_test=None, batch_size=None),
        sweeps={"bit_flip": dict(kind="bit_flip", site="weights", levels=[0, 0.05, ...])},
        seed=0,
    )

Variants are ``"full"`` (paper or demo size), ``"quick"`` (the demo's ``--quick``) and
``"smoke"`` (a few steps on CPU).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from invnorm_jax import metrics
from invnorm_jax.data import get_dataset
from invnorm_jax.data.common import Split
from invnorm_jax.faults import Fault, simulate_chips
from invnorm_jax.models import build_model
from invnorm_jax.nn import METHODS
from invnorm_jax.train import Checkpointer, TrainConfig, train

CONFIG_DIR = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "configs"
VARIANTS = ("full", "quick", "smoke")
#: metric -> (training loss, higher is better)
METRICS = {"accuracy": ("xent", True), "rmse": ("mse", False), "miou": ("seg_xent", True)}


def resolve_config_path(spec: str) -> pathlib.Path:
    """A config file path, or the name of one under ``experiments/configs``."""
    path = pathlib.Path(spec)
    if path.suffix == ".py" and path.exists():
        return path
    named = CONFIG_DIR / f"{spec}.py"
    if named.exists():
        return named
    known = sorted(p.stem for p in CONFIG_DIR.glob("*.py") if not p.stem.startswith("_")) if CONFIG_DIR.exists() else []
    raise FileNotFoundError(
        f"config {spec!r} not found: give a path to a .py file with get_config(), or one of {known} "
        f"(from {CONFIG_DIR})."
    )


def load_config(spec: str, variant: str = "full") -> dict[str, Any]:
    """Import a config file and call its ``get_config(variant)``."""
    if variant not in VARIANTS:
        raise ValueError(f"variant={variant!r} is unknown; expected one of {VARIANTS}.")
    path = resolve_config_path(spec)
    module_spec = importlib.util.spec_from_file_location(f"invnorm_config_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ValueError(f"{path} has no get_config(variant) function.")
    config = dict(module.get_config(variant))
    config.setdefault("name", path.stem)
    config["config_path"] = str(path)
    config["variant"] = variant
    return validate_config(config)


def validate_config(config: dict) -> dict:
    """Check the keys every stage needs, with errors that name the key."""
    for key in ("dataset", "model", "metric", "train", "eval", "sweeps"):
        if key not in config:
            raise ValueError(f"config {config.get('name', '?')!r} lacks the key {key!r}.")
    if config["metric"] not in METRICS:
        raise ValueError(f"metric={config['metric']!r} is unknown; expected one of {tuple(METRICS)}.")
    config.setdefault("methods", METHODS)
    for method in config["methods"]:
        if method not in METHODS:
            raise ValueError(f"method={method!r} is unknown; expected one of {METHODS}.")
    for name, sweep in config["sweeps"].items():
        Fault(sweep["kind"], max(sweep["levels"]), site=sweep.get("site", "weights"))  # validates
    config.setdefault("rate", 0.3)
    config.setdefault("seed", 0)
    return config


def load_data(config: dict) -> Split:
    """The config's dataset, with the test set cut to ``eval.max_test`` inputs."""
    split = get_dataset(config["dataset"]["name"], **config["dataset"].get("kwargs", {}))
    limit = config["eval"].get("max_test")
    if limit is not None:
        split = dataclasses.replace(split, x_test=split.x_test[:limit], y_test=split.y_test[:limit])
    return split


def make_model(config: dict, method: str) -> nnx.Module:
    """The config's model for ``method``, initialized from the config's seed."""
    kwargs = dict(config["model"].get("kwargs", {}))
    kwargs.setdefault("rate", config["rate"])
    return build_model(config["model"]["name"], method, rngs=nnx.Rngs(config["seed"]), **kwargs)


def train_method(config: dict, method: str, split: Split, workdir, *, progress=True) -> nnx.Module:
    """Train (or resume, or just load) ``method``'s model; checkpoints in ``workdir``."""
    model = make_model(config, method)
    loss = METRICS[config["metric"]][0]
    tc = TrainConfig(**{"loss": loss, "seed": config["seed"], **config["train"]})
    augment = None
    if config.get("augment") == "cifar":
        from invnorm_jax.data import random_crop_flip

        augment = random_crop_flip
    train(model, split.x_train, split.y_train, tc, workdir=workdir, augment=augment, progress=progress,
          description=f"{config['name']}/{method}")
    return model


def load_trained(config: dict, method: str, workdir) -> nnx.Module:
    """``method``'s model with the weights of its last checkpoint in ``workdir``."""
    model = make_model(config, method)
    ckpt = Checkpointer(workdir)
    try:
        ckpt.restore(model)
    finally:
        ckpt.close()
    return model


def chip_metric(outputs: jax.Array, labels, metric: str, mask=None) -> jax.Array:
    """The metric of each chip's MC-averaged prediction: ``[chips]`` from ``[chips, T, batch, ...]``."""
    labels = jnp.asarray(labels)
    if metric == "rmse":
        fn = metrics.rmse
        values = outputs
    else:
        values = jax.nn.softmax(outputs, axis=-1)
        if metric == "accuracy":
            fn = metrics.accuracy
        else:
            num_classes = outputs.shape[-1]
            fm = None if mask is None else jnp.asarray(mask)

            def fn(p, y):
                return metrics.miou(jnp.argmax(p, -1), y, num_classes, mask=fm)

    return metrics.per_chip_summary(values, labels, fn)["per_chip"]


def _is_deterministic(method: str) -> bool:
    return method == "nn"


def evaluate_method(model, config: dict, split: Split, method: str, *, chips=None, samples=None, progress=True) -> dict:
    """Fault-free metric and every sweep of ``config`` for one trained model."""
    ev = config["eval"]
    num_chips = int(chips or ev["num_chips"])
    deterministic = _is_deterministic(method)
    num_samples = 1 if deterministic else int(samples or ev["num_samples"])
    key = jax.random.key(config["seed"] + 1)
    mask = split.extras.get("test_fov") if split.extras else None
    common = dict(num_samples=num_samples, key=key, deterministic=deterministic, batch_size=ev.get("batch_size"))

    healthy = simulate_chips(model, split.x_test, fault=Fault("additive", 0.0), num_chips=1, **common)
    result = {"fault_free": float(chip_metric(healthy, split.y_test, config["metric"], mask)[0]), "sweeps": {}}
    for name, sweep in config["sweeps"].items():
        fault = Fault(sweep["kind"], 0.0, site=sweep.get("site", "weights"), per_inference=sweep.get("per_inference", False))
        rows = []
        for level in tqdm(sweep["levels"], desc=f"{config['name']}/{method}/{name}", disable=not progress, leave=False):
            out = simulate_chips(model, split.x_test, fault=fault, level=float(level), num_chips=num_chips, **common)
            per_chip = np.asarray(chip_metric(out, split.y_test, config["metric"], mask), np.float64)
            rows.append({"level": float(level), "mean": float(per_chip.mean()), "std": float(per_chip.std()),
                         "chips": per_chip.tolist()})
        result["sweeps"][name] = rows
    result["num_samples"] = num_samples
    result["num_chips"] = num_chips
    return result


def task_header(config: dict) -> dict:
    """The per-task part of ``results.json``: metric, direction, sweep descriptions."""
    return {
        "metric": config["metric"],
        "higher_is_better": METRICS[config["metric"]][1],
        "sweeps": {name: {"kind": s["kind"], "site": s.get("site", "weights")} for name, s in config["sweeps"].items()},
        "methods": {},
    }


def run_task(config: dict, workdir, *, methods=None, chips=None, samples=None, train_models=True,
             sweeps=True, progress=True) -> dict:
    """Train (or load) every method of ``config`` and evaluate it; the task's results entry.

    Each method's checkpoints live in ``workdir/<method>/checkpoints``; an interrupted run
    resumes there, and a finished one is only loaded.
    """
    split = load_data(config)
    entry = task_header(config)
    cfg = config if sweeps else {**config, "sweeps": {}}
    if not sweeps:
        entry["sweeps"] = {}
    for method in methods or config["methods"]:
        if method not in METHODS:
            raise ValueError(f"method={method!r} is unknown; expected one of {METHODS}.")
        wd = pathlib.Path(workdir) / method
        if train_models:
            model = train_method(config, method, split, wd, progress=progress)
        else:
            model = load_trained(config, method, wd)
        entry["methods"][method] = evaluate_method(model, cfg, split, method, chips=chips, samples=samples,
                                                   progress=progress)
    return entry
