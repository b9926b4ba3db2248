"""The stored decisions of a study (table ``iel_comparisons``, view ``iel_decisions``).

The driver rewrites a study's rows after every finished trial from :func:`orchestrator.decisions.
study_decisions`; readers get them back as plain :class:`DecisionRow` records.  Decisions are always
recomputable from the trials, so this table is a record of what the driver decided on, not a source.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, select, text

from orchestrator.db.models import Cell, Comparison, utcnow
from orchestrator.db.repository import ResultsDB
from orchestrator.stats import CellDecision


@dataclass(frozen=True)
class DecisionRow:
    """One row of the view ``iel_decisions``."""

    study: str
    cell_key: str
    baseline_key: str
    metric: str
    n: int
    estimate: float | None
    cs_low: float | None
    cs_high: float | None
    decision: str
    decided_at_n: int | None
    method: str
    alpha: float
    margin: float
    updated_at: datetime | None


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def save_decisions(db: ResultsDB, study: str, decisions: Sequence[CellDecision]) -> None:
    """Write the study's current decisions (one row per comparison and metric; earlier rows replaced)."""

    def run(conn: Connection) -> None:
        study_id = db._study_id(conn, study)
        ids = dict(conn.execute(select(Cell.cell_key, Cell.id).where(Cell.study_id == study_id)).all())
        now = utcnow()
        rows = [
            {
                "cell_id": ids[d.cell],
                "metric": d.metric,
                "baseline_cell_id": ids[d.baseline_cell],
                "n": d.decision.n,
                "estimate": _finite(d.decision.estimate),
                "cs_low": _finite(d.decision.cs_low),
                "cs_high": _finite(d.decision.cs_high),
                "decision": d.decision.decision.value,
                "decided_at_n": d.decision.decided_at_n,
                "method": str(d.decision.method.value),
                "alpha": d.decision.alpha,
                "margin": d.decision.margin,
                "updated_at": now,
            }
            for d in decisions
            if d.cell in ids and d.baseline_cell in ids
        ]
        db._upsert(conn, Comparison.__table__, rows, ("cell_id", "metric"))

    db._tx(run)


def load_decisions(db: ResultsDB, study: str) -> list[DecisionRow]:
    """The stored decisions of ``study`` (the view ``iel_decisions``), by cell key."""
    q = text("SELECT * FROM iel_decisions WHERE study = :study ORDER BY cell_key, metric")

    def run(conn: Connection) -> list[DecisionRow]:
        out = []
        for r in conn.execute(q, {"study": study}).mappings():
            values = dict(r)
            stamp = values.get("updated_at")
            if isinstance(stamp, str):
                values["updated_at"] = datetime.fromisoformat(stamp)
            out.append(DecisionRow(**values))
        return out

    return db._tx(run)
