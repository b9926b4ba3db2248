"""The results table of a study (``iel results`` and the table at the end of ``iel submit``): per cell (or
per group of factors) n seeds, mean, std, 95 % CI, the best arm of each row, and the paired comparison with
the row's baseline.  Every number comes from :mod:`orchestrator.stats.cells`, the path ``iel report`` uses,
so the two agree: same rows, same pairing (on seed only; none for a searched study), Holm within the
metric's comparisons, intervals clipped to the metric's range, a missing metric left out (never 0).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

from orchestrator.db import ResultsDB
from orchestrator.report.tables import cell_inputs, label, load_study_data
from orchestrator.stats.cells import CellInput, compare_cells, summarise_cells


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != value:
            return "nan"
        return f"{value:.{digits}f}"
    return str(value)


def results_rows(
    db: ResultsDB,
    study: str,
    metric: str = "dice",
    group_by: Sequence[str] | None = None,
    baseline: Mapping[str, Any] | None = None,
    bootstrap: bool = False,
) -> list[dict[str, Any]]:
    """One dict per cell/group with a value of ``metric``: factors, n, mean, std, ci_low, ci_high, best
    (best arm of its row by the metric's direction), and (per cell, when a baseline is known) row, arm,
    is_baseline, baseline_cell, diff, diff_ci_low, diff_ci_high, p_t, p_wilcoxon, p_holm, effect_size."""
    data = load_study_data(db, study)
    cells = cell_inputs(data)
    factors = {c.key: c.factors for c in data.cells}
    if group_by:  # pool the cells that agree on the group's factors; no row, no comparison
        pooled: dict[str, list[tuple[int, Mapping[str, float | None]]]] = {}
        factors = {}
        for c in data.cells:
            g = {k: c.factors.get(k) for k in group_by}
            key = label(g, list(group_by))
            factors[key] = g
            pooled.setdefault(key, []).extend((t.seed, t.final_metrics) for t in c.trials)
        cells = [CellInput(k, "all", k, False, None, tuple(ts)) for k, ts in pooled.items()]
    rows: list[dict[str, Any]] = []
    for s in summarise_cells(cells, [metric], bootstrap=bootstrap):
        row: dict[str, Any] = {"cell": s.cell, **factors[s.cell], "n": s.n, "mean": s.mean, "std": s.std}
        row.update(ci_low=s.ci_low, ci_high=s.ci_high, best=s.best)
        if not group_by:
            row.update(row_label=s.row, arm=s.arm, is_baseline=s.is_baseline)
        rows.append(row)
    if baseline and not group_by:
        cmp = {c.cell: c for c in compare_cells(cells, [metric], searched=data.searched, bootstrap=bootstrap)}
        for r in rows:
            k = cmp.get(r["cell"])
            r.update(
                baseline_cell=k.baseline_cell if k else None,
                diff=k.mean_diff if k else None,
                diff_ci_low=k.ci_low if k else None,
                diff_ci_high=k.ci_high if k else None,
                p_t=k.p_t if k else None,
                p_wilcoxon=k.p_wilcoxon if k else None,
                p_holm=k.p_t_holm if k else None,
                effect_size=k.effect_size if k else None,
            )
    return rows


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
