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


def describe(d: CellDecision, labels: dict[str, str] | None = None) -> str:
    """One line, e.g. ``heat dt 0.05 N 10 vs plain at noise 0.4: better, +0.011 [+0.004, +0.019], decided at
    12 seeds``."""
    labels = labels or {}
    dec = d.decision
    arm = labels.get(d.cell, d.arm)
    base = labels.get(d.baseline_cell, "baseline")
    where = "" if d.row in ("", "all") else f" at {d.row}"
    if dec.estimate is None:
        return f"{arm} vs {base}{where}: undecided, no finished pair yet"
    low = "-inf" if dec.cs_low is None else f"{dec.cs_low:+.4f}"
    high = "+inf" if dec.cs_high is None else f"{dec.cs_high:+.4f}"
    when = (
        f"decided at {dec.decided_at_n} seeds" if dec.decided_at_n is not None else f"after {dec.n} seeds"
    )
    return f"{arm} vs {base}{where}: {dec.decision.value}, {dec.estimate:+.4f} [{low}, {high}], {when}"
