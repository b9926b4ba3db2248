"""``method: t_sprt``: a sequential probability ratio test for the paired t problem, tuned to one effect size.

The ``t`` method's mixture confidence sequence spreads its evidence over every effect size; a test that
bets on one standardised effect ``delta`` (in SDs of the paired difference, :data:`SPRT_EFFECT`) reaches a
decision in far fewer seeds near that effect, as Wald's SPRT does for a known variance.  The variance is
unknown here, so the test uses the likelihood ratio of the *maximal invariant* under rescaling (the
group-invariant sequential t-test of Pérez-Ortiz, Lardy, de Heide & Grünwald, Ann. Statist. 2024): with
paired differences ``x_1 .. x_n``, ``S1 = sum x``, ``S2 = sum x^2``, ``r = S1 / sqrt(S2)`` and the right Haar
prior ``d sigma / sigma`` on the scale::

    E_n(delta) = int_0^inf prod_i phi(x_i / s - delta) s^-n ds/s  /  (same with delta = 0)
               = exp(-n delta^2 / 2) * E[exp(delta r V)],   V ~ chi with n degrees of freedom
               = f_nct(t_n; n-1, delta sqrt(n)) / f_t(t_n; n-1)   (n >= 2; ``t_n`` the t statistic).

It depends on the data only through ``t_n`` (or ``r``), so it is scale-free.  Under ``mu = 0`` it is a
nonnegative martingale with mean 1 in the filtration of the maximal invariant, for every ``sigma``: by
Ville's inequality ``P(exists n: E_n >= 1/a) <= a``.  Composite one-sided nulls follow by a coupling: with
``x_i = sigma (theta + z_i)`` every ``t_n`` rises with ``theta`` path by path, and ``E_n(delta > 0)`` rises
with ``t_n`` (monotone likelihood ratio), so the crossing probability for ``theta <= 0`` is at most that at
``0``.  The integral is computed by the trapezoid rule in ``log v`` around its mode (spectrally accurate;
checked against direct integration over ``sigma`` to 1e-9 in ``tests/test_sequential_sprt.py``).

Decisions at comparison level ``a = alpha / family`` (Bonferroni), read after every pair; the FIRST
boundary crossed decides and stops the comparison (precedence at the same ``n`` in this order):

- ``better`` / ``worse``: ``M_n(+delta) >= 2/a`` (resp. ``M_n(-delta)``), where
  ``M_n(d) = sum_k w_k E_n(c_k d)`` mixes the alternatives of :data:`SPRT_MIXTURE` (an average of test
  martingales is one, and each term rises with ``t_n``): ``mu <= 0`` (``mu >= 0``) rejected at ``a/2``,
  so a false better-or-worse has probability ``<= a`` under optional stopping.
- ``equivalent`` (intersection-union, as TOST): the same test on ``x - margin`` with alternatives
  ``-c_k delta`` rejects ``mu >= margin`` and on ``x + margin`` with ``+c_k delta`` rejects
  ``mu <= -margin``, each at ``a`` (both ``>= 1/a``): a false equivalent, for any ``|mu| >= margin``, has
  probability ``<= a``.  The margin stays in metric units; only the alternatives are in SDs, which keeps
  every test exact for every ``sigma`` (``delta = margin / s_n`` from the same data would not be: the
  e-value would no longer be a function of the maximal invariant; a ``delta`` fixed from a pilot study
  would be valid).
- ``futile``: ``E_n(+delta) <= b`` and ``E_n(-delta) <= b`` (point alternatives; ``b`` =
  :data:`SPRT_FUTILITY`), Wald's lower boundary: under ``theta = delta`` the reciprocal ``1/E_n(delta)`` is itself a test martingale, so (with
  the coupling) ``P(futile) <= b`` whenever ``|mu| >= delta sigma``: the claim is "no effect of ``delta``
  SDs or more" with error at most ``b``, and it costs at most ``b`` of power at ``delta``.  It stops the
  comparison (the scheduler gives seeds only to ``undecided`` ones) and never raises a false better,
  worse or equivalent.

The guarantee needs normal paired differences (as ``t``); ``delta`` only moves power and seeds.
Measured (``tests/test_sequential_sprt.py``, 2,000 null studies read after every seed up to 50, alpha 0.05):
false better/worse 0.033 on normal, 0.023 on t3, 0.070 on bimodal differences (above alpha: no guarantee
off the normal).  Seeds (``benchmarks/bench_adaptive.py --method t_sprt``): 0.57x a fixed 80 %-power
design on an even mix of 0, 0.5, 1 and 2 SD, at equal error rates.  The
reported interval is the ``t`` mixture confidence sequence (:func:`.sequential.t_cs`), for display: it
may still contain 0 when ``better`` is decided (the SPRT spends its evidence on ``delta``).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import gammaln

from orchestrator.stats.sequential import (
    Decision,
    Method,
    Outcome,
    confidence_sequence,
    decision_at_end,
)

SPRT_EFFECT = 0.5
"""``delta``: the smallest standardised effect (mean / SD of the paired difference) the test is tuned to."""
SPRT_MIXTURE = ((1.0, 0.4), (1.4, 0.2), (2.0, 0.2), (4.0, 0.2))
"""``(multiple of delta, weight)``: the alternatives of the better/worse/equivalent e-values, so that large
effects are decided in a few seeds (a point alternative at 0.5 SD needs about 10 seeds even for 2 SD)."""
SPRT_FUTILITY = 0.2
"""``b``: Wald's lower boundary; a ``futile`` stop at ``|mu| >= delta sigma`` has probability ``<= b``."""

FUTILE = 3  # outcome code of a futility stop, beside +1 better, -1 worse, 2 equivalent, 0 undecided
_OUTCOMES = {
    1: Outcome.BETTER,
    -1: Outcome.WORSE,
    2: Outcome.EQUIVALENT,
    FUTILE: Outcome.FUTILE,
    0: Outcome.UNDECIDED,
}


def log_e_value(n: np.ndarray | int, r: np.ndarray | float, delta: float) -> np.ndarray:
    """``log E_n(delta)`` from ``n`` and ``r = S1 / sqrt(S2)`` (arrays broadcast; ``r`` in ``[-sqrt n, sqrt n]``).

    ``log int_0^inf v^(n-1) exp(-v^2/2 + z v) dv`` with ``z = delta r`` by the trapezoid rule in ``w = log v``
    on nodes around the mode ``v* = (z + sqrt(z^2 + 4n)) / 2``, scaled by the curvature there, minus the
    ``z = 0`` value ``log(2^(n/2 - 1) Gamma(n/2))`` and ``n delta^2 / 2``.
    """
    n_a, r_a = np.broadcast_arrays(np.asarray(n, dtype=float), np.asarray(r, dtype=float))
    z = delta * r_a
    root = np.sqrt(z * z + 4.0 * n_a)
    vstar = np.where(z >= 0, (z + root) / 2.0, 2.0 * n_a / np.maximum(root - z, 1e-300))
    wstar = np.log(vstar)
    sd = 1.0 / np.sqrt(vstar * root)  # 1 / sqrt(-h''(w*)), h(w) = n w - exp(2w)/2 + z exp(w)
    left = np.maximum(12.0 * sd, 45.0 / n_a)  # the left tail decays like exp(n (w - w*))
    right = 12.0 * sd
    step = np.minimum(0.06, sd / 3.0)
    k = int(np.ceil(np.max((left + right) / step))) + 1 if n_a.size else 2
    u = np.linspace(0.0, 1.0, k)
    shape = (*n_a.shape, 1)
    w = (wstar - left).reshape(shape) + (left + right).reshape(shape) * u
    nn, zz = n_a.reshape(shape), z.reshape(shape)
    ev = np.exp(w)
    h = nn * w - 0.5 * ev * ev + zz * ev
    top = h.max(axis=-1, keepdims=True)
    f = np.exp(h - top)
    width = ((left + right) / (k - 1)).reshape(shape)
    integral = width[..., 0] * (f.sum(axis=-1) - 0.5 * (f[..., 0] + f[..., -1]))
    log_int = top[..., 0] + np.log(integral)
    log_null = (n_a / 2.0 - 1.0) * math.log(2.0) + gammaln(n_a / 2.0)
    return np.asarray(log_int - log_null - n_a * delta * delta / 2.0)


def log_e_process(x: np.ndarray, delta: float, shift: float = 0.0) -> np.ndarray:
    """``log E_n(delta)`` of ``x - shift`` after each prefix along the last axis (0 where ``S2 = 0``)."""
    y = np.asarray(x, dtype=float) - shift
    n = np.arange(1, y.shape[-1] + 1, dtype=float)
    s1, s2 = np.cumsum(y, axis=-1), np.cumsum(y * y, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(s2 > 0, s1 / np.sqrt(s2), 0.0)
    r = np.clip(r, -np.sqrt(n), np.sqrt(n))
    out = np.empty_like(r)
    for j in range(r.shape[-1]):  # one n at a time: the quadrature's node count depends on n
        out[..., j] = log_e_value(n[j], r[..., j], delta)
    return np.where(s2 > 0, out, 0.0)


def log_mixture(x: np.ndarray, delta: float, shift: float = 0.0) -> np.ndarray:
    """``log sum_k w_k E_n(c_k delta)`` of ``x - shift`` (:data:`SPRT_MIXTURE`) after each prefix."""
    terms = [math.log(w) + log_e_process(x, c * delta, shift) for c, w in SPRT_MIXTURE]
    return np.asarray(np.logaddexp.reduce(np.stack(terms), axis=0))


def crossings(
    x: np.ndarray,
    alpha: float,
    margin: float,
    delta: float = SPRT_EFFECT,
    futility: float = SPRT_FUTILITY,
    sign: float = 1.0,
) -> np.ndarray:
    """The boundary crossed at each prefix along the last axis, not frozen: +1 better, -1 worse,
    2 equivalent, :data:`FUTILE` futile, 0 none (``alpha``: the comparison's level; ``sign`` +1 when
    higher is better).  See the module docstring for each boundary."""
    a = np.asarray(x, dtype=float)
    up, down = log_mixture(a, delta), log_mixture(a, -delta)
    eq_high, eq_low = log_mixture(a, -delta, margin), log_mixture(a, delta, -margin)
    win = math.log(2.0 / alpha)
    pos, neg = up >= win, down >= win
    equiv = (eq_high >= -math.log(alpha)) & (eq_low >= -math.log(alpha))
    lose = math.log(futility)
    futile = (log_e_process(a, delta) <= lose) & (log_e_process(a, -delta) <= lose)
    better, worse = (pos, neg) if sign > 0 else (neg, pos)
    return np.asarray(np.select([better, worse, equiv, futile], [1, -1, 2, FUTILE], default=0))


def first_crossing(now: np.ndarray) -> np.ndarray:
    """Freeze :func:`crossings` at the first boundary crossed: the outcome after every prefix."""
    last = now.shape[-1]
    idx = np.where(now != 0, np.arange(last), last)
    first = np.minimum.accumulate(idx, axis=-1)  # the first crossing at or before each n
    held = np.take_along_axis(now, np.minimum(first, last - 1), axis=-1)
    return np.where(first < last, held, 0)


def sprt_codes(
    x: np.ndarray,
    alpha: float,
    margin: float,
    delta: float = SPRT_EFFECT,
    futility: float = SPRT_FUTILITY,
    sign: float = 1.0,
) -> np.ndarray:
    """Outcome code after every prefix along the last axis, frozen at the first boundary crossed:
    +1 better, -1 worse, 2 equivalent, :data:`FUTILE` futile, 0 undecided."""
    return first_crossing(crossings(x, alpha, margin, delta, futility, sign))


def sprt_decision(
    x: np.ndarray, *, margin: float, level: float, sign: float, bounds: tuple[float, float] | None
) -> Decision:
    """The ``t_sprt`` :class:`.sequential.Decision` on the finite differences ``x`` (at least one) at the
    comparison's ``level``; the interval is the ``t`` mixture CS at ``level`` (display only)."""
    codes = sprt_codes(x, level, margin, sign=sign)
    final = int(codes[-1])
    at = int(np.argmax(codes != 0)) + 1 if final != 0 else None
    lo, hi = confidence_sequence(x, alpha=level, method=Method.T, bounds=bounds)
    return decision_at_end(x, lo, hi, _OUTCOMES[final], at, Method.T_SPRT, level, margin)
