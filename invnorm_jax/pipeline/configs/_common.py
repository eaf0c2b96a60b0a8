"""The skeleton every experiment config fills in: every key, with its default.

A config file starts from :func:`base` and sets what its experiment needs, so every config
has the same keys (generic code never checks which experiment it runs) and an override of
any key is possible from the command line. ``docs/configs.md`` explains each field.
"""

from __future__ import annotations

from ml_collections import ConfigDict

from invnorm_jax.errors import ArgumentError
from invnorm_jax.nn import PAPER_METHODS

#: The binary ResNet's site options, spelled out so that ablations can override them:
#: affine-dropout draws, gamma/beta init std, where pre-activation variation goes.
RESNET_SITE = dict(mode="vector", init_std=0.3, preactivation_site="normalized")


def check_variant(variant: str) -> str:
    if variant not in ("full", "quick", "smoke"):
        raise ArgumentError(f"variant={variant!r}: expected 'full', 'quick' or 'smoke'.")
    return variant


def sweep(kind: str, levels, *, site: str = "weights", per_inference: bool = False, drift=None) -> ConfigDict:
    """One fault sweep: ``kind`` at ``site`` for every level of ``levels`` (the first should be 0).

    A ``drift`` sweep also has the key ``drift``: its parameters, None for the PCM defaults or a
    dict of a ``preset`` (``"pcm"``, ``"rram"``) and fields of
    :class:`invnorm_jax.faults.drift.DriftModel`, e.g. ``dict(preset="rram", compensate=True)``.
    """
    entry = dict(kind=kind, site=site, levels=tuple(float(v) for v in levels), per_inference=per_inference)
    if kind == "drift":
        entry["drift"] = None if drift is None else ConfigDict(dict(drift))
    elif drift is not None:
        raise ArgumentError(f"sweep(kind={kind!r}, drift=...): drift parameters apply to kind='drift' only.")
    return ConfigDict(entry)


def base(name: str, variant: str) -> ConfigDict:
    """Every key of an experiment config with its default value."""
    check_variant(variant)
    c = ConfigDict()
    c.name = name
    c.dataset = ConfigDict(dict(name="", kwargs=ConfigDict()))  # invnorm_jax.data.get_dataset
    c.model = ConfigDict(dict(name="", kwargs=ConfigDict()))  # invnorm_jax.models.build_model
    c.metric = "accuracy"  # invnorm_jax.metrics.TASK_METRICS
    c.methods = PAPER_METHODS
    c.rate = 0.3  # affine-dropout / MC-dropout rate
    # Where the baselines' MC dropout sits (docs/models.md): "crossbar" (each binary / quantized
    # layer's input, as SpinDrop's modules) or "norm" (after every normalization).
    c.dropout_site = "crossbar"
    c.augment = "none"  # invnorm_jax.data.AUGMENTATIONS
    c.train = ConfigDict(
        dict(
            steps=1000,
            batch_size=64,
            learning_rate=1e-3,
            optimizer="adam",
            schedule="cosine",
            warmup_steps=0,
            weight_decay=0.0,
            checkpoint_every=500,
            log_every=50,
        )
    )
    # deterministic=True evaluates every method with its sampler off (T = 1): an ablation.
    # seed: the root of the chips' and MC samples' keys, the same for every training seed (chip i is
    # the same chip whatever the model).
    c.eval = ConfigDict(
        dict(
            num_chips=100, num_samples=10, max_test=None, batch_size=None, chunk_size=None, deterministic=False, seed=1
        )
    )
    c.sweeps = ConfigDict()
    # Out-of-distribution study (Fig. 7); no shifts: none. fault=None: healthy model only.
    c.ood = ConfigDict(
        dict(
            shifts=(),
            stages=ConfigDict(),
            fault=None,
            num_chips=10,
            threshold="mean",
            q=0.95,
            calibration="chip",
            domain="raw",
        )
    )
    c.seed = 0
    return c


def ood_fault(kind: str, level: float, site: str = "weights") -> ConfigDict:
    return ConfigDict(dict(kind=kind, site=site, level=float(level)))


#: Seconds since programming of a drift sweep: none, a minute, an hour, a day, a month, a year, ten years.
DRIFT_TIMES = (0.0, 60.0, 3600.0, 86400.0, 2.6e6, 3.15e7, 3.15e8)


def drift_sweep(variant: str = "full", **drift) -> ConfigDict:
    """A conductance-drift sweep (``docs/faults.md``, "Drift") over log-spaced times, in seconds.

    ``drift``: the sweep's drift parameters (``preset=``, fields of ``DriftModel``); none: PCM.
    """
    times = {"full": DRIFT_TIMES, "quick": (0.0, 86400.0, 3.15e8), "smoke": (0.0, 3.15e8)}[check_variant(variant)]
    return sweep("drift", times, drift=drift or None)


def drift_only(task: ConfigDict, variant: str = "full") -> ConfigDict:
    """``task`` renamed ``<name>_drift``, with two drift sweeps (PCM defaults, without and with
    global drift compensation) instead of its sweeps and no OOD study; its training fields stay
    the task's, so it evaluates the task's checkpoints."""
    task.name = f"{task.name}_drift"
    task.sweeps = ConfigDict(
        {"drift": drift_sweep(variant), "drift_compensated": drift_sweep(variant, compensate=True)}
    )
    task.ood.shifts = ()
    return task
