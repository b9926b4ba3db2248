"""Figures of a study report (matplotlib, Agg backend, PNG).

Each function writes one PNG and returns True, or returns False without writing when the study has
nothing to show for it (no ``noise.rate`` factor, a single epoch, no searched parameter, ...).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ielcore.metric_info import metric_info
from orchestrator.report.seedplots import (
    Curves,
    build_cell_results,
    build_training_curves,
    metric_limits,
    plot_cell_results,
    plot_training_curves,
)
from orchestrator.report.tables import CellStat, StudyData, direction, fmt_value, label, values

__all__ = [
    "Curves",
    "build_cell_results",
    "build_metric_vs",
    "build_training_curves",
    "default_heatmap_factors",
    "factor_values",
    "plot_cell_results",
    "plot_heatmap",
    "plot_importances",
    "plot_metric_vs",
    "plot_pareto",
    "plot_training_curves",
]

MAX_PANELS = 6  # rows / cells shown as separate panels; the rest are left out (the tables have them)
_DPI = 80


def _clip(metric: str, value: float) -> float:
    """``value`` clipped to the metric's range (an interval band never leaves what the metric can take)."""
    info = metric_info(metric)
    clipped = None if info is None else info.clip(value)
    return value if clipped is None else clipped


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)
    _plt().close(fig)


def _sort_key(v: Any) -> tuple[int, Any]:
    if isinstance(v, bool) or v is None:
        return (2, str(v))
    if isinstance(v, int | float):
        return (0, v)
    return (1, str(v))


def factor_values(data: StudyData, factor: str) -> list[Any]:
    """The distinct values ``factor`` takes over the study's cells, sorted (cells without it left out)."""
    seen: dict[str, Any] = {}
    for c in data.cells:
        if factor in c.factors:
            seen.setdefault(fmt_value(c.factors[factor]), c.factors[factor])
    return sorted(seen.values(), key=_sort_key)


def _numeric(xs: Sequence[Any]) -> bool:
    return all(isinstance(x, int | float) and not isinstance(x, bool) for x in xs)


def _band(s: CellStat, metric: str) -> tuple[float, float]:
    """A cell's interval clipped to the metric's range (NaN where there is none)."""
    if s.ci_low is None or s.ci_high is None:
        return (np.nan, np.nan)
    return (_clip(metric, s.ci_low), _clip(metric, s.ci_high))


def _metric_vs_panel(
    ax: Any,
    data: StudyData,
    by: Mapping[tuple[str, str], CellStat],
    factor: str,
    metric: str,
    colours: list[str],
) -> list[float]:
    """One metric against ``factor``: a line and band per series, a dashed line and band per cell without the
    factor; returns every value drawn (for the axis limits)."""
    series: dict[str, tuple[str, list[tuple[float, CellStat]]]] = {}
    flat: list[tuple[str, str, CellStat]] = []
    for c in data.cells:
        s = by.get((c.key, metric))
        if s is None:
            continue
        rest = label(c.factors, [p for p in data.factor_order if p != factor]) or "all"
        ckey = c.arm if f"{factor}=" in c.row else c.row
        if factor in c.factors:
            series.setdefault(rest, (ckey, []))[1].append((float(c.factors[factor]), s))
        else:
            flat.append((rest, ckey, s))
    drawn: list[float] = []
    for name, (ckey, pts) in series.items():
        pts.sort(key=lambda p: p[0])
        x = np.array([p[0] for p in pts])
        bands = np.array([_band(p[1], metric) for p in pts], dtype=float)
        color = f"C{colours.index(ckey) % 10}"
        ax.plot(x, [p[1].mean for p in pts], "o-", color=color, label=name, lw=1.5, ms=4)
        ax.fill_between(x, bands[:, 0], bands[:, 1], color=color, alpha=0.18, lw=0)
        drawn += [p[1].mean for p in pts] + [float(v) for v in bands.flat]
    for name, ckey, s in flat:
        color = f"C{colours.index(ckey) % 10}"
        ax.axhline(s.mean, color=color, ls="--", lw=1.2, label=name)
        low, high = _band(s, metric)
        if not math.isnan(low):
            ax.axhspan(low, high, color=color, alpha=0.08, lw=0)
        drawn += [s.mean, low, high]
    return drawn


def _legend(axes: Sequence[Any], n_used: int) -> None:
    """The first panel's legend in the first unused panel, else in the last used one."""
    handles, labels = axes[0].get_legend_handles_labels()
    if not handles:
        return
    if len(axes) > n_used:
        axes[n_used].legend(handles, labels, fontsize=8, loc="center")
    else:
        axes[n_used - 1].legend(handles, labels, fontsize=7, loc="best")


def build_metric_vs(data: StudyData, stats: Sequence[CellStat], factor: str) -> Any | None:
    """Mean of each metric against a numeric factor, one line per series with its 95 % CI band (clipped to the
    metric's range, as is the axis).  A series is a set of cells equal on every other factor; cells without
    the factor (the baseline arm's cells for ``iel.steps``) are dashed horizontal lines with their band."""
    xs = factor_values(data, factor)
    if len(xs) < 2 or not _numeric(xs):
        return None
    with_stats = {s.cell for s in stats}
    if not any(c.key in with_stats for c in data.cells if factor in c.factors):
        return None
    metrics = list(data.metrics)
    ncols = min(3, len(metrics))
    nrows = -(-len(metrics) // ncols)
    fig, grid = _plt().subplots(nrows, ncols, figsize=(4.6 * ncols, 3.4 * nrows), squeeze=False)
    axes = list(grid.flat)
    for ax in axes[len(metrics) :]:
        ax.axis("off")
    by = {(s.cell, s.metric): s for s in stats}
    # Colour by arm when the factor separates rows (noise.rate), else by row (iel.steps within an arm).
    colours = list(dict.fromkeys(c.arm if f"{factor}=" in c.row else c.row for c in data.cells))
    for ax, metric in zip(axes, metrics):
        limits = metric_limits(metric, _metric_vs_panel(ax, data, by, factor, metric, colours))
        if limits is not None:
            ax.set_ylim(*limits)
        ax.set_xlabel(factor)
        ax.set_xticks([float(x) for x in xs])
        ax.set_ylabel(f"{metric} ({'higher' if direction(metric) == 'maximize' else 'lower'} is better)")
        ax.grid(alpha=0.3)
    _legend(axes, len(metrics))
    fig.suptitle(f"{data.name}: final metrics vs {factor} (mean over seeds, 95 % CI)", fontsize=10)
    return fig


def plot_metric_vs(data: StudyData, stats: Sequence[CellStat], factor: str, path: str | Path) -> bool:
    fig = build_metric_vs(data, stats, factor)
    if fig is None:
        return False
    _save(fig, path)
    return True


def default_heatmap_factors(data: StudyData) -> tuple[str, str] | None:
    """The first two factors (study order) that take at least two values, or None."""
    varied = [p for p in data.factor_order if len({fmt_value(c.factors.get(p, "–")) for c in data.cells}) > 1]
    return (varied[0], varied[1]) if len(varied) >= 2 else None


def plot_heatmap(data: StudyData, metric: str, x: str, y: str, path: str | Path) -> bool:
    """Mean ``metric`` over all finished trials of the cells with each pair of values of ``x`` and ``y``
    (pooled over the other factors; ``–`` where a cell does not have the factor)."""
    from ielcore.errors import IELError

    for f in (x, y):
        if f not in data.factor_order:
            raise IELError(
                f"heatmap factor {f!r} is not a factor of study {data.name!r}; its factors: "
                f"{list(data.factor_order)}"
            )
    pooled: dict[tuple[str, str], list[float]] = {}
    for c in data.cells:
        key = (fmt_value(c.factors.get(x, "–")), fmt_value(c.factors.get(y, "–")))
        pooled.setdefault(key, []).extend(values(c, metric))
    xs = sorted({k[0] for k in pooled}, key=lambda v: _sort_key(_num(v)))
    ys = sorted({k[1] for k in pooled}, key=lambda v: _sort_key(_num(v)))
    if len(xs) * len(ys) < 2:
        return False
    grid = np.full((len(ys), len(xs)), np.nan)
    for (vx, vy), vals in pooled.items():
        if vals:
            grid[ys.index(vy), xs.index(vx)] = float(np.mean(vals))
    if np.all(np.isnan(grid)):
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(1.2 * len(xs) + 2.5, 0.7 * len(ys) + 1.8))
    cmap = "viridis" if direction(metric) == "maximize" else "viridis_r"
    im = ax.imshow(grid, cmap=cmap, aspect="auto")
    ax.set_xticks(range(len(xs)), xs)
    ax.set_yticks(range(len(ys)), ys)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    _annotate(ax, grid, cmap)
    fig.colorbar(im, ax=ax, label=metric)
    ax.set_title(f"{data.name}: mean final {metric}", fontsize=10)
    _save(fig, path)
    return True


def _annotate(ax: Any, grid: np.ndarray, cmap: str) -> None:
    """Write each cell's value on the heatmap, dark on bright colours and light on dark ones."""
    lo, hi = np.nanmin(grid), np.nanmax(grid)
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            if math.isnan(grid[i, j]):
                continue
            bright = hi > lo and (grid[i, j] - lo) / (hi - lo) > 0.6
            color = "black" if bright != (cmap == "viridis_r") else "white"
            ax.text(j, i, f"{grid[i, j]:.3f}", ha="center", va="center", fontsize=8, color=color)


def _num(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text


def plot_importances(importances: Mapping[str, Mapping[str, float]], path: str | Path) -> bool:
    """Optuna's parameter importances, one horizontal bar panel per cell (at most :data:`MAX_PANELS`)."""
    items = [(k, v) for k, v in importances.items() if v][:MAX_PANELS]
    if not items:
        return False
    plt = _plt()
    fig, axes = plt.subplots(
        1, len(items), figsize=(4.2 * len(items), 0.5 * max(len(v) for _, v in items) + 1.6), squeeze=False
    )
    for ax, (cell, imp) in zip(axes[0], items):
        names = list(imp)[::-1]
        ax.barh(names, [imp[n] for n in names], color="C0")
        ax.set_xlim(0, 1)
        ax.set_xlabel("importance (PED-ANOVA, first objective)")
        ax.set_title(cell, fontsize=8)
    fig.suptitle("Optuna parameter importances per cell", fontsize=10)
    _save(fig, path)
    return True


Front = tuple[Sequence[Sequence[float]], Sequence[Sequence[float]]]
"""(values of every complete trial, values of the Pareto-optimal trials)."""


def plot_pareto(fronts: Mapping[str, Front], objectives: Sequence[str], path: str | Path) -> bool:
    """The first two objectives of every complete trial, Pareto-optimal trials highlighted, per cell."""
    items = [(k, v) for k, v in fronts.items() if len(v[0]) > 0][:MAX_PANELS]
    if not items or len(objectives) < 2:
        return False
    plt = _plt()
    fig, axes = plt.subplots(1, len(items), figsize=(4.2 * len(items), 3.6), squeeze=False)
    for ax, (cell, (all_vals, best)) in zip(axes[0], items):
        a = np.asarray(all_vals, dtype=float)
        ax.scatter(a[:, 0], a[:, 1], s=14, color="0.6", label="trials")
        if len(best):
            b = np.asarray(best, dtype=float)
            b = b[np.argsort(b[:, 0])]
            ax.plot(b[:, 0], b[:, 1], "o-", color="C3", ms=5, label="Pareto front")
        ax.set_xlabel(objectives[0])
        ax.set_ylabel(objectives[1])
        ax.set_title(cell, fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Pareto fronts (first two objectives)", fontsize=10)
    _save(fig, path)
    return True
