"""The paper's quantitative claims against a run's measurements: ``claims.md`` and ``claims.json``.

:func:`evaluate_claims` measures every claim of :data:`CLAIMS` on a
:class:`~invnorm_jax.pipeline.results.Results` (the statistics live in :mod:`invnorm_jax.pipeline.claims.measure`);
:func:`claims_markdown` and :func:`claims_json` render the rows; :func:`write_claims` writes both
files. docs/claims.md says how each claim is measured, the interval (training seeds and chips
resampled, both paired) and the verdict rules. Each reading of the baselines' dropout site in the
run (``config.dropout_site``: "crossbar", the default, or "norm") gets its own verdicts. A run
with the method ``noisy_training`` also gets a section comparing it with the proposed method
(:mod:`invnorm_jax.pipeline.claims.noisy`; not a paper claim); a run without it gets exactly the claims.

>>> rows = evaluate_claims(results)                                   # doctest: +SKIP
>>> md_path, json_path = write_claims(results, "runs/demo")           # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib

from invnorm_jax.errors import ResultsError
from invnorm_jax.pipeline.claims.bootstrap import CONFIDENCE
from invnorm_jax.pipeline.claims.measure import CLAIMS, FAULT_FREE_TOLERANCE, VERDICTS, Claim, ClaimRow, evaluate_claims
from invnorm_jax.pipeline.claims.noisy import (
    ComparisonRow,
    comparison_json,
    comparison_markdown,
    evaluate_noisy_training,
)
from invnorm_jax.pipeline.claims.scope import DEFAULT_READING, NAIVE_MARGIN, READINGS
from invnorm_jax.pipeline.results import Results

CLAIMS_VERSION = 2  # 2: rows carry their reading, seeds, chips and naive RMSE
_LABELS = {
    "nn": "NN",
    "spindrop": "SpinDrop",
    "spatial_spindrop": "Spatial-SpinDrop",
    "proposed": "Proposed",
    "dropout": "dropout BayNNs",
    "strongest": "strongest",
}
_BY_ID = {c.id: c for c in CLAIMS}
_PAIRS = ("interval", "interval_percentile")  # (low, high) tuples, lists in JSON


def _num(v: float | None, unit: str = "") -> str:
    if v is None or not math.isfinite(v):
        return "–"
    return f"{v:.2f}" + (f" {unit}" if unit else "")


def row_readings(rows: list[ClaimRow]) -> list[str]:
    """The readings of ``rows``, the default first.

    >>> row_readings([ClaimRow(7, None, None, None, 51.84, None, "%", reading="norm")])
    ['norm']
    """
    return sorted({r.reading for r in rows}, key=lambda r: (r != DEFAULT_READING, r))


def _of_reading(rows: list[ClaimRow], reading: str | None) -> list[ClaimRow]:
    """The rows of ``reading`` (None: the default reading, or the first one present)."""
    found = row_readings(rows)
    reading = reading if reading is not None else (found[0] if found else DEFAULT_READING)
    return [r for r in rows if r.reading == reading]


def claim_verdicts(rows: list[ClaimRow], reading: str | None = None) -> dict[int, str]:
    """Each claim's verdict from its headline rows under one reading (None: the default reading).

    An "up to" claim (1-9) takes the best verdict among its rows: the paper's "up to" spans its
    experiments, so one task and sweep that reaches it is enough. Claim 10 ("comparable", a
    statement about every Table-I row) holds when it holds on every task, holds in part when on
    some, and does not hold when on none.

    >>> claim_verdicts([ClaimRow(1, "a", "bf", "nn", 58.11, 3.0, "pp", verdict="holds in part", headline=True),
    ...                 ClaimRow(1, "b", "bf", "nn", 58.11, 0.0, "pp", verdict="does not hold", headline=True)])
    {1: 'holds in part'}
    """
    found: dict[int, list[str]] = {}
    for row in _of_reading(rows, reading):
        if row.headline or row.task is None:
            found.setdefault(row.claim, []).append(row.verdict)
    out = {}
    for cid, words in found.items():
        measured = [w for w in words if w != "not measured"]
        if not measured:
            out[cid] = "not measured"
        elif _BY_ID[cid].measure == "fault_free" and len(set(measured)) > 1:
            out[cid] = "holds in part"
        else:
            out[cid] = min(measured, key=VERDICTS.index)
    return out


def paper_text(claim: Claim) -> str:
    """The paper's value as a table shows it ("58.11 pp", "comparable (...)").

    >>> paper_text(CLAIMS[0]), paper_text(CLAIMS[-1])
    ('58.11 pp', 'comparable (within 1 pp / 5 %)')
    """
    if claim.paper_value is None:
        return f"comparable (within {FAULT_FREE_TOLERANCE['pp']:g} pp / {FAULT_FREE_TOLERANCE['%']:g} %)"
    return f"{claim.paper_value:g} {claim.unit}"


def deciding_row(rows: list[ClaimRow], claim: int, reading: str | None = None) -> ClaimRow | None:
    """The headline row behind a claim's verdict under ``reading`` (None: the default): the best
    (claims 1-9, "up to") or, for the fault-free claim 10, the worst (it must hold on every task);
    ties go to the larger value."""
    mine = [r for r in _of_reading(rows, reading) if r.claim == claim and r.headline]
    mine = [r for r in mine if r.verdict != "not measured"] or mine
    if not mine:
        return None
    worst = _BY_ID[claim].measure == "fault_free"
    order = lambda r: (
        VERDICTS.index(r.verdict) * (-1 if worst else 1),  # noqa: E731
        (1 if worst else -1) * (r.measured if r.measured is not None else -math.inf),
    )
    return min(mine, key=order)


def reading_title(reading: str) -> str:
    """How a reading is named in ``claims.md``.

    >>> print(reading_title("crossbar"))
    the baselines' dropout on the crossbar inputs (`dropout_site="crossbar"`, the default)
    """
    label = READINGS.get(reading, "the baselines' dropout site")
    return f'{label} (`dropout_site="{reading}"`' + (", the default)" if reading == DEFAULT_READING else ")")


def _reading_summary(rows: list[ClaimRow], reading: str) -> list[str]:
    found = claim_verdicts(rows, reading)
    n = {v: sum(1 for w in found.values() if w == v) for v in VERDICTS}
    lines = [
        f"Of {len(found)} claims: {n['holds']} hold, {n['holds in part']} hold in part, "
        f"{n['does not hold']} do not hold, {n['not measured']} not measured in this run."
    ]
    for cid, word in found.items():
        c, row = _BY_ID[cid], deciding_row(rows, cid, reading)
        if row is None or word == "not measured":
            why = f" ({row.note})" if row is not None and row.task is not None else ""
            lines.append(f"Claim {cid}, {c.text} **Not measured in this run**{why}.")
            continue
        where = row.task + (f" / {row.sweep}" if row.sweep else "")
        ci = f" (95 % CI {_num(row.interval[0])} to {_num(row.interval[1])})" if row.interval else ""
        which = "worst" if c.measure == "fault_free" else "best"
        lines.append(
            f"Claim {cid}, {c.text} **{word[0].upper() + word[1:]}**: {which} measured "
            f"{_num(row.measured, row.unit)}{ci} on {where}, vs {_LABELS.get(row.baseline, row.baseline)}."
        )
    return lines


def summary(rows: list[ClaimRow]) -> list[str]:
    """Plain sentences: how many claims hold, hold in part, do not hold; then each claim's verdict.

    With several readings of the baselines' dropout site, the sentences of each reading follow a
    line that names it (the default first).
    """
    found = row_readings(rows) or [DEFAULT_READING]
    if len(found) == 1:
        return _reading_summary(rows, found[0])
    lines = []
    for reading in found:
        lines += [f"Under {reading_title(reading)}:"] + _reading_summary(rows, reading)
    return lines


def _span(values: set) -> str:
    return "" if not values else str(min(values)) + ("" if len(values) == 1 else f"-{max(values)}")


def basis(rows: list[ClaimRow]) -> str:
    """What a table's measured rows rest on: training seeds and chips, and what so few seeds cannot tell.

    >>> print(basis([ClaimRow(1, "t", "bf", "nn", 58.11, 3.0, "pp", num_seeds=3, num_chips=100)]))
    Rests on 3 training seeds per method and 100 chips per seed, level and method; ...
    """
    seeds = {r.num_seeds for r in rows if r.num_seeds and r.task is not None}
    chips = {r.num_chips for r in rows if r.num_chips and r.task is not None}
    if not seeds:
        return "Nothing measured in this run."
    many = "s" if _span(seeds) != "1" else ""
    text = f"Rests on {_span(seeds)} training seed{many} per method"
    text += (
        f" and {_span(chips)} chips per seed, level and method; every interval resamples both, paired."
        if chips
        else " (healthy models: no chips, no interval)."
    )
    if min(seeds) == 1 and chips:
        text += (
            " **One training seed**: the interval covers the spread between chips only, not between "
            "training runs (another seed could close or widen a gap the interval calls significant), and "
            'the "strongest baseline" is the best of single training runs, not of methods.'
        )
    elif min(seeds) == 1:
        text += (
            " **One training seed**: each value is a single training run, and the best baseline is the "
            "best of single runs, not of methods."
        )
    elif chips and min(seeds) < 5:
        text += (
            f" With {min(seeds)} seeds, resampling them understates the spread between training runs "
            "(few distinct draws): read the intervals as rough."
        )
    return text


def _table(rows: list[ClaimRow]) -> str:
    rel = any(r.relative is not None for r in rows)
    naive = any(r.naive_rmse is not None for r in rows)
    head = (
        [
            "claim",
            "paper",
            "task",
            "sweep / shift",
            "baseline",
            "measured",
            "95 % CI",
            "best level",
            "proposed / baseline",
        ]
        + (["relative gain"] if rel else [])
        + (["best naive RMSE"] if naive else [])
    )
    head += ["verdict", "note"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        base = _LABELS.get(r.baseline, r.baseline or "–")
        cells = [
            str(r.claim),
            paper_text(_BY_ID[r.claim]),
            r.task or "–",
            r.sweep or "–",
            f"**{base}**" if r.headline else base,
            _num(r.measured, r.unit),
            f"{_num(r.interval[0])} to {_num(r.interval[1])}" if r.interval else "–",
            "–" if r.best_level is None else f"{r.best_level:g}",
            f"{_num(r.proposed_value)} / {_num(r.baseline_value)}",
        ]
        cells += [_num(r.relative, "%")] if rel else []
        cells += ["–" if r.naive_rmse is None else f"{r.naive_rmse:.4g}"] if naive else []
        cells += [r.verdict, r.note.replace("|", "/")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def claims_markdown(rows: list[ClaimRow], comparison: list[ComparisonRow] = ()) -> str:
    """The claims report: a plain-language summary, then a table per claim group.

    ``comparison``: rows of :func:`~invnorm_jax.pipeline.claims.noisy.evaluate_noisy_training`, a last
    section of their own (none: no section).

    >>> md = claims_markdown([ClaimRow(7, None, None, None, 51.84, None, "%")])
    >>> "51.84 %" in md and "not measured" in md
    True
    """
    found = row_readings(rows) or [DEFAULT_READING]
    several = len(found) > 1
    which = (
        "each reading of the baselines' dropout site separately: " + "; ".join(map(reading_title, found))
        if several
        else f"under {reading_title(found[0])}"
    )
    lines = [
        "# The paper's claims against this run",
        "",
        'Each claim is measured the paper\'s way ("up to": the best level of a sweep); the 95 % interval '
        "is a bootstrap that resamples the training seeds and the chips, both paired across methods; the "
        "**bold** baseline is the one the claim names (docs/claims.md gives every rule). pp: percentage "
        f"points. Claims are measured {which}.",
        "",
        "## Summary",
        "",
    ]
    lines += [f"* {s}" for s in summary(rows)] + [""]
    for reading in found:
        mine_r = [r for r in rows if r.reading == reading]
        for group in dict.fromkeys(c.group for c in CLAIMS):
            mine = [r for r in mine_r if _BY_ID[r.claim].group == group]
            if mine:
                title = f"{group}, under {reading_title(reading)}" if several else group
                lines += [f"## {title}", "", basis(mine), "", _table(mine), ""]
    if comparison:
        lines += [comparison_markdown(list(comparison))]
    return "\n".join(lines)


def _plain(v):
    return None if isinstance(v, float) and not math.isfinite(v) else v


def claims_json(rows: list[ClaimRow], comparison: list[ComparisonRow] = ()) -> dict:
    """The JSON-ready claims report: ``version``, the claims, every row and the verdict per claim.

    ``verdicts`` are the default reading's (or the only one's); ``verdicts_by_reading`` maps each
    reading of the baselines' dropout site to its verdicts. With ``comparison`` rows
    (:mod:`invnorm_jax.pipeline.claims.noisy`) also ``"noisy_training"``: their list.

    >>> d = claims_json([ClaimRow(7, None, None, None, 51.84, None, "%")])
    >>> d["version"], d["verdicts"], d["verdicts_by_reading"]
    (2, {'7': 'not measured'}, {'crossbar': {'7': 'not measured'}})
    """
    out_rows = []
    for r in rows:
        d = {k: _plain(v) for k, v in dataclasses.asdict(r).items()}
        for k in _PAIRS:
            d[k] = None if d[k] is None else [_plain(float(v)) for v in d[k]]
        out_rows.append(d)
    claims = [dict(dataclasses.asdict(c), unit=c.unit) for c in CLAIMS]
    by_reading = {
        reading: {str(k): v for k, v in claim_verdicts(rows, reading).items()} for reading in row_readings(rows)
    }
    out = {
        "version": CLAIMS_VERSION,
        "confidence": CONFIDENCE,
        "fault_free_tolerance": dict(FAULT_FREE_TOLERANCE),
        "naive_margin": NAIVE_MARGIN,
        "claims": claims,
        "rows": out_rows,
        "verdicts": {str(k): v for k, v in claim_verdicts(rows).items()},
        "verdicts_by_reading": by_reading,
    }
    if comparison:
        out["noisy_training"] = comparison_json(list(comparison))
    return out


def rows_from_json(d: dict) -> list[ClaimRow]:
    """The rows of a :func:`claims_json` dict (a parsed ``claims.json``).

    A version-1 file (chips-only intervals, one reading) reads with the fields it lacks at their
    defaults.

    Raises:
      ValueError: another version of the claims file.
    """
    if d.get("version") not in (1, CLAIMS_VERSION):
        raise ResultsError(f"claims.json version {d.get('version')}; this invnorm-jax reads version {CLAIMS_VERSION}.")
    return [ClaimRow(**dict(r, **{k: None if r[k] is None else tuple(r[k]) for k in _PAIRS})) for r in d["rows"]]


def write_claims(results: Results, out_dir, *, n_boot: int = 2000, seed: int = 0) -> tuple[pathlib.Path, pathlib.Path]:
    """Measure every claim on ``results`` and write ``claims.md`` and ``claims.json`` into ``out_dir``.

    With ``noisy_training`` in a task, both files also hold its comparison with the proposed method.

    >>> import tempfile
    >>> md, js = write_claims(Results(), tempfile.mkdtemp())
    >>> md.name, js.name, json.loads(js.read_text())["verdicts"]["1"]
    ('claims.md', 'claims.json', 'not measured')
    """
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = evaluate_claims(results, n_boot=n_boot, seed=seed)
    comparison = evaluate_noisy_training(results, n_boot=n_boot, seed=seed)
    md, js = out / "claims.md", out / "claims.json"
    md.write_text(claims_markdown(rows, comparison))
    js.write_text(json.dumps(claims_json(rows, comparison), indent=1))
    return md, js
