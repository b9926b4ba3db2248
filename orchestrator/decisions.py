"""The decisions of a study with ``decide:``: one function that every output calls.

``iel submit`` (the adaptive scheduler, its closing table), ``iel results``, ``iel report``, the database view
``iel_decisions`` and the cells' MLflow runs all read :func:`study_decisions`, which scores each COMPLETE
trial as ``decide.score`` says (its last epoch, the mean of its last ``k`` epochs, or its best epoch) and hands
the cells to :func:`orchestrator.stats.decide_cells` (paired on seed against the row's baseline, anytime-valid
confidence sequence, Bonferroni over the study's comparisons).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from orchestrator.db import ResultsDB
from orchestrator.db.comparisons import DecisionRow
from orchestrator.report.tables import StudyData, cell_inputs, load_study_data
from orchestrator.stats import CellDecision, CellInput, decide_cells, trial_score
from orchestrator.study_decide import DecideSpec, Score


def scored_inputs(db: ResultsDB, data: StudyData, decide: DecideSpec) -> list[CellInput]:
    """The study's cells with ``decide.metric`` replaced by each trial's score (``last`` keeps the final value)."""
    cells = cell_inputs(data)
    if Score(decide.score) is Score.LAST:
        return cells
    metric, direction = decide.metric, decide.direction
    out: list[CellInput] = []
    for cell, data_cell in zip(cells, data.cells, strict=True):
        trials = []
        for (seed, metrics), record in zip(cell.trials, data_cell.trials, strict=True):
            history = [v for _, name, v in db.epoch_metrics(record.id) if name == metric]
            score = trial_score(history, direction, decide.score, decide.k)
            trials.append((seed, {**metrics, metric: score}))
        out.append(replace(cell, trials=tuple(trials)))
    return out


def decisions_of(cells: Sequence[CellInput], decide: DecideSpec) -> list[CellDecision]:
    """Every arm-vs-baseline decision of ``cells`` on ``decide.metric``."""
    return decide_cells(
        cells, metric=decide.metric, margin=decide.margin, alpha=decide.alpha, method=decide.method
    )


def study_decisions(db: ResultsDB, study: str, decide: DecideSpec) -> list[CellDecision]:
    """The decisions of ``study`` now, computed from the database (never from memory)."""
    data = load_study_data(db, study)
    return decisions_of(scored_inputs(db, data, decide), decide)


def arm_labels(db: ResultsDB, study: str) -> dict[str, str]:
    """``cell key -> short arm label`` (``heat_mild``, ``iel.type=heat,iel.steps=10``) for :func:`describe`."""
    from orchestrator.report.verdicts import cell_labels

    return cell_labels(load_study_data(db, study))


def describe(d: CellDecision, labels: dict[str, str] | None = None) -> str:
    """One line, e.g. ``heat_mild vs plain_ce: better, +0.0110 [+0.0040, +0.0190], decided at 12 seeds``."""
    labels = labels or {}
    dec = d.decision
    return verdict(
        labels.get(d.cell, d.arm.removeprefix("arm=")),
        labels.get(d.baseline_cell, "baseline"),
        d.row,
        dec.decision.value,
        dec.estimate,
        dec.cs_low,
        dec.cs_high,
        dec.n,
        dec.decided_at_n,
    )


def describe_row(r: DecisionRow, labels: dict[str, str]) -> str:
    """:func:`describe` for a stored decision (the view ``iel_decisions``)."""
    arm, base = labels.get(r.cell_key, r.cell_key), labels.get(r.baseline_key, r.baseline_key)
    return verdict(arm, base, "", r.decision, r.estimate, r.cs_low, r.cs_high, r.n, r.decided_at_n)


def verdict(
    arm: str,
    base: str,
    row: str,
    decision: str,
    estimate: float | None,
    cs_low: float | None,
    cs_high: float | None,
    n: int,
    decided_at_n: int | None,
) -> str:
    """The one-line form every output shows (submit's table, ``iel results``, the report, the progress table)."""
    where = "" if row in ("", "all") else f" at {row}"
    if estimate is None:
        return f"{arm} vs {base}{where}: undecided, no finished pair yet"
    low = "-inf" if cs_low is None else f"{cs_low:+.4f}"
    high = "+inf" if cs_high is None else f"{cs_high:+.4f}"
    when = f"decided at {decided_at_n} seeds" if decided_at_n is not None else f"after {n} seeds"
    return f"{arm} vs {base}{where}: {decision}, {estimate:+.4f} [{low}, {high}], {when}"
