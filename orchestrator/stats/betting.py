"""The nonparametric confidence sequence of ``method: bounded``: hedged capital (Waudby-Smith & Ramdas 2024,
JRSS-B, Section 4.3), for values ``y_i`` in ``[0, 1]`` with mean ``mu``.

For a candidate mean ``m`` two gamblers bet on ``y`` being above / below ``m``::

    K+_t(m) = prod_{i<=t} (1 + l+_i(m) (y_i - m)),    l+_i(m) = min(b_i, c / m),
    K-_t(m) = prod_{i<=t} (1 - l-_i(m) (y_i - m)),    l-_i(m) = min(b_i, c / (1 - m)),
    K_t(m)  = theta K+_t(m) + (1 - theta) K-_t(m),   theta = 1/2,  c = 1/2,

with the predictable plug-in bet (eq. 13 of the paper; it uses only ``y_1 .. y_{i-1}``)::

    b_i = sqrt(2 log(2/alpha) / (s2_{i-1} i log(1 + i))),
    mu^_i = (1/2 + sum_{j<=i} y_j) / (i + 1),   s2_i = (1/4 + sum_{j<=i} (y_j - mu^_j)^2) / (i + 1).

Each factor is at least ``1 - c > 0`` and has mean 1 when ``m = mu``, so ``K_t(mu)`` is a nonnegative
martingale and Ville's inequality gives ``P(exists t: K_t(mu) >= 1/alpha) <= alpha``: the CS is
``C_t = {m : K_t(m) < 1/alpha}``, an interval (Proposition 4 of the paper).  It is computed on a grid of
``m``; the returned ends are the first rejected grid points outside the kept ones, so the interval always
contains ``C_t`` (conservative by at most one grid step, ``1/(grid - 1)`` of the range).
"""

from __future__ import annotations

import math

import numpy as np

THETA = 0.5
TRUNCATION = 0.5
GRID = 2001


def prpl_bets(y: np.ndarray, alpha: float) -> np.ndarray:
    """``b_i`` for every ``i`` along the last axis of ``y`` (values in [0, 1])."""
    t = np.arange(1, y.shape[-1] + 1, dtype=float)
    mu = (0.5 + np.cumsum(y, axis=-1)) / (t + 1)
    s2 = (0.25 + np.cumsum((y - mu) ** 2, axis=-1)) / (t + 1)
    lead = [(0, 0)] * (y.ndim - 1)
    s2_prev = np.pad(s2[..., :-1], [*lead, (1, 0)], constant_values=0.25)
    return np.sqrt(2 * math.log(2.0 / alpha) / (s2_prev * t * np.log1p(t)))


def log_capital(y: np.ndarray, m: np.ndarray, alpha: float, c: float = TRUNCATION) -> np.ndarray:
    """``log K_t(m)`` for each prefix ``t`` and each ``m``: shape ``y.shape + m.shape``."""
    b = prpl_bets(y, alpha)[..., None]  # (..., n, 1)
    yy, mm = y[..., None], m.reshape((1,) * y.ndim + m.shape)
    up = np.cumsum(np.log1p(np.minimum(b, c / mm) * (yy - mm)), axis=-2)
    down = np.cumsum(np.log1p(-np.minimum(b, c / (1 - mm)) * (yy - mm)), axis=-2)
    return np.logaddexp(math.log(THETA) + up, math.log(1 - THETA) + down)


def betting_cs(
    y: np.ndarray, alpha: float, grid: int = GRID, chunk: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """The hedged-capital CS of the mean of ``y`` (in [0, 1]) after each prefix along the last axis."""
    y2 = np.asarray(y, dtype=float).reshape(-1, np.shape(y)[-1])  # (studies, n)
    m = np.linspace(0.0, 1.0, grid)[1:-1]  # the mean of values in [0, 1] lies in [0, 1]; K is finite inside
    step = 1.0 / (grid - 1)
    lo, hi = np.empty(y2.shape), np.empty(y2.shape)
    bound = math.log(1.0 / alpha)
    for s in range(0, len(y2), chunk):
        kept = log_capital(y2[s : s + chunk], m, alpha) < bound  # (chunk, n, grid - 2)
        anyk = kept.any(axis=-1)
        first = np.where(anyk, kept.argmax(axis=-1), 0)
        last = np.where(anyk, kept.shape[-1] - 1 - kept[..., ::-1].argmax(axis=-1), kept.shape[-1] - 1)
        lo[s : s + chunk] = np.where(anyk, np.maximum(m[first] - step, 0.0), 0.0)
        hi[s : s + chunk] = np.where(anyk, np.minimum(m[last] + step, 1.0), 1.0)
    return lo.reshape(np.shape(y)), hi.reshape(np.shape(y))
