"""Statistics across seeds: seeds are replicates, every summary carries its uncertainty.

- :func:`describe`: n, mean, sample std (ddof=1), and a two-sided 95 % t confidence interval
  ``mean ± t_{0.975, n-1} · std / sqrt(n)`` (or a percentile bootstrap on request).
- :func:`paired`: arm vs baseline paired on seed: mean difference with its t interval, the paired t-test
  and the Wilcoxon signed-rank p-values, and Cohen's d_z = mean(diff) / std(diff).
- :func:`holm`: Holm's step-down correction of a family of p-values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    std: float | None
    ci_low: float | None
    ci_high: float | None


@dataclass(frozen=True)
class Paired:
    n: int
    mean_diff: float
    ci_low: float | None
    ci_high: float | None
    p_t: float | None
    p_wilcoxon: float | None
    effect_size: float | None  # Cohen's d_z


def t_interval(
    values: Sequence[float] | np.ndarray, level: float = 0.95
) -> tuple[float | None, float | None]:
    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return None, None
    half = sps.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return float(x.mean() - half), float(x.mean() + half)


def bootstrap_interval(
    values: Sequence[float] | np.ndarray, level: float = 0.95, n_resamples: int = 2000, seed: int = 0
) -> tuple[float | None, float | None]:
    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return None, None
    rng = np.random.default_rng(seed)
    means = rng.choice(x, size=(n_resamples, len(x)), replace=True).mean(axis=1)
    return float(np.quantile(means, 0.5 - level / 2)), float(np.quantile(means, 0.5 + level / 2))


def describe(values: Sequence[float], level: float = 0.95, bootstrap: bool = False) -> Summary:
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        return Summary(0, float("nan"), None, None, None)
    std = float(x.std(ddof=1)) if len(x) > 1 else None
    low, high = bootstrap_interval(x, level) if bootstrap else t_interval(x, level)
    return Summary(len(x), float(x.mean()), std, low, high)


def paired(arm: Sequence[float], baseline: Sequence[float], level: float = 0.95) -> Paired:
    a, b = np.asarray(arm, dtype=float), np.asarray(baseline, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples need equal lengths, got {len(a)} and {len(b)}")
    d = a - b
    n = len(d)
    if n == 0:
        return Paired(0, float("nan"), None, None, None, None, None)
    low, high = t_interval(d, level)
    p_t = p_w = effect = None
    if n >= 2:
        sd = d.std(ddof=1)
        if sd > 0:
            p_t = float(sps.ttest_rel(a, b).pvalue)
            effect = float(d.mean() / sd)
        else:
            p_t = 1.0 if d.mean() == 0 else 0.0
        p_w = float(sps.wilcoxon(a, b).pvalue) if np.any(d != 0) else 1.0
    return Paired(n, float(d.mean()), low, high, p_t, p_w, effect)


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm-adjusted p-values (same order as given; None stays None)."""
    indexed = [(p, i) for i, p in enumerate(pvalues) if p is not None]
    m = len(indexed)
    adjusted: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(indexed)):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted
