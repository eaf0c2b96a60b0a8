"""Experiment configs: ``ml_collections.ConfigDict`` files with command-line overrides.

In detail: docs/pipeline.md (`invnorm_jax.pipeline.config`).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import pathlib
import traceback
from collections.abc import Sequence
from typing import Any

import ml_collections

from invnorm_jax.errors import ConfigError, did_you_mean

CONFIG_PACKAGE = "invnorm_jax.pipeline.configs"
CONFIG_DIR = pathlib.Path(__file__).resolve().parent / "configs"
VARIANTS = ("full", "quick", "smoke")
#: The fields a trained checkpoint depends on; the others (evaluation, sweeps, OOD) may change.
TRAINING_KEYS = ("dataset", "model", "rate", "dropout_site", "augment", "train", "seed")
#: Model options that only place fault sites (no parameters, no effect without a fault).
EVALUATION_MODEL_KEYS = ("model.kwargs.preactivation_site",)


def available_configs() -> list[str]:
    """Names of the experiment configs that ship with the library."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.py") if not p.stem.startswith("_"))


def _import_config_module(spec: str):
    path = pathlib.Path(spec)
    if path.suffix == ".py":
        if not path.is_file():
            raise ConfigError(
                f"config file {spec!r} does not exist: give a path to a .py file with get_config(), "
                f"or one of the shipped configs {available_configs()}."
            )
        module_spec = importlib.util.spec_from_file_location(f"invnorm_config_{path.stem}", path)
        module = importlib.util.module_from_spec(module_spec)
        try:
            module_spec.loader.exec_module(module)
        except SyntaxError as err:
            raise ConfigError(f"config file {path} has a syntax error on line {err.lineno}: {err.msg}.") from None
        except Exception as err:
            raise _file_error(path, "importing it", err) from err
        return module, str(path)
    if spec not in available_configs():
        raise ConfigError(
            f"config {spec!r} not found{did_you_mean(spec, available_configs())}: give a path to a "
            f".py file with get_config(), or one of {available_configs()}."
        )
    return importlib.import_module(f"{CONFIG_PACKAGE}.{spec}"), spec


def _file_error(path: pathlib.Path, doing: str, err: Exception) -> ConfigError:
    """A user's config file that raised: where (its line) and what, in one line."""
    lines = [
        f.lineno
        for f in traceback.extract_tb(err.__traceback__)
        if pathlib.Path(f.filename).resolve() == path.resolve()
    ]
    where = f" on line {lines[-1]}" if lines else ""
    return ConfigError(
        f"config file {path} raised {type(err).__name__}{where} while {doing}: {err} (--debug shows the traceback)."
    )


def split_spec(spec: str) -> tuple[str, str | None]:
    """``"digits:quick"`` -> ``("digits", "quick")``; ``"a/b.py"`` -> ``("a/b.py", None)``."""
    name, sep, variant = str(spec).rpartition(":")
    if sep and variant in VARIANTS:
        return name, variant
    if sep and not pathlib.Path(spec).exists():
        raise ConfigError(f"variant {variant!r} in --config {spec!r} is unknown; expected one of {VARIANTS}.")
    return str(spec), None


def load_config(spec: str, variant: str | None = None, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """The resolved, validated and locked config of ``spec`` (a shipped name or a file path).

    Args:
      spec: ``NAME``, ``PATH.py``, optionally followed by ``:VARIANT``.
      variant: the variant when ``spec`` names none (default ``"full"``); a variant in both
        places must agree.
      overrides: ``"KEY=VALUE"`` strings (the part after ``--config.``), applied in order.

    >>> config = load_config("digits:smoke", overrides=["eval.num_chips=7"])
    >>> config.eval.num_chips, config.variant
    (7, 'smoke')
    """
    name, spec_variant = split_spec(spec)
    if spec_variant and variant and spec_variant != variant:
        raise ConfigError(f"--config {spec!r} asks for variant {spec_variant!r} but {variant!r} was also given.")
    variant = spec_variant or variant or "full"
    if variant not in VARIANTS:
        raise ConfigError(f"variant={variant!r} is unknown; expected one of {VARIANTS}.")
    module, source = _import_config_module(name)
    if not callable(getattr(module, "get_config", None)):
        raise ConfigError(
            f"config {source} has no get_config(variant) function: define one that returns an "
            "ml_collections.ConfigDict (see invnorm_jax/pipeline/configs/digits.py)."
        )
    try:
        config = module.get_config(variant)
    except Exception as err:
        if source in available_configs():  # a shipped config that raises is a bug: keep the traceback
            raise
        raise _file_error(pathlib.Path(source), f"running get_config({variant!r})", err) from err
    if not isinstance(config, ml_collections.ConfigDict):
        config = ml_collections.ConfigDict(config)
    config.unlock()
    config.config_source = source
    config.variant = variant
    config.overrides = tuple(overrides)
    config.lock()
    for item in overrides:
        apply_override(config, item)
    validate(config)
    return config


def _flat_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    keys = []
    for k, v in config.items():
        keys.append(prefix + k)
        if isinstance(v, ml_collections.ConfigDict):
            keys += _flat_keys(v, prefix + k + ".")
    return keys


def _article(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def _literal(text: str) -> Any:
    """A Python literal (``7``, ``0.1``, ``(0, 0.1)``, ``None``), or else the text itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _parse_value(text: str, current: Any, key: str) -> Any:
    if isinstance(current, bool):
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise ConfigError(f"--config.{key}={text!r}: expected true or false.")
    value = _literal(text)
    if isinstance(current, (tuple, list)):
        if isinstance(value, str):
            value = [_literal(v.strip()) for v in value.split(",") if v.strip()]
        if not isinstance(value, (tuple, list)):
            value = [value]
        return type(current)(value)
    if current is None or isinstance(current, ml_collections.ConfigDict):
        return value
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, type(current)):
        raise ConfigError(
            f"--config.{key}={text!r}: expected {_article(type(current).__name__)} (the config has {current!r})."
        )
    return value


def _argument_keys(config: ml_collections.ConfigDict) -> list[str]:
    """``dataset.kwargs.ARG`` / ``model.kwargs.ARG`` for every argument of the loader and the model."""
    from invnorm_jax.pipeline.config_checks import KWARGS_GROUPS, kwargs_parameters

    return [f"{g}.{a}" for g in KWARGS_GROUPS for a in (kwargs_parameters(config, g) or ())]


def _open_key(config: ml_collections.ConfigDict, parts: list[str], i: int) -> bool:
    """Whether ``parts[i]`` may be added: an argument of the loader / model a ``*.kwargs`` group feeds."""
    from invnorm_jax.pipeline.config_checks import KWARGS_GROUPS, kwargs_parameters

    group = ".".join(parts[:i])
    if i != len(parts) - 1 or group not in KWARGS_GROUPS:
        return False
    allowed = kwargs_parameters(config, group)
    return allowed is None or parts[i] in allowed


def apply_override(config: ml_collections.ConfigDict, item: str) -> None:
    """Apply one ``"a.b.c=value"`` override to ``config`` in place (unknown keys refused).

    ``dataset.kwargs`` and ``model.kwargs`` also take the other arguments of the dataset loader
    and of the model (e.g. ``dataset.kwargs.root=/data/DRIVE``).
    """
    key, sep, text = item.partition("=")
    key = key.strip().removeprefix("--config.").removeprefix("config.")
    if not sep or not key:
        raise ConfigError(f"override {item!r} must look like --config.KEY=VALUE, e.g. --config.eval.num_chips=7.")
    node, parts = config, key.split(".")
    for i, part in enumerate(parts):
        if isinstance(node, ml_collections.ConfigDict) and part not in node and _open_key(config, parts, i):
            with node.unlocked():  # a new argument of the dataset loader / model, checked by validate()
                node[part] = _literal(text)
            return
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            valid = _flat_keys(config) + _argument_keys(config)
            hint = did_you_mean(key, valid, cutoff=0.5) or f"; valid keys: {sorted(valid)}"
            raise ConfigError(f"--config.{key}: the config {config.get('name', '?')!r} has no key {key!r}{hint}")
        if i == len(parts) - 1:
            current = node[part]
            value = _parse_value(text, current, key)
            if isinstance(current, ml_collections.ConfigDict) and not isinstance(value, dict):
                raise ConfigError(
                    f"--config.{key} is a group of keys; set one of its fields, e.g. "
                    f"--config.{key}.{next(iter(current.keys()), 'x')}=..."
                )
            try:
                node[part] = value
            except TypeError as err:
                raise ConfigError(f"--config.{key}={text!r}: {err}") from None
        node = node[part]


def validate(config: ml_collections.ConfigDict) -> None:
    """Check every stage's needs before anything runs; errors name the key and the fix.

    See :func:`invnorm_jax.pipeline.config_checks.validate_config`.
    """
    from invnorm_jax.pipeline.config_checks import validate_config

    validate_config(config)


def to_dict(config: ml_collections.ConfigDict) -> dict:
    """A JSON-ready plain dict (tuples become lists) of ``config``."""
    return json.loads(config.to_json())


def save(config: ml_collections.ConfigDict, path) -> pathlib.Path:
    """Write ``config`` as JSON to ``path`` (a file, or a folder that gets ``config.json``)."""
    path = pathlib.Path(path)
    if path.suffix != ".json":
        path = path / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_dict(config), indent=1))
    return path


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def training_differences(saved: dict, config: ml_collections.ConfigDict) -> list[str]:
    """``"key: saved -> now"`` for every training field where ``config`` differs from ``saved``."""
    now = to_dict(config)
    a = _flatten({k: saved.get(k) for k in TRAINING_KEYS})
    b = _flatten({k: now.get(k) for k in TRAINING_KEYS})
    keys = sorted((set(a) | set(b)) - set(EVALUATION_MODEL_KEYS))
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in keys if a.get(k) != b.get(k)]


def check_same_training(config: ml_collections.ConfigDict, workdir) -> None:
    """Refuse to evaluate checkpoints in ``workdir`` that were trained with another config.

    Raises:
      ConfigError: naming every differing key, when ``workdir/config.json`` exists and differs
        from ``config`` in a field of :data:`TRAINING_KEYS`.
    """
    path = pathlib.Path(workdir) / "config.json"
    if not path.is_file():
        return
    try:
        saved = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(
            f"{path} is not valid JSON ({err}); it was damaged: delete it to use the checkpoints "
            "with the config given now."
        ) from None
    diff = training_differences(saved, config)
    if diff:
        raise ConfigError(
            f"the checkpoints in {pathlib.Path(workdir)} were trained with a different config "
            f"({saved.get('config_source', '?')}, variant {saved.get('variant', '?')!r}); differing keys: "
            + "; ".join(diff)
            + ". Use the same config and overrides as for training, or another --workdir."
        )
