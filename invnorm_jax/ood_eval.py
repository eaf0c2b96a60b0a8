"""Uncertainty under distribution shift, on a healthy model and on faulty chips (the paper's Fig. 7).

For every registered shift of the config (:data:`invnorm_jax.ood.SHIFTS`) and every stage of
it, each trained method is evaluated on the shifted test set: accuracy, mean NLL, predictive
entropy, mutual information and ECE of the MC-averaged prediction; the **detection rate**, the
share of shifted inputs whose NLL exceeds a threshold set on the unshifted test set (its mean
NLL by default, as in the paper, or a quantile); and the AUROC of unshifted vs shifted inputs
scored by NLL and by entropy. The same is done on ``num_chips`` simulated chips carrying the
config's ``ood.fault`` (beyond the paper), metrics per chip, then mean and std over chips.

Config entry (every key optional but ``shifts``)::

    ood=dict(shifts=("rotation", "uniform_noise"),         # names in ood.SHIFTS
             stages={"rotation": (0, 14, 28)},              # override a shift's default stages
             fault=dict(kind="bit_flip", site="weights", level=0.1),  # None: healthy only
             num_chips=10,                                  # chips of the faulty run
             threshold="mean", q=0.95,                      # or "quantile" (the q-quantile)
             calibration="chip",                            # faulty threshold: each chip's own
                                                            # unshifted NLL, or "healthy"
             domain="raw")                                  # shift de-standardized inputs
                                                            # (if the split has mean/std), or "model"

``ood.json`` schema (``run_ood``'s return value)::

    {"task": "digits", "metric": "accuracy", "threshold": "mean", "q": null,
     "calibration": "chip", "domain": "raw", "num_test": 360,
     "fault": {"kind": "bit_flip", "site": "weights", "level": 0.1, "num_chips": 10} | null,
     "num_samples": {METHOD: T},                     # 1 for the deterministic NN
     "shifts": {SHIFT: {"stages": [0.0, 7.0, ...],
                        "methods": {METHOD: {
                            "healthy": [{"stage": 0.0, "accuracy": .., "nll": .., "entropy": ..,
                                         "mutual_information": .., "ece": .., "detection_rate": ..,
                                         "auroc_nll": .., "auroc_entropy": .., "nll_threshold": ..}],
                            "faulty": [{...the same keys, means over chips, and "<key>_std"
                                        for each, the std over chips}]}}}},   # absent if no fault
     "seconds": 41.2}

Accuracy, detection rate and ECE are shares in [0, 1]; NLL, entropy and mutual information in
nats; ``nll_threshold`` is the NLL threshold used (mean over chips for the faulty rows). At a
stage that leaves the inputs unchanged (stage 0), ``detection_rate`` is the false-alarm rate on
in-distribution data and both AUROCs are 0.5.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
import time
import zlib

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from invnorm_jax import experiment, metrics, ood, report
from invnorm_jax.faults import Fault, simulate_chips

OOD_DEFAULTS = dict(stages=None, fault=None, num_chips=10, threshold="mean", q=0.95, calibration="chip", domain="raw")
ROW_KEYS = ("accuracy", "nll", "entropy", "mutual_information", "ece", "detection_rate", "auroc_nll",
            "auroc_entropy", "nll_threshold")

# ------------------------------------------------------------------------------ metrics


@dataclasses.dataclass(frozen=True)
class Scores:
    """One chip's MC-averaged prediction on one set of inputs: summaries and per-input scores."""

    accuracy: float
    ece: float
    nll: np.ndarray  # [N], per input
    entropy: np.ndarray  # [N]
    mutual_information: np.ndarray  # [N]


@functools.partial(jax.jit, static_argnames="from_logits")
def _score_blocks(outputs, labels, from_logits: bool = True):
    """Scores of ``[chips, T, blocks, N, K]`` outputs against ``labels`` ``[N]``, in one compiled call.

    Returns ``(accuracy, ece)`` of shape ``[chips, blocks]`` and ``(nll, entropy, mi)`` of shape
    ``[chips, blocks, N]``.
    """
    probs = jax.nn.softmax(outputs, axis=-1) if from_logits else outputs
    mean = metrics.mc_average(probs, axis=1)
    y = jnp.broadcast_to(labels, mean.shape[:-1])
    entropy = metrics.predictive_entropy(mean)
    mi = entropy - jnp.mean(metrics.predictive_entropy(probs), axis=1)
    per_block = jax.vmap(jax.vmap(lambda p, t: (metrics.accuracy(p, t), metrics.ece(p, t))))
    acc, ece = per_block(mean, y)
    return acc, ece, metrics.per_input_nll(mean, y), entropy, mi


def _block_scores(outputs, labels, num_blocks: int, *, from_logits: bool = True) -> list[list[Scores]]:
    """``[chip][block]`` :class:`Scores` of ``[chips, T, num_blocks * N, K]`` outputs."""
    c, t, mn, k = outputs.shape
    shaped = jnp.reshape(jnp.asarray(outputs, jnp.float32), (c, t, num_blocks, mn // num_blocks, k))
    acc, ece, nll, entropy, mi = (np.asarray(a) for a in _score_blocks(shaped, jnp.asarray(labels), from_logits))
    return [[Scores(float(acc[i, b]), float(ece[i, b]), nll[i, b], entropy[i, b], mi[i, b]) for b in range(num_blocks)]
            for i in range(c)]


def scores(probs_samples, labels) -> Scores:
    """:class:`Scores` of per-sample probabilities ``[T, N, K]`` against ``labels`` ``[N]``."""
    return _block_scores(jnp.asarray(probs_samples)[None], labels, 1, from_logits=False)[0][0]


def threshold_value(nll_in, threshold: str = "mean", q: float = 0.95) -> float:
    """The NLL threshold from in-distribution per-input NLLs (:func:`invnorm_jax.ood.nll_threshold`)."""
    return ood.nll_threshold(nll_in, threshold, q=q)


def stage_row(ref: Scores, shifted: Scores, tau: float) -> dict:
    """Every metric of one stage: ``shifted`` inputs, ``ref`` the unshifted ones, NLL threshold ``tau``.

    .. math:: \\mathrm{DR} = \\frac1N\\sum_i [\\mathrm{NLL}_i > \\tau], \\qquad
              \\mathrm{AUROC} = P(s_\\text{shifted} > s_\\text{ref}) + \\tfrac12 P(s_\\text{shifted} = s_\\text{ref})
    """
    return {
        "accuracy": shifted.accuracy,
        "nll": float(np.mean(shifted.nll, dtype=np.float64)),
        "entropy": float(np.mean(shifted.entropy, dtype=np.float64)),
        "mutual_information": float(np.mean(shifted.mutual_information, dtype=np.float64)),
        "ece": shifted.ece,
        "detection_rate": ood.detection_rate(shifted.nll, tau),
        "auroc_nll": ood.auroc(ref.nll, shifted.nll),
        "auroc_entropy": ood.auroc(ref.entropy, shifted.entropy),
        "nll_threshold": float(tau),
    }


def shift_metrics(probs_in, probs_out, labels_in, labels_out, *, threshold: str = "mean", q: float = 0.95) -> dict:
    """One stage's metrics from per-sample probabilities ``[T, N, K]`` of unshifted and shifted inputs.

    >>> p_in = np.array([[[0.9, 0.1], [0.8, 0.2]]])            # T=1, 2 inputs
    >>> p_out = np.array([[[0.5, 0.5], [0.95, 0.05], [0.1, 0.9]]])
    >>> row = shift_metrics(p_in, p_out, [0, 0], [0, 0, 0])
    >>> round(row["detection_rate"], 4), round(row["auroc_nll"], 4)
    (0.6667, 0.6667)
    """
    ref, out = scores(probs_in, labels_in), scores(probs_out, labels_out)
    return stage_row(ref, out, threshold_value(ref.nll, threshold, q))


def _summarize(per_chip: list[dict]) -> dict:
    """Mean over chips of every key, and ``<key>_std`` (population std) for the faulty rows."""
    row = {}
    for k in ROW_KEYS:
        v = np.array([r[k] for r in per_chip], np.float64)
        row[k], row[f"{k}_std"] = float(v.mean()), float(v.std())
    return row


# ------------------------------------------------------------------------------ inputs


def ood_settings(config: dict, **overrides) -> dict:
    """The config's ``ood`` entry with defaults filled in and ``overrides`` (not None) applied."""
    if "ood" not in config:
        raise ValueError(f"config {config.get('name', '?')!r} has no 'ood' entry: add e.g. "
                         "ood=dict(shifts=('rotation', 'uniform_noise')) to its get_config().")
    if config.get("metric") != "accuracy":
        raise ValueError(f"OOD detection needs a classifier; config {config.get('name', '?')!r} has "
                         f"metric={config.get('metric')!r} (expected 'accuracy').")
    unknown = set(config["ood"]) - set(OOD_DEFAULTS) - {"shifts"}
    if unknown or "shifts" not in config["ood"]:
        raise ValueError(f"config {config.get('name', '?')!r}: the 'ood' entry needs 'shifts' and knows "
                         f"{sorted(OOD_DEFAULTS)}; got {sorted(config['ood'])}.")
    s = {**OOD_DEFAULTS, **config["ood"], **{k: v for k, v in overrides.items() if v is not None}}
    for name in s["shifts"]:
        if name not in ood.SHIFTS:
            raise ValueError(f"shift {name!r} is unknown; registered: {sorted(ood.SHIFTS)} "
                             "(add one with invnorm_jax.ood.register_shift).")
    if s["calibration"] not in ("chip", "healthy"):
        raise ValueError(f"calibration={s['calibration']!r} is unknown; expected 'chip' or 'healthy'.")
    if s["domain"] not in ("raw", "model"):
        raise ValueError(f"domain={s['domain']!r} is unknown; expected 'raw' or 'model'.")
    ood.nll_threshold([0.0], s["threshold"], q=s["q"])  # validates kind and q
    return s


def shift_stages(settings: dict) -> dict[str, tuple[float, ...]]:
    """``{shift: stages}``: the registry's default stages unless the settings override them."""
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
                raise ValueError(f"shift {name!r} at stage {level} changed the input shape {x.shape} to {y.shape}.")
            if np.array_equal(y, raw):
                blocks[name].append(0)
                continue
            parts.append(y if mean is None else ((y - np.float32(mean)) / np.float32(std)).astype(x.dtype))
            blocks[name].append(len(parts) - 1)
    return np.concatenate(parts), blocks


# ------------------------------------------------------------------------------ evaluation


def _rows(chip_scores, blocks, stages, taus) -> dict[str, list[list[dict]]]:
    """``{shift: [stage][chip] row}`` with chip ``c``'s threshold ``taus[c]``."""
    return {
        name: [[dict(stage=float(level), **stage_row(cs[0], cs[b], taus[c])) for c, cs in enumerate(chip_scores)]
               for level, b in zip(stages[name], blocks[name])]
        for name in stages
    }


def evaluate_shifts(model, x, y, stages: dict, *, num_samples: int, key, deterministic: bool = False,
                    fault: Fault | None = None, num_chips: int = 10, threshold: str = "mean", q: float = 0.95,
                    calibration: str = "chip", mean=None, std=None, batch_size=None) -> dict:
    """OOD metrics of one model at every stage of ``stages``, healthy and (with ``fault``) on faulty chips.

    Two :func:`~invnorm_jax.faults.simulate_chips` calls (two compilations): the healthy model
    (``Fault("additive", 0.0)``, one chip) and ``num_chips`` chips carrying ``fault``, each on
    every stage of every shift at once (:func:`shifted_inputs`).

    Returns:
      ``{shift: {"healthy": [row per stage], "faulty": [row per stage]}}`` (rows as in the
      module docstring; ``"faulty"`` only with a fault).
    """
    x_all, blocks = shifted_inputs(x, stages, key=jax.random.fold_in(key, 1), mean=mean, std=std)
    num_blocks = len(x_all) // len(x)
    common = dict(num_samples=num_samples, key=key, deterministic=deterministic, batch_size=batch_size)

    out = simulate_chips(model, x_all, fault=Fault("additive", 0.0), num_chips=1, **common)
    healthy = _block_scores(out, y, num_blocks)
    tau_healthy = threshold_value(healthy[0][0].nll, threshold, q)
    rows = _rows(healthy, blocks, stages, [tau_healthy])
    result = {name: {"healthy": [r[0] for r in rows[name]]} for name in stages}
    if fault is None:
        return result

    out = simulate_chips(model, x_all, fault=fault, num_chips=int(num_chips), **common)
    faulty = _block_scores(out, y, num_blocks)
    del out
    taus = [tau_healthy if calibration == "healthy" else threshold_value(cs[0].nll, threshold, q) for cs in faulty]
    rows = _rows(faulty, blocks, stages, taus)
    for name in stages:
        result[name]["faulty"] = [{"stage": r[0]["stage"], **_summarize(r)} for r in rows[name]]
    return result


def _fault_of(spec) -> Fault | None:
    if spec is None:
        return None
    return Fault(spec["kind"], float(spec["level"]), site=spec.get("site", "weights"),
                 per_inference=spec.get("per_inference", False))


def run_ood(config: dict, workdir, *, methods=None, samples=None, chips=None, out_dir, progress=True,
            threshold=None, q=None, calibration=None) -> dict:
    """Load each method's model from ``workdir/<method>``, evaluate every shift, write ``ood.json`` and ``ood.png``.

    Args:
      config: an experiment config (:func:`invnorm_jax.experiment.load_config`) with an ``ood`` entry.
      workdir: the run folder holding ``<method>/checkpoints``.
      methods: subset of the config's methods (default all).
      samples: MC samples T (default the config's ``eval.num_samples``; the NN always uses 1).
      chips: chips of the faulty run (default the config's ``ood.num_chips``, 10).
      out_dir: where ``ood.json`` and ``ood.png`` go (created).
      progress: a progress bar over methods.
      threshold, q, calibration: override the config's ``ood`` settings.

    Returns:
      The results dict of the module docstring.
    """
    start = time.time()
    s = ood_settings(config, num_chips=chips, threshold=threshold, q=q, calibration=calibration)
    split = experiment.load_data(config)
    stages = shift_stages(s)
    fault = _fault_of(s["fault"])
    raw = s["domain"] == "raw" and split.mean is not None and split.std is not None
    ev = config["eval"]
    results = {
        "task": config["name"], "metric": config["metric"], "threshold": s["threshold"],
        "q": s["q"] if s["threshold"] == "quantile" else None, "calibration": s["calibration"],
        "domain": "raw" if raw else "model", "num_test": int(len(split.x_test)),
        "fault": None if fault is None else {"kind": fault.kind, "site": fault.site, "level": fault.level,
                                             "num_chips": int(s["num_chips"])},
        "num_samples": {},
        "shifts": {name: {"stages": list(levels), "methods": {}} for name, levels in stages.items()},
    }
    for method in tqdm(methods or config["methods"], desc=f"{config['name']}/ood", disable=not progress, leave=False):
        model = experiment.load_trained(config, method, pathlib.Path(workdir) / method)
        deterministic = experiment._is_deterministic(method)
        num_samples = 1 if deterministic else int(samples or ev["num_samples"])
        per_shift = evaluate_shifts(
            model, split.x_test, split.y_test, stages, num_samples=num_samples, key=jax.random.key(config["seed"] + 1),
            deterministic=deterministic, fault=fault, num_chips=int(s["num_chips"]), threshold=s["threshold"],
            q=s["q"], calibration=s["calibration"], mean=split.mean if raw else None, std=split.std if raw else None,
            batch_size=ev.get("batch_size"),
        )
        results["num_samples"][method] = num_samples
        for name, entry in per_shift.items():
            results["shifts"][name]["methods"][method] = entry
    results["seconds"] = round(time.time() - start, 1)
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report.write_json(results, out / "ood.json")
    plot(results, out / "ood.png")
    return results


# ------------------------------------------------------------------------------ report


def _label(method: str) -> str:
    return report.METHOD_LABELS.get(method, method)


def _stage(shift: str, stage: float) -> str:
    return f"{stage:g}°" if shift == "rotation" else f"{stage:g}"


def _threshold_text(results: dict) -> str:
    if results["threshold"] == "quantile":
        rule = f"the {results['q']:g}-quantile of the per-input NLL on the unshifted test set"
    else:
        rule = "the mean NLL on the unshifted test set (as in the paper)"
    return rule


def _stage_table(results: dict, shift: str, kind: str) -> str:
    """Rows: stages; columns: methods; cells: accuracy % / NLL / detection rate %."""
    entry = results["shifts"][shift]
    methods = [m for m in entry["methods"] if kind in entry["methods"][m]]
    lines = ["| stage | " + " | ".join(_label(m) for m in methods) + " |", "|---|" + "---|" * len(methods)]
    for i, stage in enumerate(entry["stages"]):
        cells = []
        for m in methods:
            r = entry["methods"][m][kind][i]
            cells.append(f"{100 * r['accuracy']:.1f} / {r['nll']:.3f} / {100 * r['detection_rate']:.1f}")
        lines.append(f"| {_stage(shift, stage)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _pm(row: dict, key: str, scale: float = 1.0, digits: int = 2) -> str:
    text = f"{scale * row[key]:.{digits}f}"
    return text + (f" ± {scale * row[key + '_std']:.{digits}f}" if key + "_std" in row else "")


def _largest_stage_table(results: dict) -> str:
    """Per shift and method: detection rate and AUROCs at the largest stage, healthy and faulty."""
    faulty = results.get("fault") is not None
    head = ["shift (largest stage)", "method", "detection % healthy"] + (["detection % faulty"] if faulty else [])
    head += ["AUROC NLL healthy"] + (["AUROC NLL faulty"] if faulty else []) + ["AUROC entropy healthy"]
    head += ["AUROC entropy faulty"] if faulty else []
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---|" * (len(head) - 1)]
    for shift, entry in results["shifts"].items():
        where = f"{shift} ({_stage(shift, entry['stages'][-1])})"
        for m, rows in entry["methods"].items():
            h, f = rows["healthy"][-1], rows.get("faulty", [None])[-1]
            cells = [where, _label(m), _pm(h, "detection_rate", 100, 1)]
            cells += [_pm(f, "detection_rate", 100, 1)] if faulty else []
            cells += [_pm(h, "auroc_nll", digits=3)] + ([_pm(f, "auroc_nll", digits=3)] if faulty else [])
            cells += [_pm(h, "auroc_entropy", digits=3)] + ([_pm(f, "auroc_entropy", digits=3)] if faulty else [])
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown(results: dict) -> str:
    """The results as a Markdown section: stage tables per shift, then the largest-stage summary."""
    fault = results.get("fault")
    samples = ", ".join(f"{_label(m)} T={t}" for m, t in results["num_samples"].items())
    lines = ["## Out-of-distribution detection", "",
             f"Task `{results['task']}`, {results['num_test']} test inputs per stage ({samples}). An input is "
             f"detected as shifted when its NLL exceeds {_threshold_text(results)}; the detection rate is the "
             "share of shifted inputs detected (at stage 0 it is the false-alarm rate). AUROC: unshifted vs "
             "shifted inputs, scored by NLL or predictive entropy."]
    if fault:
        calib = "each chip's own unshifted NLL" if results["calibration"] == "chip" else "the healthy model's NLL"
        lines += ["", f"Faulty: `{fault['kind']}` at `{fault['site']}`, level {fault['level']:g}, over "
                      f"{fault['num_chips']} simulated chips (mean ± std over chips; threshold from {calib})."]
    lines += ["", "![OOD](ood.png)", ""]
    for shift in results["shifts"]:
        for kind in ("healthy", "faulty") if fault else ("healthy",):
            title = "healthy" if kind == "healthy" else f"faulty chips, mean over {fault['num_chips']}"
            lines += [f"### {shift.replace('_', ' ')}, {title}: accuracy % / NLL / detection rate %", "",
                      _stage_table(results, shift, kind), ""]
    lines += ["### At the largest stage", "", _largest_stage_table(results), ""]
    return "\n".join(lines)


def plot(results: dict, path) -> None:
    """Fig.-7 style: accuracy, NLL and detection rate against stage; healthy solid, faulty dashed."""
    plt = report.plt
    shifts = list(results["shifts"])
    panels = (("accuracy", "accuracy %", 100), ("nll", "NLL (nats)", 1), ("detection_rate", "detection rate %", 100))
    fig, axes = plt.subplots(len(panels), len(shifts), figsize=(4.4 * len(shifts), 2.8 * len(panels)), squeeze=False)
    for col, shift in enumerate(shifts):
        entry = results["shifts"][shift]
        for row, (key, unit, scale) in enumerate(panels):
            ax = axes[row][col]
            for m, rows in entry["methods"].items():
                color = report.METHOD_COLORS.get(m)
                for kind, style in (("healthy", "o-"), ("faulty", "s--")):
                    if kind not in rows:
                        continue
                    label = _label(m) + ("" if kind == "healthy" else " (faulty)")
                    ax.plot(entry["stages"], [scale * r[key] for r in rows[kind]], style, ms=3, color=color,
                            label=label, alpha=1.0 if kind == "healthy" else 0.8)
            ax.set_xlabel("rotation (degrees)" if shift == "rotation" else f"{shift.replace('_', ' ')} strength")
            ax.set_ylabel(unit)
            ax.grid(alpha=0.3)
            if row == 0:
                ax.set_title(f"{results['task']}: {shift.replace('_', ' ')}", fontsize=10)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
