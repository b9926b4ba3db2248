"""The results table of a study: per cell (or per group of factors) n seeds, mean, std, 95 % CI, and the
paired comparison against the study's baseline arm (paired on seed, Holm-corrected across the table).
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from orchestrator.db import ResultsDB, TrialRecord, TrialState
from orchestrator.stats import describe, holm, paired


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != value:
            return "nan"
        return f"{value:.{digits}f}"
    return str(value)


def baseline_partner(
    factors: Mapping[str, Any], baseline: Mapping[str, Any], baseline_cells: Sequence[Mapping[str, Any]]
) -> int | None:
    """Index of the baseline cell that agrees with ``factors`` on every non-baseline factor it has."""
    for i, base in enumerate(baseline_cells):
        if all(factors.get(k) == v for k, v in base.items() if k not in baseline):
            return i
    return None


def results_rows(
    db: ResultsDB,
    study: str,
    metric: str = "dice",
    group_by: Sequence[str] | None = None,
    baseline: Mapping[str, Any] | None = None,
    bootstrap: bool = False,
) -> list[dict[str, Any]]:
    """One dict per cell/group: factors, n, mean, std, ci_low, ci_high, and (when a baseline is known and the
    table is per cell) diff, diff_ci, p_t, p_wilcoxon, p_holm, effect_size and is_baseline."""
    trials = [t for t in db.trials(study, states=[TrialState.COMPLETE]) if t.final_metrics.get(metric) is not None]
    groups: dict[str, list[TrialRecord]] = defaultdict(list)
    keys: dict[str, dict[str, Any]] = {}
    for t in trials:
        if group_by:
            g = {k: t.factors.get(k) for k in group_by}
            gkey = json.dumps(g, sort_keys=True, default=str)
        else:
            g, gkey = dict(t.factors), t.cell_key
        groups[gkey].append(t)
        keys[gkey] = g
    rows: list[dict[str, Any]] = []
    for gkey, members in groups.items():
        s = describe([float(m.final_metrics[metric] or 0.0) for m in members], bootstrap=bootstrap)
        row: dict[str, Any] = {
            "cell": gkey if not group_by else ",".join(f"{k}={v}" for k, v in keys[gkey].items()),
            **{f: v for f, v in keys[gkey].items()},
            "n": s.n,
            "mean": s.mean,
            "std": s.std,
            "ci_low": s.ci_low,
            "ci_high": s.ci_high,
        }
        if not group_by:
            row["is_baseline"] = members[0].is_baseline
        rows.append(row)
    if baseline and not group_by:
        _add_paired(rows, groups, metric, baseline)
    best = max((r["mean"] for r in rows), default=None)
    for r in rows:
        r["best"] = best is not None and r["mean"] == best
    rows.sort(key=lambda r: r["cell"])
    return rows


def _add_paired(
    rows: list[dict[str, Any]],
    groups: Mapping[str, list[TrialRecord]],
    metric: str,
    baseline: Mapping[str, Any],
) -> None:
    base_rows = [r for r in rows if r.get("is_baseline")]
    base_factors = [groups[r["cell"]][0].factors for r in base_rows]
    pvals: list[float | None] = []
    for r in rows:
        r.update(diff=None, diff_ci_low=None, diff_ci_high=None, p_t=None, p_wilcoxon=None, effect_size=None)
        if r.get("is_baseline"):
            pvals.append(None)
            continue
        members = groups[r["cell"]]
        j = baseline_partner(members[0].factors, baseline, base_factors)
        if j is None:
            pvals.append(None)
            continue
        by_seed_base = {t.seed: float(t.final_metrics[metric] or 0.0) for t in groups[base_rows[j]["cell"]]}
        pairs = [(float(t.final_metrics[metric] or 0.0), by_seed_base[t.seed]) for t in members if t.seed in by_seed_base]
        if not pairs:
            pvals.append(None)
            continue
        p = paired([a for a, _ in pairs], [b for _, b in pairs])
        r.update(
            diff=p.mean_diff,
            diff_ci_low=p.ci_low,
            diff_ci_high=p.ci_high,
            p_t=p.p_t,
            p_wilcoxon=p.p_wilcoxon,
            effect_size=p.effect_size,
            baseline_cell=base_rows[j]["cell"],
        )
        pvals.append(p.p_t)
    for r, adj in zip(rows, holm(pvals)):
        r["p_holm"] = adj


COLUMNS = ["cell", "n", "mean", "std", "ci_low", "ci_high", "diff", "p_t", "p_wilcoxon", "p_holm", "best"]


def format_rows(rows: Sequence[Mapping[str, Any]], fmt: str = "table", metric: str = "dice") -> str:
    if fmt == "json":
        return json.dumps(list(rows), indent=2, default=str)
    cols = [c for c in COLUMNS if any(c in r for r in rows)] or ["cell", "n", "mean", "std"]
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({c: r.get(c) for c in cols})
        return buf.getvalue()
    header = [f"{metric} mean" if c == "mean" else c for c in cols]
    body = []
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c)
            if c == "best":
                v = "*" if v else ""
            elif c == "cell" and r.get("is_baseline"):
                v = f"{v} (baseline)"
            cells.append(_fmt(v))
        body.append(cells)
    if fmt == "markdown":
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(b) + " |" for b in body]
        return "\n".join(lines)
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths)), "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(b, widths)) for b in body]
    return "\n".join(out)
