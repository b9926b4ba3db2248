"""What the study's and the cells' MLflow runs carry: the aggregates of the results database, recomputed.

Computed only through the one statistics path (:func:`orchestrator.report.tables.load_study_data`,
:func:`orchestrator.stats.summarise_cells`, :func:`orchestrator.decisions.study_decisions`), never by hand:

- a cell run: ``n_trials`` and, for the primary metric and Dice, ``<metric>_n``, ``_mean``, ``_ci_low``,
  ``_ci_high``; with ``decide:``, the decision against its row's baseline (``decision_estimate``,
  ``decision_cs_low``, ``decision_cs_high``, ``decided_at_n``, tag ``iel.decision``);
- the study run: trial counts (``trials_complete``...), the best arm of each row (tag ``iel.best`` and
  the run's description) and the decisions (tag ``iel.decisions``, one line each).

The metrics' step is the number of COMPLETE trials of the study, so their history shows how they moved.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from orchestrator.db import ResultsDB
from orchestrator.decisions import describe, study_decisions
from orchestrator.progress import primary_metric
from orchestrator.report.tables import cell_inputs, load_study_data
from orchestrator.run_names import cell_label
from orchestrator.stats import summarise_cells
from orchestrator.study import StudySpec
from orchestrator.tracking import Tracker

Rows = list[tuple[int, str, float]]
_log = logging.getLogger("orchestrator.tracking")


@dataclass(frozen=True)
class RunSummary:
    """Metrics (``(step, name, value)``) and tags for one run."""

    rows: Rows = field(default_factory=list)
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StudySummary:
    study: RunSummary
    cells: Mapping[str, RunSummary]  # by cell key


def _fmt(v: float | None) -> str:
    return "?" if v is None else f"{v:.4f}"


def summarise_study(db: ResultsDB, spec: StudySpec) -> StudySummary:
    """The study's and each cell's run summary, from the database now."""
    data = load_study_data(db, spec.name)
    labels = {c.key: cell_label(c.factors) for c in data.cells}
    step = sum(len(c.trials) for c in data.cells)
    primary = primary_metric(spec)
    metrics = list(dict.fromkeys([primary, "dice"]))
    stats = summarise_cells(cell_inputs(data), metrics)
    cell_rows: dict[str, Rows] = {c.key: [(step, "n_trials", float(len(c.trials)))] for c in data.cells}
    cell_tags: dict[str, dict[str, str]] = {c.key: {} for c in data.cells}
    best: list[str] = []
    for s in stats:
        rows = cell_rows[s.cell]
        rows += [(step, f"{s.metric}_n", float(s.n)), (step, f"{s.metric}_mean", s.mean)]
        ci = (("ci_low", s.ci_low), ("ci_high", s.ci_high))
        rows += [(step, f"{s.metric}_{k}", v) for k, v in ci if v is not None]
        if s.best and s.metric == primary:
            where = "" if s.row in ("", "all") else f"{s.row}: "
            best.append(f"{where}{labels.get(s.cell, s.arm)} ({primary} {_fmt(s.mean)}, n={s.n})")
    lines: list[str] = []
    if spec.decide is not None:
        for d in study_decisions(db, spec.name, spec.decide):
            dec = d.decision
            rows = cell_rows.setdefault(d.cell, [])
            rows += [
                (step, name, float(v))
                for name, v in (
                    ("decision_estimate", dec.estimate),
                    ("decision_cs_low", dec.cs_low),
                    ("decision_cs_high", dec.cs_high),
                    ("decided_at_n", dec.decided_at_n),
                )
                if v is not None
            ]
            cell_tags.setdefault(d.cell, {})["iel.decision"] = dec.decision.value
            lines.append(describe(d, labels))
    counts = {f"trials_{k.lower()}": float(v) for k, v in data.counts.items()}
    study_rows: Rows = [(step, k, v) for k, v in sorted(counts.items())]
    note: list[str] = []
    if lines:
        note += [f"Decisions ({spec.decide.metric if spec.decide else primary} against the baseline):"]
        note += [*[f"- {line}" for line in lines], ""]
    if best:
        note += [f"Best arm ({primary}, best mean per row):", *[f"- {b}" for b in best]]
    study_tags = {"iel.best": "; ".join(best), "mlflow.note.content": "\n".join(note) or spec.description}
    if lines:
        study_tags["iel.decisions"] = "\n".join(lines)
    cells = {k: RunSummary(cell_rows[k], cell_tags.get(k, {})) for k in cell_rows}
    return StudySummary(RunSummary(study_rows, study_tags), cells)


class SummaryRefresher:
    """Writes :func:`summarise_study` to the study and cell runs; called on the background MLflow writer's
    thread, with a database connection of its own (a :class:`ResultsDB` is not shared between threads)."""

    def __init__(self, db_url: str, spec: StudySpec, study_run: str, cell_runs: Mapping[str, str]) -> None:
        self.db_url, self.spec = db_url, spec
        self.study_run, self.cell_runs = study_run, dict(cell_runs)
        self._db: ResultsDB | None = None

    def __call__(self, tracker: Tracker) -> None:
        if self._db is None:
            self._db = ResultsDB(self.db_url, upgrade=False)
        try:
            summary = summarise_study(self._db, self.spec)
        except Exception as e:  # a summary that cannot be computed must not stop the study; MLflow errors do
            _log.warning("could not summarise study %s for MLflow: %s", self.spec.name, e)
            return
        tracker.log_metrics(self.study_run, summary.study.rows, summary.study.tags)
        for key, run in summary.cells.items():
            if key in self.cell_runs:
                tracker.log_metrics(self.cell_runs[key], run.rows, run.tags)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
