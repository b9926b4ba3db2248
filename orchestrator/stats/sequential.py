"""Anytime-valid decisions on paired differences: confidence sequences that may be read after every seed.

A *confidence sequence* (CS) at level ``1 - alpha`` is a sequence of intervals ``C_n`` with
``P(mu in C_n for every n >= 1) >= 1 - alpha``: because the guarantee holds uniformly over ``n``, the
decision may be re-read after every seed and the study stopped whenever it is decided (optional stopping
keeps the error rate).  A fixed-n t interval re-read after every seed does not (see tests/test_sequential.py).

``method="t"`` (:func:`t_cs`), for roughly normal differences with unknown variance: Lai's (1976)
scale-invariant mixture, i.e. the Bayes factor of the one-sample t statistic with a normal prior
``delta = mu/sigma ~ N(0, tau^2)`` on the standardised effect and the right-Haar prior ``1/sigma`` on the
scale (Gönen et al. 2005; Pérez-Ortiz et al. 2024 show it is a test martingale under every normal null).
With ``xbar``, ``s`` the mean and SD of ``x_1 .. x_n`` and ``t = sqrt(n) (xbar - m)/s``: integrating
``delta`` out of the normal likelihood leaves ``xbar - m ~ N(0, sigma^2 r/n)``, ``r = 1 + n tau^2``, and
then ``sigma`` out against ``1/sigma`` turns ``exp(-n (xbar - m)^2 / (2 sigma^2 r))`` into
``(nu s^2 + n (xbar - m)^2 / r)^{-n/2}`` (``nu = n - 1``), so, divided by the same with ``delta = 0``::

    BF_n(m) = r^{-1/2} * [ (1 + t^2/nu) / (1 + t^2/(nu r)) ]^{(nu+1)/2},   r = 1 + n tau^2.

Ville's inequality gives ``P(exists n: BF_n(mu) >= 1/alpha) <= alpha``, so
``C_n = {m : BF_n(m) < 1/alpha} = mean_n ± t*_n s_n / sqrt(n)``; the bracket rises in ``t^2`` from 1 to
``r``, so solving ``BF = 1/alpha`` for ``u = t^2/nu`` gives the closed form
``t*_n = sqrt(nu (A - 1) / (1 - A/r))``, ``A = (sqrt(r)/alpha)^{2/(nu+1)}`` (``C_n`` is the whole line
while ``A >= r``: with ``tau = 0.8`` and ``alpha = 0.05`` that is ``n <= 5``).

The prior scale ``tau`` (:data:`T_PRIOR_SCALE`, or ``prior_scale`` of :func:`decide`) sets where the
boundary is tightest.  For the z-statistic analogue the width at ``n`` is smallest when ``a = n tau^2``
solves ``a = log(1 + a) + 2 log(1/alpha)`` (``a ≈ 8.2`` at alpha 0.05; cf. Howard et al. 2021 on tuning a
mixture to a target time), i.e. ``tau ≈ sqrt(8.2/n)``; the t boundary is much wider than that at small
``n``, which favours a larger ``tau``.  ``tau = 0.78`` minimises the largest excess of ``t*_n`` over its
best value at each ``n`` in ``[10, 60]``, the seed counts at which effects of 0.5 to 1 SD are decided:
3.5 % at alpha 0.05 (``tau = 0.8``: 3.7 %; ``tau = 1``: 5.7 %; ``tau = 0.5``: 25 %).  The gain is small:
in ``benchmarks/bench_adaptive.py`` any ``tau`` in ``[0.5, 1]`` uses the same mean seeds to within 3 %.

``method="bounded"`` (:func:`bounded_cs`), nonparametric, for a metric with a known range ``[low, high]``:
a paired difference lies in ``[low - high, high - low]``; rescaled to ``y in [0, 1]``, the hedged-capital
betting CS of Waudby-Smith & Ramdas (2024, JRSS-B), formulas in :mod:`.betting`, computed on a grid.  It
holds for every distribution on the range (no normality, skew allowed), at the price of width when the
differences are small against the range: its bets are capped, so after n pairs it is rarely narrower than
about ``13 (high - low) / n`` (0.27 of Dice at n = 50) whatever the spread.  :func:`eb_cs` is the closed-form
predictable plug-in empirical-Bernstein CS of the same paper (eq. 13, "PrPl-EB"), about twice as wide::

    mu^_t = (1/2 + sum_{i<=t} y_i) / (t + 1),   s2_t = (1/4 + sum_{i<=t} (y_i - mu^_i)^2) / (t + 1),
    lambda_t = min(sqrt(2 log(2/alpha) / (s2_{t-1} t log(1 + t))), 1/2),
    v_t = 4 (y_t - mu^_{t-1})^2,   psi(l) = (-log(1 - l) - l) / 4,
    C_t = sum l_i y_i / sum l_i  ±  (log(2/alpha) + sum v_i psi(l_i)) / sum l_i.

Both methods are two-sided; :func:`decide` intersects ``C_1 .. C_n`` (still a valid CS) and clips to the
range of a difference when the metric has one.  ``equivalent`` (the CS inside ``±margin``) reads the same
CS; for ``t`` a false ``equivalent`` (one side's miss) then has probability at most ``alpha / (2 - alpha)``,
about ``alpha / 2``.  The intersection-union principle (as in TOST) would allow ``alpha`` per side, i.e.
the ``t`` CS at ``2 alpha / (1 + alpha)`` for that decision only (``iut_codes`` in the benchmark).

Family-wise error: a study deciding ``m`` comparisons runs each at ``alpha / m`` (Bonferroni); the
union bound keeps the chance of any false ``better``/``worse`` at ``alpha`` under optional stopping.

Libraries: ``confseq`` (MIT, sdist only, needs a C++ build), ``savvi`` (MIT, pulls cvxpy, no bounded-mean
CS) and ``expectation`` (needs Python >= 3.12) were checked and not used; the formulas are here and
tested against independent closed forms.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from ielcore.errors import SpecError
from orchestrator.stats.betting import GRID, betting_cs

T_PRIOR_SCALE = 0.8
"""``tau``: prior standard deviation of the standardised effect ``mu/sigma`` in the ``t`` mixture."""
EB_TRUNCATION = 0.5
"""``c``: the largest bet ``lambda_t`` of the empirical-Bernstein CS."""


class Method(StrEnum):
    """The confidence sequence: ``t`` (anytime-valid paired t) or ``bounded`` (nonparametric, known range);
    ``t_sprt``: a sequential probability ratio test tuned to 0.5 SD (:mod:`.sprt`; its interval is ``t``'s)."""

    T = "t"
    BOUNDED = "bounded"
    T_SPRT = "t_sprt"


class Outcome(StrEnum):
    BETTER = "better"
    WORSE = "worse"
    EQUIVALENT = "equivalent"
    UNDECIDED = "undecided"
    FUTILE = "futile"  # t_sprt only: no effect of 0.5 SD or more; the comparison stops (see .sprt)


class Score(StrEnum):
    """How one trial is scored: its last epoch, the mean of its last ``k``, or its best."""

    LAST = "last"
    MEAN_LAST_K = "mean_last_k"
    BEST = "best"


@dataclass(frozen=True)
class Decision:
    """The decision on ``arm - baseline`` after ``n`` pairs (``estimate`` is their mean)."""

    n: int
    estimate: float | None
    cs_low: float | None  # None: unbounded (too few pairs)
    cs_high: float | None
    decision: Outcome
    decided_at_n: int | None  # the first n at which this decision was reached (None while undecided)
    method: Method
    alpha: float  # the level of this comparison's CS (alpha of the study / family size)
    margin: float


def t_boundary(n: np.ndarray | int, alpha: float, tau: float = T_PRIOR_SCALE) -> np.ndarray:
    """``t*_n``: the CS is ``mean ± t*_n s/sqrt(n)``; ``inf`` where the CS is still the whole line."""
    n_arr = np.asarray(n, dtype=float)
    nu = n_arr - 1.0
    r = 1.0 + n_arr * tau * tau
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        big_a = np.exp((2.0 / n_arr) * (0.5 * np.log(r) - math.log(alpha)))
        u = (big_a - 1.0) / (1.0 - big_a / r)
        out = np.sqrt(nu * u)
    return np.where((n_arr >= 2) & (big_a < r), out, np.inf)


def t_bayes_factor(x: Sequence[float] | np.ndarray, m: float, tau: float = T_PRIOR_SCALE) -> float:
    """``BF_n(m)`` of the module docstring for the whole sample ``x`` (n >= 2)."""
    a = np.asarray(x, dtype=float)
    n = len(a)
    nu, r = n - 1.0, 1.0 + n * tau * tau
    t = (a.mean() - m) / (a.std(ddof=1) / math.sqrt(n))
    return float(r**-0.5 * ((1 + t * t / nu) / (1 + t * t / (nu * r))) ** ((nu + 1) / 2))


def t_cs(x: np.ndarray, alpha: float, tau: float = T_PRIOR_SCALE) -> tuple[np.ndarray, np.ndarray]:
    """The ``t`` CS after each prefix of ``x`` along its last axis (``-inf, inf`` where unbounded)."""
    a = np.asarray(x, dtype=float)
    n = np.arange(1, a.shape[-1] + 1, dtype=float)
    s1 = np.cumsum(a, axis=-1)
    mean = s1 / n
    with np.errstate(divide="ignore", invalid="ignore"):
        var = np.maximum(np.cumsum(a * a, axis=-1) - s1 * mean, 0.0) / (n - 1)
        half = t_boundary(n, alpha, tau) * np.sqrt(var / n)
    half = np.where(np.isnan(half), np.inf, half)  # n = 1, or zero variance with an infinite boundary
    return mean - half, mean + half


def bounded_cs(
    x: np.ndarray, alpha: float, low: float, high: float, grid: int = GRID
) -> tuple[np.ndarray, np.ndarray]:
    """The hedged-capital betting CS (:mod:`.betting`) of values in ``[low, high]`` after each prefix."""
    a = np.asarray(x, dtype=float)
    width = high - low
    lo, hi = betting_cs(np.clip((a - low) / width, 0.0, 1.0), alpha, grid=grid)
    return low + width * lo, low + width * hi


def eb_cs(
    x: np.ndarray, alpha: float, low: float, high: float, c: float = EB_TRUNCATION
) -> tuple[np.ndarray, np.ndarray]:
    """The empirical-Bernstein CS of values in ``[low, high]`` after each prefix along the last axis
    (closed form; looser than :func:`bounded_cs` when the differences are small against the range)."""
    a = np.asarray(x, dtype=float)
    width = high - low
    y = np.clip((a - low) / width, 0.0, 1.0)
    t = np.arange(1, a.shape[-1] + 1, dtype=float)
    mu = (0.5 + np.cumsum(y, axis=-1)) / (t + 1)
    s2 = (0.25 + np.cumsum((y - mu) ** 2, axis=-1)) / (t + 1)
    lead = [(0, 0)] * (a.ndim - 1)
    mu_prev = np.pad(mu[..., :-1], [*lead, (1, 0)], constant_values=0.5)
    s2_prev = np.pad(s2[..., :-1], [*lead, (1, 0)], constant_values=0.25)
    log_term = math.log(2.0 / alpha)
    lam = np.minimum(np.sqrt(2 * log_term / (s2_prev * t * np.log1p(t))), c)
    v = 4.0 * (y - mu_prev) ** 2
    psi = (-np.log1p(-lam) - lam) / 4.0
    sum_lam = np.cumsum(lam, axis=-1)
    centre = np.cumsum(lam * y, axis=-1) / sum_lam
    half = (log_term + np.cumsum(v * psi, axis=-1)) / sum_lam
    lo, hi = np.maximum(centre - half, 0.0), np.minimum(centre + half, 1.0)
    return low + width * lo, low + width * hi


def confidence_sequence(
    diffs: Sequence[float] | np.ndarray,
    *,
    alpha: float,
    method: Method | str,
    bounds: tuple[float, float] | None = None,
    grid: int = GRID,
    prior_scale: float = T_PRIOR_SCALE,
) -> tuple[np.ndarray, np.ndarray]:
    """Running-intersection CS of the mean of paired differences after each prefix (last axis).

    Where the intersection of ``C_1 .. C_n`` is empty, ``C_n`` itself is returned (both miss the mean
    only on the same event, so the coverage guarantee is unchanged).

    ``bounds`` is the metric's range ``(low, high)``: the differences lie in ``[low - high, high - low]``,
    which ``bounded`` needs and both methods clip to.  ``grid``: points of the ``bounded`` CS's grid over
    the range of a difference (its ends are conservative by one step, ``2 (high - low) / (grid - 1)``).
    ``prior_scale``: ``tau`` of the ``t`` mixture (module docstring); ``bounded`` ignores it.
    """
    x = np.asarray(diffs, dtype=float)
    m = Method(method)
    span = None if bounds is None else (bounds[0] - bounds[1], bounds[1] - bounds[0])
    if m is Method.BOUNDED:
        if span is None or not all(math.isfinite(s) for s in span):
            raise SpecError(
                f"decide.method 'bounded' needs a metric with a known finite range, got bounds {bounds}; "
                "use method 't' for this metric"
            )
        outside = x[(x < span[0]) | (x > span[1])]
        if outside.size:
            raise SpecError(
                f"paired differences {outside.ravel()[:3].tolist()} lie outside [{span[0]}, {span[1]}], the range "
                f"of a difference of a metric in {list(bounds or ())}; check the metric's range in "
                "ielcore/metric_info.py or use method 't'"
            )
        lo, hi = bounded_cs(x, alpha, span[0], span[1], grid=grid)
    else:
        lo, hi = t_cs(x, alpha, prior_scale)
    run_lo, run_hi = np.maximum.accumulate(lo, axis=-1), np.minimum.accumulate(hi, axis=-1)
    # An empty intersection (an alpha-event, or data far from the assumption) falls back to C_n itself.
    empty = run_lo > run_hi
    lo, hi = np.where(empty, lo, run_lo), np.where(empty, hi, run_hi)
    if span is not None and all(math.isfinite(s) for s in span):
        lo, hi = np.clip(lo, span[0], span[1]), np.clip(hi, span[0], span[1])
    return lo, hi


def classify(low: np.ndarray, high: np.ndarray, margin: float, sign: float = 1.0) -> np.ndarray:
    """Elementwise outcome codes: +1 better, -1 worse, 2 equivalent, 0 undecided.

    ``sign`` is +1 when higher is better.  Excluding 0 wins over equivalence.
    """
    better = np.where(sign > 0, low > 0, high < 0)
    worse = np.where(sign > 0, high < 0, low > 0)
    equiv = (low >= -margin) & (high <= margin)
    return np.select([better, worse, equiv], [1, -1, 2], default=0)


_CODES = {1: Outcome.BETTER, -1: Outcome.WORSE, 2: Outcome.EQUIVALENT, 0: Outcome.UNDECIDED}


def check_decide_args(
    alpha: float, margin: float, family_size: int, prior_scale: float = T_PRIOR_SCALE
) -> None:
    if not 0 < alpha <= 0.5:
        raise SpecError(f"decide.alpha must lie in (0, 0.5], got {alpha=}; 0.05 is usual")
    if not margin >= 0:
        raise SpecError(f"decide.margin must be >= 0 (in metric units), got {margin=}")
    if family_size < 1:
        raise SpecError(f"the number of comparisons must be >= 1, got {family_size=}")
    if not (math.isfinite(prior_scale) and prior_scale > 0):
        raise SpecError(
            f"prior_scale (tau of the 't' mixture, in SDs of the difference) must be a finite number > 0, "
            f"got {prior_scale=}; {T_PRIOR_SCALE} is the default"
        )


def decide(
    diffs: Sequence[float] | np.ndarray,
    *,
    margin: float,
    alpha: float,
    method: Method | str,
    direction: str = "maximize",
    bounds: tuple[float, float] | None = None,
    family_size: int = 1,
    prior_scale: float = T_PRIOR_SCALE,
) -> Decision:
    """Decide ``arm - baseline`` from its paired differences in seed order (``diffs[i]`` for seed i).

    The CS runs at ``alpha / family_size``; ``better`` means better for the metric (``direction``
    ``minimize``: a negative difference is better).  The decision is a function of the prefix sequence,
    so recomputing it from the database after a restart gives the same answer.  ``prior_scale`` is
    ``tau`` of the ``t`` mixture (module docstring; the default suits effects of 0.5 to 1 SD).
    """
    check_decide_args(alpha, margin, family_size, prior_scale)
    m = Method(method)
    level = alpha / family_size
    x = np.asarray([float(d) for d in diffs], dtype=float)
    if len(x) == 0:
        return Decision(0, None, None, None, Outcome.UNDECIDED, None, m, level, margin)
    if not np.all(np.isfinite(x)):
        raise SpecError(f"paired differences must be finite numbers, got {list(x)}")
    if m is Method.T_SPRT:
        from orchestrator.stats.sprt import sprt_decision  # imports this module

        sign = 1.0 if direction == "maximize" else -1.0
        return sprt_decision(x, margin=margin, level=level, sign=sign, bounds=bounds)
    lo, hi = confidence_sequence(x, alpha=level, method=m, bounds=bounds, prior_scale=prior_scale)
    sign = 1.0 if direction == "maximize" else -1.0
    codes = classify(lo, hi, margin, sign)
    final = int(codes[-1])
    at = None
    if final != 0:
        same = codes == final
        # first n from which the outcome held without interruption up to now
        breaks = np.nonzero(~same)[0]
        at = int(breaks[-1] + 2) if len(breaks) else 1
    return decision_at_end(x, lo, hi, _CODES[final], at, m, level, margin)


def decision_at_end(
    x: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    outcome: Outcome,
    decided_at_n: int | None,
    method: Method,
    level: float,
    margin: float,
) -> Decision:
    """The :class:`Decision` after the last of the differences ``x``, whose confidence sequence is
    ``lo``/``hi`` (an unbounded end is None)."""
    low, high = float(lo[-1]), float(hi[-1])
    return Decision(
        n=len(x),
        estimate=float(x.mean()),
        cs_low=low if math.isfinite(low) else None,
        cs_high=high if math.isfinite(high) else None,
        decision=outcome,
        decided_at_n=decided_at_n,
        method=method,
        alpha=level,
        margin=margin,
    )


def trial_score(
    history: Sequence[float | None], direction: str = "maximize", score: Score | str = "last", k: int = 5
) -> float | None:
    """A trial's score from its per-epoch values of one metric (``None`` entries are missing epochs).

    ``last``: the last recorded value; ``mean_last_k``: the mean of the last ``k`` recorded values;
    ``best``: the best value by ``direction``.  ``None`` when the trial recorded none.
    """
    vals = [float(v) for v in history if v is not None and math.isfinite(v)]
    if not vals:
        return None
    s = Score(score)
    if s is Score.LAST:
        return vals[-1]
    if s is Score.MEAN_LAST_K:
        if k < 1:
            raise SpecError(f"decide.k must be >= 1 for score mean_last_k, got {k=}")
        return float(np.mean(vals[-k:]))
    return max(vals) if direction == "maximize" else min(vals)
