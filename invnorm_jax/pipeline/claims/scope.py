"""What a task's claims are measured on: the reading of its baselines' dropout, and a forecast's
bar of naive forecasts (:mod:`invnorm_jax.pipeline.claims.measure` uses both; docs/claims.md gives the rules)."""

from __future__ import annotations

import dataclasses

from invnorm_jax.nn.dropout import DROPOUT_SITES
from invnorm_jax.pipeline.results import Results, TaskResult

NN, DROPOUT_METHODS, PROPOSED = "nn", ("spindrop", "spatial_spindrop"), "proposed"
BASELINES = (NN,) + DROPOUT_METHODS
#: Where the baselines put their dropout (``config.dropout_site``): each reading is reported on its own.
READINGS = {
    "crossbar": "the baselines' dropout on the crossbar inputs",
    "norm": "the baselines' dropout after every normalization",
}
DEFAULT_READING = DROPOUT_SITES[0]
#: A forecaster is in the claims only if its fault-free RMSE is below this share of the best naive RMSE.
NAIVE_MARGIN = 0.9


def task_reading(t: TaskResult) -> str:
    """Where ``t``'s baselines put their dropout: its config's ``dropout_site``; a config written
    before that key existed is ``"norm"`` (dropout after every normalization, the only placement
    then); no config at all, :data:`DEFAULT_READING`.

    >>> task_reading(TaskResult("accuracy", True, {})), task_reading(TaskResult("accuracy", True, {}, config={
    ...     "dropout_site": "norm"})), task_reading(TaskResult("accuracy", True, {}, config={"name": "digits"}))
    ('crossbar', 'norm', 'norm')
    """
    if t.config and "dropout_site" not in t.config:
        return "norm"
    return str(t.config.get("dropout_site") or DEFAULT_READING)


def readings(results: Results) -> list[str]:
    """The readings of ``results``' tasks, the default first (only the default for a run without tasks).

    >>> readings(Results())
    ['crossbar']
    """
    found = {task_reading(t) for t in results.tasks.values()} or {DEFAULT_READING}
    return sorted(found, key=lambda r: (r != DEFAULT_READING, r))


@dataclasses.dataclass(frozen=True)
class NaiveBar:
    """A forecast's bar: the best naive forecast (``name``, ``rmse``) and the ``flagged`` methods
    (method -> fault-free RMSE) whose fault-free RMSE is not below ``NAIVE_MARGIN * rmse``.

    >>> print(NaiveBar("persistence", 0.04, {"nn": 0.05}).reason("nn"))
    not measured: nn does not beat persistence/seasonal-naive (fault-free RMSE 0.05, not below 0.9 x 0.04)
    """

    name: str
    rmse: float
    flagged: dict[str, float]

    def reason(self, method: str) -> str:
        """Why ``method`` (flagged) is kept out of the claims."""
        return (
            f"not measured: {method} does not beat persistence/seasonal-naive (fault-free RMSE "
            f"{self.flagged[method]:.4g}, not below {NAIVE_MARGIN:g} x {self.rmse:.4g})"
        )

    def blocking(self, t: TaskResult) -> str | None:
        """Why no claim can be measured on ``t`` (the proposed method or every baseline flagged), or None."""
        base = [m for m in BASELINES if m in t.methods]
        if PROPOSED in self.flagged:
            return self.reason(PROPOSED)
        if base and all(m in self.flagged for m in base):
            return "; ".join(self.reason(m) for m in base)
        return None


def naive_bar(t: TaskResult) -> NaiveBar | None:
    """The naive-forecast bar of a forecast with stored naive RMSEs (None for any other task).

    >>> from invnorm_jax.pipeline.results import MethodResult
    >>> t = TaskResult("rmse", False, {}, {m: MethodResult(v, 1, 1) for m, v in [("nn", 0.04), ("proposed", 0.03)]},
    ...                naive={"persistence": 0.04, "seasonal_naive": 0.2})
    >>> bar = naive_bar(t)
    >>> bar.name, bar.rmse, list(bar.flagged), bar.blocking(t) is None
    ('persistence', 0.04, ['nn'], False)
    """
    if not t.naive or t.metric != "rmse":
        return None
    name = min(t.naive, key=t.naive.get)
    rmse = float(t.naive[name])
    flagged = {m: float(r.fault_free) for m, r in t.methods.items() if not r.fault_free < NAIVE_MARGIN * rmse}
    return NaiveBar(name, rmse, flagged)
