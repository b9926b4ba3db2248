"""The numbers of a study report: per-cell summaries over seeds and paired comparisons with the baseline arm.

Vocabulary (see :func:`assign_rows`):

- an *arm* is what the study ablates: the values of the *arm factors*, by default the keys of the study's
  ``baseline`` (``iel.type`` for ``baseline: {iel.type: none}``), plus any factor that only applies to
  the non-baseline arms (``iel.steps`` of a heat IEL);
- a *row* is a group of cells that differ only in their arm: one baseline cell and the cells that agree
  with it on every other factor they both have (``noise.rate=0.4``).  Within a row the best arm of each
  metric is marked; every other arm is compared with the row's baseline cell, paired on seed.

Statistics (:mod:`orchestrator.stats.cells`, the one path ``iel results`` uses too): per cell n seeds,
mean, sample std (ddof 1) and the 95 % t interval ``mean ± t_{0.975,n-1} s/√n`` clipped to the metric's
range (percentile bootstrap on request).  Per comparison the mean of the paired differences
``d_i = arm_i − baseline_i`` (same seed) with its interval, the paired t-test and the Wilcoxon signed-rank
p-values, each Holm-corrected within that metric's comparisons, and Cohen's ``d_z = mean(d) / sd(d)``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from orchestrator.db import ResultsDB, TrialRecord, TrialState
from orchestrator.stats.cells import (
    CellInput,
    CellStat,
    Comparison,
    compare_cells,
    summarise_cells,
)
from orchestrator.stats.cells import direction as direction  # re-exported for the plots

REPORT_METRICS: tuple[str, ...] = ("dice", "miou", "pixel_acc")
"""Metrics every report shows; :data:`OPTIONAL_METRICS` are added when the trials recorded them."""
OPTIONAL_METRICS: tuple[str, ...] = ("solidity", "nonconvex_share", "object_solidity", "nonconvex_area_share")


def fmt_value(value: Any) -> str:
    """A factor value as cell keys write it: ``0.4``, ``heat``, ``null``."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def label(factors: Mapping[str, Any], paths: Sequence[str]) -> str:
    return ",".join(f"{p}={fmt_value(factors[p])}" for p in paths if p in factors)


@dataclass(frozen=True)
class CellData:
    """One cell with its COMPLETE trials and its place in the report's rows."""

    key: str
    factors: dict[str, Any]
    is_baseline: bool
    row: str  # label of its row ("noise.rate=0.4"; "all" when the rows have no factor)
    arm: str  # label of its arm within the row ("iel.type=heat,iel.steps=20")
    baseline_key: str | None  # the row's baseline cell (None for a baseline cell or a row without one)
    optuna_study_name: str | None
    trials: tuple[TrialRecord, ...]


@dataclass(frozen=True)
class StudyData:
    """Everything a report needs from the results database, read once."""

    name: str
    description: str
    spec: dict[str, Any]
    factor_order: tuple[str, ...]
    arm_factors: tuple[str, ...]
    cells: tuple[CellData, ...]
    metrics: tuple[str, ...]
    searched: bool
    counts: dict[str, int]
    incomplete: tuple[TrialRecord, ...] = ()  # FAILED and PRUNED trials (left out of every statistic)

    def cell(self, key: str) -> CellData:
        for c in self.cells:
            if c.key == key:
                return c
        raise KeyError(f"no cell {key!r} in study {self.name!r}; cells: {[c.key for c in self.cells]}")

    @property
    def rows(self) -> list[str]:
        """Row labels in plan order."""
        return list(dict.fromkeys(c.row for c in self.cells))


def factor_order(cell_keys: Sequence[str], paths: Sequence[str]) -> tuple[str, ...]:
    """The study's factor order, read off the cell keys (the records store factors sorted by name)."""
    pos: dict[str, float] = {}
    for p in paths:
        found = [k.find(f"{p}=") for k in cell_keys if f"{p}=" in k]
        pos[p] = min(found) if found else math.inf
    return tuple(sorted(paths, key=lambda p: (pos[p], p)))


def assign_rows(
    cells: Sequence[tuple[str, Mapping[str, Any], bool]],
    arm_factors: Sequence[str],
    order: Sequence[str],
) -> dict[str, tuple[str, str, str | None]]:
    """``cell key -> (row label, arm label, baseline cell key or None)`` for ``(key, factors, is_baseline)``.

    A baseline cell opens a row keyed by its non-arm factors.  Every other cell joins the row of the
    baseline cell that agrees with it on each non-arm factor both have (the one sharing the most factors
    when several do); its arm label is its factors minus the row's.  A cell no baseline cell agrees with
    forms a row of its own non-arm factors (with no comparison).  Without arm factors all cells share one
    row, labelled ``all``.
    """
    arm = set(arm_factors)
    out: dict[str, tuple[str, str, str | None]] = {}
    if not arm:
        return {k: ("all", label(f, order) or k, None) for k, f, _ in cells}
    bases = [(k, f) for k, f, b in cells if b]
    for key, factors, is_baseline in cells:
        if is_baseline:
            row_paths = [p for p in order if p in factors and p not in arm]
            out[key] = (
                label(factors, row_paths) or "all",
                label(factors, [p for p in order if p in arm]),
                None,
            )
            continue
        best: tuple[int, str, list[str]] | None = None
        for bkey, bf in bases:
            shared = [p for p in order if p in bf and p in factors and p not in arm]
            if all(factors[p] == bf[p] for p in shared) and (best is None or len(shared) > best[0]):
                best = (len(shared), bkey, [p for p in order if p in bf and p not in arm])
        if best is None:
            row_paths = [p for p in order if p in factors and p not in arm]
            out[key] = (
                label(factors, row_paths) or "all",
                label(factors, [p for p in order if p in arm]),
                None,
            )
        else:
            _, bkey, row_paths = best
            bf = dict(bases)[bkey]
            arm_paths = [p for p in order if p in factors and p not in row_paths]
            out[key] = (label(bf, row_paths) or "all", label(factors, arm_paths) or "(base)", bkey)
    return out


def load_study_data(db: ResultsDB, study: str, arm_factors: Sequence[str] | None = None) -> StudyData:
    """Read a study's cells and COMPLETE trials; ``arm_factors`` defaults to the baseline's keys."""
    from ielcore.errors import IELError

    record = db.study(study)
    if record is None:
        names = [s.name for s in db.studies()]
        raise IELError(f"no study named {study!r} in the results database; studies: {names or 'none'}")
    spec = dict(record.spec or {})
    baseline = dict(spec.get("baseline") or {})
    cell_records = db.cells(study)
    paths = sorted({p for c in cell_records for p in c.factors})
    order = factor_order([c.cell_key for c in cell_records], paths)
    arms = tuple(arm_factors) if arm_factors is not None else tuple(p for p in order if p in baseline)
    unknown = [a for a in arms if a not in paths]
    if unknown:
        raise IELError(
            f"arm factor(s) {unknown} are not factors of study {study!r}; its factors: {list(order)}"
        )
    rows = assign_rows([(c.cell_key, c.factors, c.is_baseline) for c in cell_records], arms, order)
    complete = db.trials(study, states=[TrialState.COMPLETE])
    by_cell: dict[str, list[TrialRecord]] = {}
    for t in complete:
        by_cell.setdefault(t.cell_key, []).append(t)
    present = {m for t in complete for m, v in t.final_metrics.items() if v is not None}
    metrics = tuple(m for m in (*REPORT_METRICS, *OPTIONAL_METRICS) if m in present)
    cells = tuple(
        CellData(
            key=c.cell_key,
            factors=dict(c.factors),
            is_baseline=c.is_baseline,
            row=rows[c.cell_key][0],
            arm=rows[c.cell_key][1],
            baseline_key=rows[c.cell_key][2],
            optuna_study_name=c.optuna_study_name,
            trials=tuple(sorted(by_cell.get(c.cell_key, []), key=lambda t: (t.seed, t.id))),
        )
        for c in cell_records
    )
    return StudyData(
        name=study,
        description=record.description,
        spec=spec,
        factor_order=order,
        arm_factors=arms,
        cells=cells,
        metrics=metrics,
        searched=bool(spec.get("search")),
        counts=dict(record.counts),
        incomplete=tuple(db.trials(study, states=[TrialState.FAILED, TrialState.PRUNED])),
    )


def cell_inputs(data: StudyData) -> list[CellInput]:
    """The study's cells as the statistics path reads them (final values by seed, plan order)."""
    return [
        CellInput(
            key=c.key,
            row=c.row,
            arm=c.arm,
            is_baseline=c.is_baseline,
            baseline_key=c.baseline_key,
            trials=tuple((t.seed, dict(t.final_metrics)) for t in c.trials),
        )
        for c in data.cells
    ]


def values(cell: CellData, metric: str) -> list[float]:
    """The cell's finite values of ``metric`` (a trial without one is left out, never counted as 0)."""
    return [
        float(v) for t in cell.trials if (v := t.final_metrics.get(metric)) is not None and math.isfinite(v)
    ]


def summarise(data: StudyData, bootstrap: bool = False) -> list[CellStat]:
    """One :class:`CellStat` per cell and metric (cells without a finished trial are left out)."""
    return summarise_cells(cell_inputs(data), data.metrics, bootstrap=bootstrap)


def compare(data: StudyData, bootstrap: bool = False) -> list[Comparison]:
    """Every non-baseline cell against its row's baseline cell, per metric, paired on seed; Holm's
    correction runs within each metric's comparisons (separately for the t and the Wilcoxon p-values).

    A searched study gives none: its cells hold search trials with different parameters, not replicates.
    """
    return compare_cells(cell_inputs(data), data.metrics, searched=data.searched, bootstrap=bootstrap)


def to_json(data: StudyData, stats: Sequence[CellStat], comparisons: Sequence[Comparison]) -> dict[str, Any]:
    """The report's numbers as one JSON-able document (written as ``report.json``)."""
    return {
        "study": data.name,
        "arm_factors": list(data.arm_factors),
        "metrics": list(data.metrics),
        "searched": data.searched,
        "counts": data.counts,
        "cells": [
            {
                "cell": c.key,
                "row": c.row,
                "arm": c.arm,
                "is_baseline": c.is_baseline,
                "baseline_cell": c.baseline_key,
                "factors": c.factors,
                "seeds": [t.seed for t in c.trials],
            }
            for c in data.cells
        ],
        "summaries": [asdict(s) for s in stats],
        "comparisons": [asdict(c) for c in comparisons],
    }
