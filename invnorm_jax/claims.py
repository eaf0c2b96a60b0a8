"""The paper's quantitative claims against a run's measurements: ``claims.md`` and ``claims.json``.

:func:`evaluate_claims` measures every claim of :data:`CLAIMS` on a
:class:`~invnorm_jax.results.Results` (the statistics live in :mod:`invnorm_jax.claims_measure`);
:func:`claims_markdown` and :func:`claims_json` render the rows; :func:`write_claims` writes both
files. docs/claims.md says how each claim is measured, the interval and the verdict rules. A run
with the method ``noisy_training`` also gets a section comparing it with the proposed method
(:mod:`invnorm_jax.claims_noisy`; not a paper claim); a run without it gets exactly the claims.

>>> rows = evaluate_claims(results)                                   # doctest: +SKIP
>>> md_path, json_path = write_claims(results, "runs/demo")           # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib

from invnorm_jax.claims_measure import (  # noqa: F401  (re-exported: the public API lives here)
    BASELINES, CLAIMS, CONFIDENCE, FAULT_FREE_TOLERANCE, VERDICTS, Claim, ClaimRow, evaluate_claims,
    resample_weights, up_to_interval, verdict,
)
from invnorm_jax.claims_noisy import ComparisonRow, comparison_json, comparison_markdown, evaluate_noisy_training
from invnorm_jax.results import Results

CLAIMS_VERSION = 1
_LABELS = {"nn": "NN", "spindrop": "SpinDrop", "spatial_spindrop": "Spatial-SpinDrop", "proposed": "Proposed",
           "dropout": "dropout BayNNs", "strongest": "strongest"}
_BY_ID = {c.id: c for c in CLAIMS}
_PAIRS = ("interval", "interval_percentile")  # (low, high) tuples, lists in JSON


def _num(v: float | None, unit: str = "") -> str:
    if v is None or not math.isfinite(v):
        return "–"
    return f"{v:.2f}" + (f" {unit}" if unit else "")


def claim_verdicts(rows: list[ClaimRow]) -> dict[int, str]:
    """Each claim's verdict from its headline rows.

    An "up to" claim (1-9) takes the best verdict among its rows: the paper's "up to" spans its
    experiments, so one task and sweep that reaches it is enough. Claim 10 ("comparable", a
    statement about every Table-I row) holds when it holds on every task, holds in part when on
    some, and does not hold when on none.

    >>> claim_verdicts([ClaimRow(1, "a", "bf", "nn", 58.11, 3.0, "pp", verdict="holds in part", headline=True),
    ...                 ClaimRow(1, "b", "bf", "nn", 58.11, 0.0, "pp", verdict="does not hold", headline=True)])
    {1: 'holds in part'}
    """
    found: dict[int, list[str]] = {}
    for row in rows:
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


def deciding_row(rows: list[ClaimRow], claim: int) -> ClaimRow | None:
    """The headline row behind a claim's verdict: the best (claims 1-9, "up to") or, for the
    fault-free claim 10, the worst (it must hold on every task); ties go to the larger value."""
    mine = [r for r in rows if r.claim == claim and r.headline]
    if not mine:
        return None
    worst = _BY_ID[claim].measure == "fault_free"
    order = lambda r: (VERDICTS.index(r.verdict) * (-1 if worst else 1),  # noqa: E731
                       (1 if worst else -1) * (r.measured if r.measured is not None else -math.inf))
    return min(mine, key=order)


def summary(rows: list[ClaimRow]) -> list[str]:
    """Plain sentences: how many claims hold, hold in part, do not hold; then each claim's verdict."""
    found = claim_verdicts(rows)
    n = {v: sum(1 for w in found.values() if w == v) for v in VERDICTS}
    lines = [f"Of {len(found)} claims: {n['holds']} hold, {n['holds in part']} hold in part, "
             f"{n['does not hold']} do not hold, {n['not measured']} not measured in this run."]
    for cid, word in found.items():
        c, row = _BY_ID[cid], deciding_row(rows, cid)
        if row is None:
            lines.append(f"Claim {cid}, {c.text} **Not measured in this run.**")
            continue
        where = row.task + (f" / {row.sweep}" if row.sweep else "")
        ci = f" (95 % CI {_num(row.interval[0])} to {_num(row.interval[1])})" if row.interval else ""
        which = "worst" if c.measure == "fault_free" else "best"
        lines.append(f"Claim {cid}, {c.text} **{word[0].upper() + word[1:]}**: {which} measured "
                     f"{_num(row.measured, row.unit)}{ci} on {where}, vs {_LABELS.get(row.baseline, row.baseline)}.")
    return lines


def _table(rows: list[ClaimRow]) -> str:
    rel = any(r.relative is not None for r in rows)
    head = ["claim", "paper", "task", "sweep / shift", "baseline", "measured", "95 % CI", "best level",
            "proposed / baseline"] + (["relative gain"] if rel else []) + ["verdict", "note"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        base = _LABELS.get(r.baseline, r.baseline or "–")
        cells = [str(r.claim), paper_text(_BY_ID[r.claim]), r.task or "–", r.sweep or "–",
                 f"**{base}**" if r.headline else base, _num(r.measured, r.unit),
                 f"{_num(r.interval[0])} to {_num(r.interval[1])}" if r.interval else "–",
                 "–" if r.best_level is None else f"{r.best_level:g}",
                 f"{_num(r.proposed_value)} / {_num(r.baseline_value)}"]
        cells += [_num(r.relative, "%")] if rel else []
        cells += [r.verdict, r.note.replace("|", "/")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def claims_markdown(rows: list[ClaimRow], comparison: list[ComparisonRow] = ()) -> str:
    """The claims report: a plain-language summary, then a table per claim group.

    ``comparison``: rows of :func:`~invnorm_jax.claims_noisy.evaluate_noisy_training`, a last
    section of their own (none: no section).

    >>> md = claims_markdown([ClaimRow(7, None, None, None, 51.84, None, "%")])
    >>> "51.84 %" in md and "not measured" in md
    True
    """
    lines = ["# The paper's claims against this run", "",
             "Each claim is measured the paper's way (\"up to\": the best level of a sweep); the 95 % interval "
             "is a paired bootstrap over chips; the **bold** baseline is the one the claim names "
             "(docs/claims.md gives every rule). pp: percentage points.", "", "## Summary", ""]
    lines += [f"* {s}" for s in summary(rows)] + [""]
    for group in dict.fromkeys(c.group for c in CLAIMS):
        mine = [r for r in rows if _BY_ID[r.claim].group == group]
        if mine:
            lines += [f"## {group}", "", _table(mine), ""]
    if comparison:
        lines += [comparison_markdown(list(comparison))]
    return "\n".join(lines)


def _plain(v):
    return None if isinstance(v, float) and not math.isfinite(v) else v


def claims_json(rows: list[ClaimRow], comparison: list[ComparisonRow] = ()) -> dict:
    """The JSON-ready claims report: ``version``, the claims, every row and the verdict per claim.

    With ``comparison`` rows (:mod:`invnorm_jax.claims_noisy`) also ``"noisy_training"``: their list.

    >>> d = claims_json([ClaimRow(7, None, None, None, 51.84, None, "%")])
    >>> d["version"], d["verdicts"]
    (1, {'7': 'not measured'})
    """
    out_rows = []
    for r in rows:
        d = {k: _plain(v) for k, v in dataclasses.asdict(r).items()}
        for k in _PAIRS:
            d[k] = None if d[k] is None else [_plain(float(v)) for v in d[k]]
        out_rows.append(d)
    claims = [dict(dataclasses.asdict(c), unit=c.unit) for c in CLAIMS]
    out = {"version": CLAIMS_VERSION, "confidence": CONFIDENCE, "fault_free_tolerance": dict(FAULT_FREE_TOLERANCE),
           "claims": claims, "rows": out_rows, "verdicts": {str(k): v for k, v in claim_verdicts(rows).items()}}
    if comparison:
        out["noisy_training"] = comparison_json(list(comparison))
    return out


def rows_from_json(d: dict) -> list[ClaimRow]:
    """The rows of a :func:`claims_json` dict (a parsed ``claims.json``).

    Raises:
      ValueError: another version of the claims file.
    """
    if d.get("version") != CLAIMS_VERSION:
        raise ValueError(f"claims.json version {d.get('version')}; this invnorm-jax reads version {CLAIMS_VERSION}.")
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
