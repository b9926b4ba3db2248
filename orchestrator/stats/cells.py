"""The one statistics path: every per-cell summary, paired comparison, multiplicity correction, "best" and
decision that any output shows (``iel submit``'s table, ``iel results``, ``iel report``, the database, MLflow).

Input is plain data (:class:`CellInput`: a cell, its row and its trials' final values by seed), so the
callers only read their sources; the rules live here once:

- a missing metric is missing: a trial without a finite value is left out (never averaged as 0);
- per cell: n, mean, sample std, 95 % t interval clipped to the metric's range (``ielcore.metric_info``);
- "best" is the best mean of each row (highest, lowest for a metric to minimise; ties all marked);
- comparisons pair an arm with its row's baseline cell *on seed only* (the first trial of a seed); a
  searched study's cells hold search trials with different parameters, not replicates, so it gets none;
- Holm's correction runs within one metric's comparisons (the family of the primary metric is the one a
  study's conclusions rest on), never across every metric;
- decisions (:func:`decide_cells`) use the anytime-valid CS of :mod:`.sequential`, Bonferroni over the
  study's comparisons of the decided metric.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from ielcore.metric_info import metric_info
from orchestrator.stats.basic import bootstrap_interval, describe, holm, paired
from orchestrator.stats.sequential import Decision, Method, decide


@dataclass(frozen=True)
class CellInput:
    """A cell and its COMPLETE trials: ``trials`` holds ``(seed, {metric: value or None})`` per trial."""

    key: str
    row: str
    arm: str
    is_baseline: bool
    baseline_key: str | None  # the row's baseline cell (None for a baseline or a row without one)
    trials: tuple[tuple[int, Mapping[str, float | None]], ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class CellStat:
    cell: str
    row: str
    arm: str
    metric: str
    is_baseline: bool
    n: int
    mean: float
    std: float | None
    ci_low: float | None
    ci_high: float | None
    best: bool  # best mean of the metric within its row, by the metric's direction (ties all marked)


@dataclass(frozen=True)
class Comparison:
    cell: str
    baseline_cell: str
    row: str
    arm: str
    metric: str
    n: int  # number of seed pairs
    mean_diff: float  # mean of arm - baseline
    ci_low: float | None
    ci_high: float | None
    p_t: float | None
    p_wilcoxon: float | None
    p_t_holm: float | None  # Holm within this metric's comparisons
    p_wilcoxon_holm: float | None
    effect_size: float | None  # Cohen's d_z


@dataclass(frozen=True)
class CellDecision:
    cell: str
    baseline_cell: str
    row: str
    arm: str
    metric: str
    decision: Decision


def direction(metric: str) -> str:
    """``maximize`` or ``minimize`` from the metric registry (unknown metrics maximise)."""
    info = metric_info(metric)
    return info.direction if info else "maximize"


def values(cell: CellInput, metric: str) -> list[float]:
    """The cell's finite values of ``metric`` (missing ones left out)."""
    return [float(v) for _, m in cell.trials if (v := m.get(metric)) is not None and math.isfinite(v)]


def by_seed(cell: CellInput, metric: str) -> dict[int, float]:
    """Seed -> value of the first trial of that seed with a finite value."""
    out: dict[int, float] = {}
    for seed, m in cell.trials:
        v = m.get(metric)
        if v is not None and math.isfinite(v) and seed not in out:
            out[seed] = float(v)
    return out


def _clip(v: float | None, low: float, high: float) -> float | None:
    return None if v is None else min(max(v, low), high)


def _range(metric: str) -> tuple[float, float]:
    info = metric_info(metric)
    return (info.low, info.high) if info else (-math.inf, math.inf)


def summarise_cells(
    cells: Sequence[CellInput], metrics: Sequence[str], bootstrap: bool = False
) -> list[CellStat]:
    """One :class:`CellStat` per metric and cell with at least one value (metric-major, cell order kept)."""
    out: list[CellStat] = []
    for metric in metrics:
        low, high = _range(metric)
        sign = 1.0 if direction(metric) == "maximize" else -1.0
        summaries = {c.key: describe(x, bootstrap=bootstrap) for c in cells if (x := values(c, metric))}
        best_of_row: dict[str, float] = {}
        for c in cells:
            if c.key in summaries:
                best_of_row[c.row] = max(best_of_row.get(c.row, -math.inf), sign * summaries[c.key].mean)
        for c in cells:
            s = summaries.get(c.key)
            if s is None:
                continue
            out.append(
                CellStat(
                    cell=c.key,
                    row=c.row,
                    arm=c.arm,
                    metric=metric,
                    is_baseline=c.is_baseline,
                    n=s.n,
                    mean=s.mean,
                    std=s.std,
                    ci_low=_clip(s.ci_low, low, high),
                    ci_high=_clip(s.ci_high, low, high),
                    best=sign * s.mean == best_of_row[c.row],
                )
            )
    return out


def paired_values(arm: CellInput, base: CellInput, metric: str) -> tuple[list[int], list[float], list[float]]:
    """Seeds both cells finished (ascending) with the arm's and the baseline's values."""
    a, b = by_seed(arm, metric), by_seed(base, metric)
    seeds = sorted(set(a) & set(b))
    return seeds, [a[s] for s in seeds], [b[s] for s in seeds]


def compare_cells(
    cells: Sequence[CellInput], metrics: Sequence[str], searched: bool = False, bootstrap: bool = False
) -> list[Comparison]:
    """Every non-baseline cell against its row's baseline, per metric, paired on seed; Holm per metric.

    A searched study gives none (its trials are not replicates).
    """
    if searched:
        return []
    by_key = {c.key: c for c in cells}
    out: list[Comparison] = []
    for metric in metrics:
        low, high = _range(metric)
        raw: list[Comparison] = []
        for c in cells:
            if c.baseline_key is None or c.baseline_key not in by_key:
                continue
            seeds, a, b = paired_values(c, by_key[c.baseline_key], metric)
            if not seeds:
                continue
            p = paired(a, b)
            ci_low, ci_high = p.ci_low, p.ci_high
            if bootstrap:
                ci_low, ci_high = bootstrap_interval([x - y for x, y in zip(a, b)])
            raw.append(
                Comparison(
                    cell=c.key,
                    baseline_cell=c.baseline_key,
                    row=c.row,
                    arm=c.arm,
                    metric=metric,
                    n=p.n,
                    mean_diff=p.mean_diff,
                    ci_low=_clip(ci_low, low - high, high - low),
                    ci_high=_clip(ci_high, low - high, high - low),
                    p_t=p.p_t,
                    p_wilcoxon=p.p_wilcoxon,
                    p_t_holm=None,
                    p_wilcoxon_holm=None,
                    effect_size=p.effect_size,
                )
            )
        t_adj = holm([r.p_t for r in raw])
        w_adj = holm([r.p_wilcoxon for r in raw])
        out += [replace(r, p_t_holm=t, p_wilcoxon_holm=w) for r, t, w in zip(raw, t_adj, w_adj)]
    return out


def comparison_pairs(cells: Sequence[CellInput]) -> list[tuple[CellInput, CellInput]]:
    """``(arm, baseline)`` for every cell that has a baseline in its row: the family a study decides."""
    by_key = {c.key: c for c in cells}
    return [
        (c, by_key[c.baseline_key]) for c in cells if c.baseline_key is not None and c.baseline_key in by_key
    ]


def decide_cells(
    cells: Sequence[CellInput],
    *,
    metric: str,
    margin: float,
    alpha: float,
    method: Method | str,
    family_size: int | None = None,
) -> list[CellDecision]:
    """The anytime-valid decision of every comparison on ``metric``, from its pairs in seed order.

    ``family_size`` defaults to the number of comparisons (Bonferroni: each runs at alpha / family).  The
    metric's direction and range come from ``ielcore.metric_info``.
    """
    pairs = comparison_pairs(cells)
    info = metric_info(metric)
    bounds = (info.low, info.high) if info else None
    dirn = direction(metric)
    m = family_size if family_size is not None else max(len(pairs), 1)
    out: list[CellDecision] = []
    for arm, base in pairs:
        _, a, b = paired_values(arm, base, metric)
        d = decide(
            [x - y for x, y in zip(a, b)],
            margin=margin,
            alpha=alpha,
            method=method,
            direction=dirn,
            bounds=bounds,
            family_size=m,
        )
        out.append(CellDecision(arm.key, base.key, arm.row, arm.arm, metric, d))
    return out
