"""Reads of the results database: trials, studies, cells, counts, aggregates, read-only SQL."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import Connection, and_, func, select

from ielcore.errors import UnknownNameError
from orchestrator.db import engine as _eng
from orchestrator.db.base import _MISSING, DBCore, _dumps, _factor, _stats
from orchestrator.db.models import (
    Cell,
    EpochMetric,
    FinalMetric,
    Study,
    Trial,
)
from orchestrator.db.records import CellRecord, StudyRecord, TrialRecord, TrialState


class Reads(DBCore):
    """Every read returns plain frozen records or dicts, never live ORM rows."""

    def get_trial(self, trial_id: int) -> TrialRecord:
        return self._tx(lambda conn: self._get_trial(conn, trial_id))

    def find_complete_by_hash(
        self, trial_hash: str, exclude_study_id: int | None = None
    ) -> TrialRecord | None:
        """An original (not itself reused) COMPLETE trial with this hash, in any study (the oldest)."""

        def run(conn: Connection) -> TrialRecord | None:
            q = select(Trial.id).where(
                Trial.trial_hash == trial_hash,
                Trial.state == TrialState.COMPLETE.value,
                Trial.reused_from_id.is_(None),
            )
            if exclude_study_id is not None:
                q = q.where(Trial.study_id != exclude_study_id)
            tid = conn.execute(q.order_by(Trial.id).limit(1)).scalar()
            return None if tid is None else self._get_trial(conn, tid)

        return self._tx(run)

    def trials(self, study_name: str, states: Collection[TrialState] | None = None) -> list[TrialRecord]:
        """The study's trials (optionally only those in ``states``), by id."""

        def run(conn: Connection) -> list[TrialRecord]:
            where = [Trial.study_id == self._study_id(conn, study_name)]
            if states is not None:
                where.append(Trial.state.in_([TrialState(s).value for s in states]))
            return self._load_trials(conn, *where)

        return self._tx(run)

    def stale_running(self, study_name: str) -> list[TrialRecord]:
        """RUNNING trials; at driver start-up these were left by a driver that died."""
        return self.trials(study_name, [TrialState.RUNNING])

    def epoch_metrics(self, trial_id: int) -> list[tuple[int, str, float | None]]:
        """``(epoch, name, value)`` rows sorted by epoch then name."""
        q = select(EpochMetric.epoch, EpochMetric.name, EpochMetric.value)
        q = q.where(EpochMetric.trial_id == trial_id).order_by(EpochMetric.epoch, EpochMetric.name)
        return self._tx(lambda conn: [(e, n, v) for e, n, v in conn.execute(q)])

    def _counts(self, conn: Connection, study_id: int | None = None) -> dict[int, dict[str, int]]:
        q = select(Trial.study_id, Trial.state, func.count(), func.count(Trial.reused_from_id))
        if study_id is not None:
            q = q.where(Trial.study_id == study_id)
        out: dict[int, dict[str, int]] = {}
        for sid, state, n, n_reused in conn.execute(q.group_by(Trial.study_id, Trial.state)):
            counts = out.setdefault(sid, {s.value: 0 for s in TrialState} | {"reused": 0})
            counts[state] = n
            counts["reused"] += n_reused
        return out

    def _studies(self, conn: Connection, name: str | None = None) -> list[StudyRecord]:
        q = select(*Study.__table__.c).order_by(Study.name)
        if name is not None:
            q = q.where(Study.name == name)
        studies = conn.execute(q).all()
        counts = self._counts(conn, studies[0].id if name is not None and studies else None)
        empty = {s.value: 0 for s in TrialState} | {"reused": 0}
        return [
            StudyRecord(
                id=r.id,
                name=r.name,
                description=r.description,
                spec=json.loads(r.spec_json),
                created_at=r.created_at,
                updated_at=r.updated_at,
                counts=counts.get(r.id, dict(empty)),
            )
            for r in studies
        ]

    def studies(self) -> list[StudyRecord]:
        """Every study with its trial counts by state, by name."""
        return self._tx(self._studies)

    def study(self, name: str) -> StudyRecord | None:
        """The study named ``name`` with its counts, or None."""
        found = self._tx(lambda conn: self._studies(conn, name))
        return found[0] if found else None

    def cells(self, study_name: str) -> list[CellRecord]:
        def run(conn: Connection) -> list[CellRecord]:
            q = select(*Cell.__table__.c).where(Cell.study_id == self._study_id(conn, study_name))
            return [
                CellRecord(
                    id=r.id,
                    study_id=r.study_id,
                    cell_key=r.cell_key,
                    factors=json.loads(r.factors_json),
                    is_baseline=bool(r.is_baseline),
                    optuna_study_name=r.optuna_study_name,
                )
                for r in conn.execute(q.order_by(Cell.id))
            ]

        return self._tx(run)

    def status_counts(self, study_name: str) -> dict[str, int]:
        """Number of trials per state, plus ``"reused"`` (COMPLETE trials copied from another)."""

        def run(conn: Connection) -> dict[str, int]:
            sid = self._study_id(conn, study_name)
            return self._counts(conn, sid).get(sid, {s.value: 0 for s in TrialState} | {"reused": 0})

        return self._tx(run)

    def aggregate(
        self, study_name: str, metric: str = "dice", group_by: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """Statistics of a final metric over COMPLETE trials (reused ones included), per cell or per
        group of factor values.

        Each row holds the group's keys (per cell: ``cell_key``, ``is_baseline`` and the cell's factors;
        with ``group_by``: those dotted factor paths), then ``n``, ``mean``, ``std`` (sample standard
        deviation, ``sqrt(sum((x - mean)^2) / (n - 1))``, None when n < 2), ``min`` and ``max`` (None when
        n = 0).  Missing or non-finite values are left out.  Rows follow the cells' creation order.
        """

        def run(conn: Connection) -> tuple[Sequence[Any], Sequence[Any]]:
            sid = self._study_id(conn, study_name)
            cells = conn.execute(
                select(Cell.id, Cell.cell_key, Cell.factors_json, Cell.is_baseline)
                .where(Cell.study_id == sid)
                .order_by(Cell.id)
            ).all()
            on = and_(FinalMetric.trial_id == Trial.id, FinalMetric.name == metric)
            values = conn.execute(
                select(Trial.cell_id, FinalMetric.value)
                .join(FinalMetric, on)
                .where(Trial.study_id == sid, Trial.state == TrialState.COMPLETE.value)
            ).all()
            return cells, values

        cells, values = self._tx(run)
        by_cell: dict[int, list[float]] = {}
        for cell_id, value in values:
            if value is not None:
                by_cell.setdefault(cell_id, []).append(value)
        factors = {c.id: json.loads(c.factors_json) for c in cells}
        if group_by is None:
            return [
                {"cell_key": c.cell_key, "is_baseline": bool(c.is_baseline), **factors[c.id]}
                | _stats(by_cell.get(c.id, []))
                for c in cells
            ]
        for name in group_by:
            if cells and all(_factor(f, name) is _MISSING for f in factors.values()):
                valid = sorted({k for f in factors.values() for k in f})
                raise UnknownNameError(
                    f"unknown factor {name!r} in study {study_name!r}; valid factors are: {', '.join(valid)}",
                    path="group_by",
                )
        groups: dict[str, tuple[dict[str, Any], list[float]]] = {}
        for c in cells:
            keys = {}
            for name in group_by:
                v = _factor(factors[c.id], name)
                keys[name] = None if v is _MISSING else v
            _, vals = groups.setdefault(_dumps(list(keys.values())), (keys, []))
            vals.extend(by_cell.get(c.id, []))
        return [keys | _stats(vals) for keys, vals in groups.values()]

    def readonly_query(self, sql: str, limit: int | None = None) -> tuple[list[str], list[tuple]]:
        """Run one read-only SQL statement (see :func:`orchestrator.db.engine.readonly_query`); writes
        raise :class:`~orchestrator.db.engine.QueryRefused` and change nothing."""
        return _eng.readonly_query(self.engine, sql, limit)
