"""The one-line verdicts that open a report: one per comparison of an arm with its row's baseline.

A study with ``decide:`` gets the anytime-valid decisions (:func:`orchestrator.decisions.study_decisions`,
worded by :func:`orchestrator.decisions.describe`): ``heat vs none at noise.rate=0.4: better, +0.0110
[+0.0040, +0.0190], decided at 12 seeds``.  Any other grid study gets the paired t-test of its primary
metric, Holm-corrected within that metric (:func:`orchestrator.report.tables.compare`):
``heat vs none at noise.rate=0.4: better (p_holm=0.0100, Δ +0.0110, n=5)`` or ``... not shown (p_holm=0.31,
n=3)``.  No statistic is computed here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from orchestrator.report.render import Block, Bullets, Heading, Paragraph
from orchestrator.report.tables import Comparison, StudyData, direction

ALPHA = 0.05
"""Level of the paired t verdicts (on the Holm-corrected p-value)."""


def primary_metric(spec: dict[str, Any]) -> str:
    """``decide.metric``, else the first search objective, else ``dice`` (as ``iel submit`` ranks)."""
    decide = spec.get("decide")
    if isinstance(decide, dict) and decide.get("metric"):
        return str(decide["metric"])
    search = spec.get("search")
    objectives = search.get("objectives") if isinstance(search, dict) else None
    if objectives:
        first = objectives[0]
        return str(first.get("metric", "dice")) if isinstance(first, dict) else str(first)
    return "dice"


def cell_labels(data: StudyData) -> dict[str, str]:
    """Cell key -> the arm's label as every output shows it (a named arm by its name)."""
    return {c.key: c.arm.removeprefix("arm=") for c in data.cells}


def _where(row: str) -> str:
    return "" if row in ("", "all") else f" at {row}"


def t_verdict(c: Comparison, baseline_label: str) -> str:
    """One comparison's paired t verdict (``better`` / ``worse`` at :data:`ALPHA` after Holm)."""
    head = f"{c.arm} vs {baseline_label}{_where(c.row)}"
    if c.p_t_holm is None:
        return f"{head}: not tested (n={c.n} seed pair{'s' if c.n != 1 else ''}; at least 2 needed)"
    if c.p_t_holm < ALPHA and c.mean_diff != 0:
        sign = 1.0 if direction(c.metric) == "maximize" else -1.0
        word = "better" if sign * c.mean_diff > 0 else "worse"
        return f"{head}: {word} (p_holm={c.p_t_holm:.2g}, Δ {c.mean_diff:+.4f}, n={c.n})"
    return f"{head}: not shown (p_holm={c.p_t_holm:.2g}, n={c.n})"


def verdicts(db: Any, data: StudyData, comparisons: Sequence[Comparison]) -> tuple[str, list[str]]:
    """(what the verdicts rest on, one line per comparison)."""
    labels = cell_labels(data)
    raw = data.spec.get("decide")
    if raw:
        from orchestrator.decisions import describe, study_decisions
        from orchestrator.study_decide import parse_decide

        # the stored (canonical) spec writes every field of decide:, k included, which only mean_last_k takes
        decide = parse_decide({k: v for k, v in raw.items() if k != "k" or raw.get("score") == "mean_last_k"})
        lines = [describe(d, labels) for d in study_decisions(db, data.name, decide)]
        return (
            f"decisions on {decide.metric} (anytime-valid confidence sequence, margin {decide.margin:g}, "
            f"alpha {decide.alpha:g} over the study's comparisons)",
            lines,
        )
    metric = primary_metric(data.spec)
    lines = [t_verdict(c, labels.get(c.baseline_cell, "baseline")) for c in comparisons if c.metric == metric]
    return (
        f"paired t-tests of final {metric} against each row's baseline, Holm-corrected, level {ALPHA:g}",
        lines,
    )


def verdict_blocks(data: StudyData, basis: str, lines: Sequence[str]) -> list[Block]:
    """The report's opening section: the verdicts, or why there are none."""
    if lines:
        return [
            Heading("Verdicts", 2),
            Paragraph(f"One line per comparison: {basis}."),
            Bullets(tuple(lines)),
        ]
    why = (
        "a searched study's cells hold search trials, not replicates"
        if data.searched
        else "no arm has a baseline in its row, or no comparison has a finished pair yet"
    )
    return [Heading("Verdicts", 2), Paragraph(f"No comparison to state: {why}.")]
