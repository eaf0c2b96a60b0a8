"""The typed, versioned schema of ``results.json``: written here, read here, by everything.

In detail: docs/pipeline.md (`invnorm_jax.pipeline.results`).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

from invnorm_jax.errors import ResultsError

SCHEMA_VERSION = 2
#: Keys of one OOD row (a stage of a shift, healthy or one faulty-chip summary).
OOD_ROW_KEYS = (
    "accuracy",
    "nll",
    "entropy",
    "mutual_information",
    "ece",
    "detection_rate",
    "auroc_nll",
    "auroc_entropy",
    "nll_threshold",
)


@dataclasses.dataclass
class Level:
    """One fault level of a sweep: the metric of every chip, their mean and std.

    ``seeds``: with several training seeds, every seed's per-chip values (``[seed][chip]``);
    ``chips`` is then the first seed's and ``mean`` / ``std`` pool them all.
    """

    level: float
    mean: float
    std: float
    chips: list[float]
    seeds: list[list[float]] | None = None

    def matrix(self):
        """The per-seed, per-chip values as a ``[seeds, chips]`` float64 array (one row: one seed).

        >>> Level(0.1, 0.5, 0.1, [0.4, 0.6]).matrix().shape, Level(0.1, 0.5, 0.1, [0.4, 0.6], [[0.4, 0.6]] * 3).matrix().shape
        ((1, 2), (3, 2))
        """
        import numpy as np

        return np.asarray(self.seeds if self.seeds else [self.chips], dtype=np.float64)


@dataclasses.dataclass
class SweepInfo:
    """What a sweep injects: the fault ``kind`` at ``site`` (``per_inference``: redrawn per input).

    ``drift``: a drift sweep's parameters (the fields of
    :class:`~invnorm_jax.faults.drift.DriftModel`), None for other kinds.
    """

    kind: str
    site: str
    per_inference: bool = False
    drift: dict | None = None


@dataclasses.dataclass
class MethodResult:
    """One trained method: its fault-free metric and every sweep over chips."""

    fault_free: float
    num_chips: int
    num_samples: int
    sweeps: dict[str, list[Level]] = dataclasses.field(default_factory=dict)
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    fault_free_seeds: list[float] | None = None  # every training seed's; fault_free is their mean


@dataclasses.dataclass
class OODShift:
    """One distribution shift: its stages and, per method, ``{"healthy"|"faulty": [row per stage]}``.

    A row maps each key of :data:`OOD_ROW_KEYS` (and ``"stage"``) to a float; faulty rows are
    means over chips and add ``<key>_std``, the std over chips.
    """

    stages: list[float]
    methods: dict[str, dict[str, list[dict[str, float]]]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class OODResult:
    """The out-of-distribution study of one task (the paper's Fig. 7); see :mod:`invnorm_jax.pipeline.ood_eval`."""

    threshold: str
    q: float | None
    calibration: str
    domain: str
    num_test: int
    fault: dict[str, Any] | None
    num_samples: dict[str, int]
    shifts: dict[str, OODShift]
    seconds: float = 0.0


@dataclasses.dataclass
class TaskResult:
    """Every method of one experiment config."""

    metric: str
    higher_is_better: bool
    sweeps: dict[str, SweepInfo]
    methods: dict[str, MethodResult] = dataclasses.field(default_factory=dict)
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    ood: OODResult | None = None
    seeds: list[int] = dataclasses.field(default_factory=lambda: [0])  # training seeds
    naive: dict[str, float] | None = None  # a forecast's trivial forecasts' RMSE on the test windows


@dataclasses.dataclass
class Results:
    """A whole run: tasks by name, and how it was run."""

    tasks: dict[str, TaskResult] = dataclasses.field(default_factory=dict)
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    version: int = SCHEMA_VERSION


def pool_seeds(entries: list[MethodResult]) -> MethodResult:
    """One method's results over several training seeds (same chips, same levels) as one entry.

    A level's ``seeds`` keeps every seed's chips, ``chips`` the first seed's, ``mean`` and ``std``
    pool every seed and chip; ``fault_free`` is the mean over seeds; ``seconds`` add up. One entry
    is returned as it is.

    >>> one = lambda v: MethodResult(v, 2, 1, {"bf": [Level(0.1, v, 0.0, [v, v])]}, {"train": 1.0})
    >>> pooled = pool_seeds([one(0.5), one(0.7)])
    >>> pooled.fault_free, pooled.fault_free_seeds, pooled.sweeps["bf"][0].seeds, pooled.seconds["train"]
    (0.6, [0.5, 0.7], [[0.5, 0.5], [0.7, 0.7]], 2.0)
    """
    import numpy as np

    if len(entries) == 1:
        return entries[0]
    first = entries[0]
    sweeps = {}
    for name, rows in first.sweeps.items():
        pooled = []
        for i, row in enumerate(rows):
            per_seed = [e.sweeps[name][i] for e in entries]
            if any(r.level != row.level for r in per_seed):
                raise ResultsError(f"sweep {name!r}: the seeds' levels differ ({[r.level for r in per_seed]}).")
            values = np.asarray([r.chips for r in per_seed], dtype=np.float64)
            pooled.append(
                Level(
                    level=row.level,
                    mean=float(values.mean()),
                    std=float(values.std()),
                    chips=list(row.chips),
                    seeds=values.tolist(),
                )
            )
        sweeps[name] = pooled
    seconds = {}
    for e in entries:
        for k, v in e.seconds.items():
            seconds[k] = round(seconds.get(k, 0.0) + v, 1)
    free = [float(e.fault_free) for e in entries]
    return MethodResult(
        fault_free=float(np.mean(free)),
        num_chips=first.num_chips,
        num_samples=first.num_samples,
        sweeps=sweeps,
        seconds=seconds,
        fault_free_seeds=free,
    )


def to_dict(results: Results) -> dict:
    """The JSON-ready dict of ``results`` (plain types only)."""
    return dataclasses.asdict(results)


def save(results: Results, path) -> pathlib.Path:
    """Write ``results`` as JSON to ``path`` (a file, or a folder that gets ``results.json``)."""
    path = pathlib.Path(path)
    if path.suffix != ".json":
        path = path / "results.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_dict(results), indent=1))
    return path


def _need(d: Any, key: str, where: str) -> Any:
    if not isinstance(d, dict) or key not in d:
        raise ResultsError(f"{where} lacks {key!r}: the file is damaged or not a results.json of invnorm-jax.")
    return d[key]


def _ood_from_dict(d: dict, where: str) -> OODResult:
    shifts = {}
    for name, s in _need(d, "shifts", where).items():
        methods = _need(s, "methods", f"{where}.shifts.{name}")
        for method, kinds in methods.items():
            for kind, rows in kinds.items():
                for row in rows:
                    missing = set(OOD_ROW_KEYS) - set(row)
                    if missing:
                        raise ResultsError(
                            f"{where}.shifts.{name}.methods.{method}.{kind}: a row lacks {sorted(missing)}."
                        )
        shifts[name] = OODShift(stages=[float(v) for v in _need(s, "stages", where)], methods=methods)
    fields = {f.name for f in dataclasses.fields(OODResult)} - {"shifts"}
    return OODResult(shifts=shifts, **{k: d[k] for k in fields if k in d})


def _task_from_dict(d: dict, where: str) -> TaskResult:
    methods = {}
    for method, m in _need(d, "methods", where).items():
        w = f"{where}.methods.{method}"
        sweeps = {
            name: [
                Level(
                    **{k: _need(r, k, f"{w}.sweeps.{name}") for k in ("level", "mean", "std", "chips")},
                    seeds=r.get("seeds"),
                )
                for r in rows
            ]
            for name, rows in _need(m, "sweeps", w).items()
        }
        methods[method] = MethodResult(
            fault_free=_need(m, "fault_free", w),
            num_chips=_need(m, "num_chips", w),
            num_samples=_need(m, "num_samples", w),
            sweeps=sweeps,
            seconds=m.get("seconds", {}),
            fault_free_seeds=m.get("fault_free_seeds"),
        )
    ood = d.get("ood")
    return TaskResult(
        metric=_need(d, "metric", where),
        higher_is_better=_need(d, "higher_is_better", where),
        sweeps={n: SweepInfo(**s) for n, s in _need(d, "sweeps", where).items()},
        methods=methods,
        config=d.get("config", {}),
        ood=None if ood is None else _ood_from_dict(ood, f"{where}.ood"),
        seeds=list(d.get("seeds", [0])),
        naive=d.get("naive"),
    )


def from_dict(d: dict, source: str = "results") -> Results:
    """Validate a parsed ``results.json`` and build :class:`Results`.

    Raises:
      ResultsError: another schema version (a file without a version is version 1, from
        invnorm-jax 0.1), or a missing field (named with its path).
    """
    version = d.get("version", 1) if isinstance(d, dict) else None
    if version != SCHEMA_VERSION:
        raise ResultsError(
            f"{source} has results schema version {version}, and this invnorm-jax reads version {SCHEMA_VERSION}: "
            "re-run the sweep (`invnorm-jax sweep --config ... --workdir ...` reuses the trained checkpoints) "
            "to write it anew."
        )
    tasks = {name: _task_from_dict(t, f"{source}: tasks.{name}") for name, t in _need(d, "tasks", source).items()}
    return Results(tasks=tasks, settings=d.get("settings", {}), version=version)


def load(path) -> Results:
    """Read and validate a ``results.json`` (a file, or a run folder holding one)."""
    path = pathlib.Path(path)
    if path.is_dir():
        path = path / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run `invnorm-jax sweep` (or `demo`) to write it.")
    try:
        d = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ResultsError(f"{path} is not valid JSON ({err}): the file is damaged; re-run the sweep.") from None
    return from_dict(d, str(path))
