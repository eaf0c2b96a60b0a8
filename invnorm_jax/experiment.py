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
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from invnorm_jax.data import get_dataset
from invnorm_jax.data.common import Split
from invnorm_jax.faults import Fault
from invnorm_jax.faults.simulate import iter_simulate_chips
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


def _chip_counts(outputs: jax.Array, labels, metric: str, mask=None) -> jax.Array:
    """Per-chip sufficient statistics of one slice: ``[chips, k]`` sums that add over slices."""
    labels = jnp.asarray(labels)
    if metric == "rmse":
        err = jnp.square(outputs.mean(axis=1) - labels.reshape(outputs.shape[2:]))
        per_chip = err.reshape(err.shape[0], -1)
        return jnp.stack([per_chip.sum(1), jnp.full(per_chip.shape[:1], per_chip.shape[1], per_chip.dtype)], 1)
    mean_probs = jax.nn.softmax(outputs, axis=-1).mean(axis=1)  # MC average of probabilities
    pred = jnp.argmax(mean_probs, axis=-1)
    if metric == "accuracy":
        correct = (pred == labels).reshape(pred.shape[0], -1).astype(jnp.float32)
        return jnp.stack([correct.sum(1), jnp.full(correct.shape[:1], correct.shape[1], jnp.float32)], 1)
    num_classes = outputs.shape[-1]
    valid = jnp.ones(labels.shape, bool) if mask is None else jnp.asarray(mask, bool)
    p = jax.nn.one_hot(pred, num_classes, dtype=bool) & valid[None, ..., None]
    t = jax.nn.one_hot(labels, num_classes, dtype=bool) & valid[..., None]
    axes = tuple(range(1, p.ndim - 1))
    inter = jnp.sum(p & t[None], axis=axes, dtype=jnp.float32)
    union = jnp.sum(p | t[None], axis=axes, dtype=jnp.float32)
    return jnp.concatenate([inter, union], axis=1)


def _finish(counts: np.ndarray, metric: str) -> np.ndarray:
    """The per-chip metric from summed statistics (mIoU: mean over classes present)."""
    if metric == "accuracy":
        return counts[:, 0] / counts[:, 1]
    if metric == "rmse":
        return np.sqrt(counts[:, 0] / counts[:, 1])
    inter, union = np.split(counts, 2, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nanmean(np.where(union > 0, inter / union, np.nan), axis=1)


def chip_metric(outputs: jax.Array, labels, metric: str, mask=None) -> np.ndarray:
    """The metric of each chip's MC-averaged prediction: ``[chips]`` from ``[chips, T, batch, ...]``."""
    return _finish(np.asarray(_chip_counts(outputs, labels, metric, mask), np.float64), metric)


def per_chip_metric(model, x, y, metric: str, *, mask=None, **simulate_kwargs) -> np.ndarray:
    """Simulate chips slice by slice and reduce each slice at once: ``[chips]`` metric values.

    Only one slice's outputs are ever held, so paper-size test sets (DRIVE's full images, all
    of CIFAR-10) fit however many chips and samples are simulated.
    """
    total = None
    step = simulate_kwargs.get("batch_size") or len(x)
    for start, out in iter_simulate_chips(model, x, **simulate_kwargs):
        sl = slice(start, start + step)
        counts = np.asarray(_chip_counts(out, y[sl], metric, None if mask is None else mask[sl]), np.float64)
        total = counts if total is None else total + counts
    return _finish(total, metric)


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
    common = dict(num_samples=num_samples, key=key, deterministic=deterministic, batch_size=ev.get("batch_size"),
                  chunk_size=ev.get("chunk_size"), mask=mask)
    x, y, metric = split.x_test, split.y_test, config["metric"]

    healthy = per_chip_metric(model, x, y, metric, fault=Fault("additive", 0.0), num_chips=1, **common)
    result = {"fault_free": float(healthy[0]), "sweeps": {}}
    for name, sweep in config["sweeps"].items():
        fault = Fault(sweep["kind"], 0.0, site=sweep.get("site", "weights"), per_inference=sweep.get("per_inference", False))
        rows = []
        for level in tqdm(sweep["levels"], desc=f"{config['name']}/{method}/{name}", disable=not progress, leave=False):
            per_chip = per_chip_metric(model, x, y, metric, fault=fault, level=float(level), num_chips=num_chips, **common)
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
        start = time.perf_counter()
        if train_models:
            model = train_method(config, method, split, wd, progress=progress)
        else:
            model = load_trained(config, method, wd)
        trained = time.perf_counter()
        result = evaluate_method(model, cfg, split, method, chips=chips, samples=samples, progress=progress)
        result["seconds"] = {"train": round(trained - start, 1), "evaluate": round(time.perf_counter() - trained, 1)}
        entry["methods"][method] = result
    return entry
