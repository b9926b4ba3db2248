"""Figures that show every seed: training curves (a thin line per seed, a thick mean) and the per-cell strip
plot (each seed's final value beside the cell's mean and interval).

Every axis of a metric stays inside the metric's range (``ielcore.metric_info``): a Dice axis never runs
below 0 or above 1.  The ``build_*`` functions return the matplotlib figure (tests read its axes back); the
``plot_*`` functions write it as a PNG and return False when there is nothing to show.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ielcore.metric_info import metric_info
from orchestrator.report.tables import CellStat, StudyData, direction, values

MAX_PANELS = 6  # report rows shown as separate panel rows; the rest are left out (the tables have them)
SEED_LW, MEAN_LW = 0.8, 2.2
SEED_ALPHA = 0.35
STRIP_OFFSET = 0.28  # the seeds' dots sit this far below their cell's interval (in category units)

Curves = Mapping[str, Mapping[str, Sequence[Sequence[tuple[int, float]]]]]
"""cell key -> metric -> one ``[(epoch, value), ...]`` list per trial."""


def metric_limits(
    metric: str, points: Iterable[float | None], pad_share: float = 0.08
) -> tuple[float, float] | None:
    """Axis limits around the finite ``points`` (padded), never past the metric's range; None for no point."""
    finite = [float(v) for v in points if v is not None and math.isfinite(v)]
    if not finite:
        return None
    low, high = min(finite), max(finite)
    pad = (high - low) * pad_share or max(abs(high) * 0.05, 0.01)
    low, high = low - pad, high + pad
    info = metric_info(metric)
    if info is not None:
        low, high = max(low, info.low), min(high, info.high)
    if high <= low:  # every point at an end of the range
        high = low + 1e-9
    return low, high


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig: Any, path: str | Path, dpi: int = 80) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    _plt().close(fig)


# ------------------------------------------------------------------------------------ training curves
def _curve_panel(
    ax: Any, data: StudyData, curves: Curves, row: str, metric: str, arms: list[str]
) -> list[float]:
    """One panel: per cell of ``row`` a thin line per seed and the thick mean; returns every y drawn."""
    drawn: list[float] = []
    for cell in (c for c in data.cells if c.row == row):
        per_trial = [dict(t) for t in curves.get(cell.key, {}).get(metric, []) if t]
        epochs = sorted({e for t in per_trial for e in t})
        if not epochs:
            continue
        color = f"C{arms.index(cell.arm) % 10}"
        for t in per_trial:
            xs = sorted(e for e in t if math.isfinite(t[e]))
            ax.plot(xs, [t[e] for e in xs], "-", color=color, lw=SEED_LW, alpha=SEED_ALPHA)
            drawn += [t[e] for e in xs]
        mean = []
        for e in epochs:
            vals = [t[e] for t in per_trial if e in t and math.isfinite(t[e])]
            mean.append(float(np.mean(vals)) if vals else np.nan)
        ax.plot(epochs, mean, "-", color=color, lw=MEAN_LW, label=f"{cell.arm} (mean of {len(per_trial)})")
    return drawn


def build_training_curves(data: StudyData, curves: Curves, metrics: Sequence[str]) -> Any | None:
    """Per-epoch ``metrics`` of each cell: one panel row per report row (at most :data:`MAX_PANELS`), one
    colour per arm, a thin line per seed and a thick line for their mean."""
    present = [m for m in metrics if any(len(v) > 1 for c in curves.values() for v in c.get(m, []))]
    if not present:
        return None
    from matplotlib.ticker import MaxNLocator

    rows = data.rows[:MAX_PANELS]
    arms = list(dict.fromkeys(c.arm for c in data.cells))
    fig, axes = _plt().subplots(
        len(rows), len(present), figsize=(4.5 * len(present), 2.8 * len(rows)), squeeze=False
    )
    for r, row in enumerate(rows):
        for m, metric in enumerate(present):
            ax = axes[r][m]
            limits = metric_limits(metric, _curve_panel(ax, data, curves, row, metric, arms))
            if limits is not None:
                ax.set_ylim(*limits)
            ax.set_title(f"{row}", fontsize=9)
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylabel(metric)
            ax.grid(alpha=0.3)
            if r == 0 and m == len(present) - 1:
                ax.legend(fontsize=7)
    fig.suptitle(f"{data.name}: training curves (thin: each seed, thick: their mean)", fontsize=10)
    return fig


def plot_training_curves(data: StudyData, curves: Curves, metrics: Sequence[str], path: str | Path) -> bool:
    fig = build_training_curves(data, curves, metrics)
    if fig is None:
        return False
    save(fig, path)
    return True


# ------------------------------------------------------------------------------------ per-cell strips
def cell_label(row: str, arm: str, is_baseline: bool) -> str:
    name = arm + (" (baseline)" if is_baseline else "")
    return name if row in ("", "all") else f"{row} · {name}"


def _strip_panel(ax: Any, data: StudyData, stats: Sequence[CellStat], metric: str) -> list[str]:
    """One metric: per cell (top to bottom) its mean with the interval and, just below, every seed's value."""
    by_cell = {s.cell: s for s in stats if s.metric == metric}
    labels: list[str] = []
    points: list[float | None] = []
    for cell in data.cells:
        s = by_cell.get(cell.key)
        if s is None:
            continue
        y = len(labels)
        labels.append(cell_label(cell.row, cell.arm, cell.is_baseline))
        color = "C3" if s.best else "C0"
        if s.ci_low is not None and s.ci_high is not None:
            ax.plot([s.ci_low, s.ci_high], [y, y], "-", color=color, lw=2.0, solid_capstyle="butt")
            points += [s.ci_low, s.ci_high]
        ax.plot([s.mean], [y], "o", color=color, ms=6)
        seeds = values(cell, metric)
        offsets = np.linspace(-0.06, 0.06, len(seeds)) if len(seeds) > 1 else np.zeros(len(seeds))
        ax.scatter(seeds, y + STRIP_OFFSET + offsets, s=14, color="0.35", zorder=3)
        points += [s.mean, *seeds]
    limits = metric_limits(metric, points)
    if limits is not None:
        ax.set_xlim(*limits)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_ylim(len(labels) - 0.5 + STRIP_OFFSET, -0.5)  # first cell on top
    better = "higher" if direction(metric) == "maximize" else "lower"
    ax.set_xlabel(f"final {metric} ({better} is better)")
    ax.grid(alpha=0.3, axis="x")
    return labels


def build_cell_results(data: StudyData, stats: Sequence[CellStat], metrics: Sequence[str]) -> Any | None:
    """Per metric, one panel: each cell's mean and interval (red: best of its row) with every seed's value."""
    shown = [m for m in metrics if any(s.metric == m for s in stats)]
    if not shown:
        return None
    n_cells = len({s.cell for s in stats})
    fig, axes = _plt().subplots(
        1, len(shown), figsize=(4.4 * len(shown) + 1.5, 0.42 * n_cells + 1.6), squeeze=False
    )
    for ax, metric in zip(axes[0], shown):
        _strip_panel(ax, data, stats, metric)
    fig.suptitle(
        f"{data.name}: final metrics per cell (dot and bar: mean and 95 % CI; grey: each seed)", fontsize=10
    )
    return fig


def plot_cell_results(
    data: StudyData, stats: Sequence[CellStat], metrics: Sequence[str], path: str | Path
) -> bool:
    fig = build_cell_results(data, stats, metrics)
    if fig is None:
        return False
    save(fig, path)
    return True
