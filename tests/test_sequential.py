"""Anytime-valid decisions (orchestrator.stats.sequential): closed forms to 1e-9, and validity under optional
stopping by simulation (10,000 sequential studies per case, a look after every seed up to n = 50).

Figures (seed 20261129, alpha 0.05, 10,000 studies each), rate of a false better/worse at any n <= 50:
printed by ``pytest -s tests/test_sequential.py`` and quoted in the README.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate
from scipy import stats as sps

from ielcore.errors import SpecError
from orchestrator.stats import Outcome, bounded_cs, confidence_sequence, decide, t_boundary, t_cs, trial_score
from orchestrator.stats.betting import log_capital
from orchestrator.stats.sequential import T_PRIOR_SCALE, eb_cs, t_bayes_factor

ALPHA = 0.05
STUDIES, LOOKS = 10_000, 50
TOL = ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / STUDIES)  # alpha plus three Monte Carlo standard errors
# The betting CS is computed on a grid: 2,000 studies on a 401-point grid keep each case to a few seconds.
STUDIES_BOUNDED, GRID = 2_000, 401
TOL_BOUNDED = ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / STUDIES_BOUNDED)


def draw(kind: str, rng: np.random.Generator, sd: float, shape: tuple[int, int]) -> np.ndarray:
    """Paired differences with mean 0 and standard deviation ``sd``."""
    if kind == "normal":
        x = rng.normal(0.0, 1.0, shape)
    elif kind == "t3":
        x = rng.standard_t(3, shape) / math.sqrt(3.0)
    elif kind == "skewed":  # a rare collapse: +1/3 nine times in ten, -3 once (mean 0, SD 1)
        x = np.where(rng.random(shape) < 0.1, -3.0, 1.0 / 3.0)
    elif kind == "bimodal":  # two modes at ±0.95 (e.g. a run that diverges half the time)
        x = rng.choice([-1.0, 1.0], shape) * 0.95 + rng.normal(0.0, math.sqrt(1 - 0.95**2), shape)
    else:
        raise ValueError(kind)
    return x * sd


def false_rate(
    x: np.ndarray,
    method: str,
    bounds: tuple[float, float] | None = None,
    mu: float = 0.0,
    tau: float = T_PRIOR_SCALE,
) -> float:
    """Share of studies whose CS excludes ``mu`` at some look (after every seed up to LOOKS)."""
    lo, hi = confidence_sequence(x, alpha=ALPHA, method=method, bounds=bounds, grid=GRID, prior_scale=tau)
    return float(((lo > mu) | (hi < mu)).any(axis=1).mean())


@pytest.mark.parametrize("kind", ["normal", "t3", "bimodal", "skewed"])
def test_bounded_is_valid_under_optional_stopping_for_every_distribution(kind: str) -> None:
    rng = np.random.default_rng(20261129)
    # Dice differences (range [-1, 1]) with an SD of 0.3, near the largest measured here (0.34); the
    # symmetric ones are clipped (their mean stays 0), the skewed one lies in [-0.9, 0.1].
    x = np.clip(draw(kind, rng, 0.3, (STUDIES_BOUNDED, LOOKS)), -1.0, 1.0)
    rate = false_rate(x, "bounded", bounds=(0.0, 1.0))
    print(f"bounded {kind}: false better/worse {rate:.4f}")
    assert rate <= TOL_BOUNDED


@pytest.mark.parametrize("kind", ["normal", "t3", "bimodal", "skewed"])
def test_t_under_optional_stopping(kind: str) -> None:
    rng = np.random.default_rng(20261129)
    x = draw(kind, rng, 0.02, (STUDIES, LOOKS))
    rate = false_rate(x, "t")
    print(f"t {kind}: false better/worse {rate:.4f}")
    if kind == "normal":
        assert rate <= TOL  # the guarantee
    elif kind == "skewed":
        assert rate > 4 * ALPHA  # outside its assumption: a rare collapse breaks t (about 0.6); use bounded
    else:
        # Symmetric non-normal differences: t holds nothing exactly; measured t3 ~0.02, bimodal ~0.06.
        assert rate <= 0.15


@pytest.mark.parametrize("tau", [0.2, 0.5, 2.0, 5.0])
def test_t_is_valid_for_every_prior_scale(tau: float) -> None:
    rng = np.random.default_rng(20261130)
    x = draw("normal", rng, 0.1, (STUDIES, LOOKS))
    rate = false_rate(x, "t", tau=tau)
    print(f"t normal, tau {tau}: false better/worse {rate:.4f}")
    assert rate <= TOL


def test_fixed_n_t_test_reread_after_every_seed_exceeds_alpha() -> None:
    rng = np.random.default_rng(7)
    x = draw("normal", rng, 1.0, (STUDIES, LOOKS))
    n = np.arange(2, LOOKS + 1)
    mean = np.cumsum(x, axis=1)[:, 1:] / n
    sd = np.sqrt((np.cumsum(x * x, axis=1)[:, 1:] - n * mean**2) / (n - 1))
    p = 2 * sps.t.sf(np.abs(mean / (sd / np.sqrt(n))), n - 1)
    naive = float((p < ALPHA).any(axis=1).mean())
    at_end = float((p[:, -1] < ALPHA).mean())
    print(f"fixed-n t-test re-read after every seed: {naive:.4f} (read once at n=50: {at_end:.4f})")
    assert abs(at_end - ALPHA) < 3 * math.sqrt(ALPHA * (1 - ALPHA) / STUDIES) + 1e-9  # a valid test read once
    assert naive > 4 * ALPHA  # read after every seed it is not (about 0.3)
    assert false_rate(x, "t") <= TOL  # the t CS on the same data is


@pytest.mark.parametrize(("method", "kind"), [("t", "normal"), ("bounded", "normal"), ("bounded", "skewed")])
def test_cs_covers_the_true_mean_at_every_n(method: str, kind: str) -> None:
    rng = np.random.default_rng(11)
    mu, studies, tol = (0.05, STUDIES, TOL) if method == "t" else (-0.2, STUDIES_BOUNDED, TOL_BOUNDED)
    bounds = (0.0, 1.0) if method == "bounded" else None
    x = np.clip(mu + draw(kind, rng, 0.25, (studies, LOOKS)), -1.0, 1.0)  # skewed: in [-0.95, -0.117]
    lo, hi = confidence_sequence(x, alpha=ALPHA, method=method, bounds=bounds, grid=GRID)
    miss = float(((lo > mu) | (hi < mu)).any(axis=1).mean())
    assert miss <= tol
    assert np.all(lo <= hi)
    with np.errstate(invalid="ignore"):  # inf - inf while the CS is still the whole line
        widened = (np.diff(hi - lo, axis=1) > 1e-12).any(axis=1)
    assert float(widened.mean()) <= miss  # running intersection: never widens, except after a miss
    if method == "bounded":  # and it is decisive: 50 pairs of SD 0.25 locate the mean to about ±0.15
        assert float(np.median(hi[:, -1] - lo[:, -1])) < 0.35


# ------------------------------------------------------------------------------------------ closed forms
SAMPLE = np.array([0.012, -0.004, 0.021, 0.009, 0.017, 0.003, 0.026, 0.011, -0.002, 0.015, 0.019, 0.007])


@pytest.mark.parametrize("tau", [0.3, T_PRIOR_SCALE, 1.0, 2.5])
def test_t_bayes_factor_matches_the_noncentral_t_integral(tau: float) -> None:
    """BF_n = int nct.pdf(t; nu, delta sqrt(n)) N(delta; 0, tau^2) d delta / t.pdf(t; nu) (Gönen et al. 2005)."""
    for k in (3, 7, len(SAMPLE)):
        for m in (0.0, 0.005, 0.02):
            x = SAMPLE[:k]
            t = (x.mean() - m) / (x.std(ddof=1) / math.sqrt(k))
            num, _ = integrate.quad(
                lambda d, t=t, k=k: sps.nct.pdf(t, k - 1, d * math.sqrt(k)) * sps.norm.pdf(d, scale=tau),
                -np.inf,
                np.inf,
                epsabs=0,
                epsrel=1e-13,
            )
            assert t_bayes_factor(x, m, tau) == pytest.approx(num / sps.t.pdf(t, k - 1), rel=1e-9)


@pytest.mark.parametrize(("tau", "first"), [(T_PRIOR_SCALE, 6), (1.0, 5), (0.5, 7), (2.0, 4)])
def test_t_cs_ends_where_the_bayes_factor_reaches_one_over_alpha(tau: float, first: int) -> None:
    lo, hi = t_cs(SAMPLE, ALPHA, tau)
    for k in range(first, len(SAMPLE) + 1):
        assert t_bayes_factor(SAMPLE[:k], lo[k - 1], tau) == pytest.approx(1 / ALPHA, rel=1e-9)
        assert t_bayes_factor(SAMPLE[:k], hi[k - 1], tau) == pytest.approx(1 / ALPHA, rel=1e-9)
    # the whole line until the bracket's limit r = 1 + n tau^2 exceeds sqrt(r)^{2/n} / alpha^{2/n}
    assert np.all(np.isinf(lo[: first - 1])) and np.all(np.isinf(hi[: first - 1]))
    # wider than the fixed-n t interval at every n (the price of looking after every seed)
    n = np.arange(first, 51)
    assert np.all(t_boundary(n, ALPHA, tau) > sps.t.ppf(1 - ALPHA / 2, n - 1))


def test_default_prior_scale_is_tightest_where_effects_of_interest_are_decided() -> None:
    """Over n in [10, 60] the default tau's boundary is at most 3.8 % above the best tau for each n (at
    alpha 0.05); the best tau in that worst case, on a 0.01 grid, is 0.78 (3.5 %)."""
    n = np.arange(10, 61)
    taus = np.round(np.arange(0.3, 1.51, 0.01), 2)
    bound = np.array([t_boundary(n, ALPHA, tau) for tau in taus])  # (tau, n)
    excess = (bound / bound.min(axis=0)).max(axis=1)
    assert taus[excess.argmin()] == pytest.approx(0.78)
    mine = float((t_boundary(n, ALPHA, T_PRIOR_SCALE) / bound.min(axis=0)).max())
    assert excess.min() < mine < 1.038 < excess[taus == 1.0][0] < excess[taus == 0.5][0]
    # the z-statistic analogue's optimum a = n tau^2 solves a = log(1 + a) + 2 log(1/alpha): a ≈ 8.21
    a = 8.211968
    assert a - math.log1p(a) - 2 * math.log(1 / ALPHA) == pytest.approx(0.0, abs=1e-5)


def _eb_loop(y: list[float], alpha: float, c: float = 0.5) -> list[tuple[float, float]]:
    """Waudby-Smith & Ramdas (2024) PrPl-EB, eq. (13), written as a plain loop over y in [0, 1]."""
    out, mu_prev, s2_prev = [], 0.5, 0.25
    sum_y = sum_sq = sum_l = sum_ly = sum_vpsi = 0.0
    for t, yt in enumerate(y, start=1):
        lam = min(math.sqrt(2 * math.log(2 / alpha) / (s2_prev * t * math.log(1 + t))), c)
        sum_l += lam
        sum_ly += lam * yt
        sum_vpsi += 4 * (yt - mu_prev) ** 2 * (-math.log(1 - lam) - lam) / 4
        sum_y += yt
        mu = (0.5 + sum_y) / (t + 1)
        sum_sq += (yt - mu) ** 2
        mu_prev, s2_prev = mu, (0.25 + sum_sq) / (t + 1)
        half = (math.log(2 / alpha) + sum_vpsi) / sum_l
        out.append((max(sum_ly / sum_l - half, 0.0), min(sum_ly / sum_l + half, 1.0)))
    return out


def test_eb_cs_matches_the_paper_formula() -> None:
    rng = np.random.default_rng(3)
    y = rng.beta(2, 5, 40)
    lo, hi = eb_cs(y, ALPHA, 0.0, 1.0)
    ref = _eb_loop(list(y), ALPHA)
    assert np.allclose(lo, [r[0] for r in ref], rtol=0, atol=1e-12)
    assert np.allclose(hi, [r[1] for r in ref], rtol=0, atol=1e-12)
    # on another range it is the same CS, rescaled
    lo2, hi2 = eb_cs(-1 + 2 * y, ALPHA, -1.0, 1.0)
    assert np.allclose(lo2, -1 + 2 * lo, atol=1e-12) and np.allclose(hi2, -1 + 2 * hi, atol=1e-12)


def _capital_loop(y: list[float], m: float, alpha: float, c: float = 0.5) -> list[float]:
    """Hedged capital K_t(m) of Waudby-Smith & Ramdas (2024), Section 4.3, as a plain loop."""
    out, k_up, k_down, s2_prev, sum_y, sum_sq = [], 1.0, 1.0, 0.25, 0.0, 0.0
    for t, yt in enumerate(y, start=1):
        bet = math.sqrt(2 * math.log(2 / alpha) / (s2_prev * t * math.log(1 + t)))
        k_up *= 1 + min(bet, c / m) * (yt - m)
        k_down *= 1 - min(bet, c / (1 - m)) * (yt - m)
        sum_y += yt
        sum_sq += (yt - (0.5 + sum_y) / (t + 1)) ** 2
        s2_prev = (0.25 + sum_sq) / (t + 1)
        out.append(0.5 * k_up + 0.5 * k_down)
    return out


def test_betting_cs_matches_the_paper_formula() -> None:
    rng = np.random.default_rng(3)
    y = rng.beta(2, 5, 40)
    ms = np.array([0.1, 0.2857, 0.5, 0.9])
    ours = log_capital(y, ms, ALPHA)  # (40, 4)
    for j, m in enumerate(ms):
        assert np.allclose(np.exp(ours[:, j]), _capital_loop(list(y), float(m), ALPHA), rtol=1e-9, atol=0)
    # the CS's ends are the first grid points where the capital reaches 1/alpha
    grid = 2001
    lo, hi = bounded_cs(y, ALPHA, 0.0, 1.0, grid=grid)
    step = 1 / (grid - 1)
    for t in (10, 25, 40):
        k = _capital_loop(list(y[:t]), float(lo[t - 1]), ALPHA)[-1]
        k_in = _capital_loop(list(y[:t]), float(lo[t - 1]) + step, ALPHA)[-1]
        assert k >= 1 / ALPHA > k_in
        k = _capital_loop(list(y[:t]), float(hi[t - 1]), ALPHA)[-1]
        k_in = _capital_loop(list(y[:t]), float(hi[t - 1]) - step, ALPHA)[-1]
        assert k >= 1 / ALPHA > k_in
    assert lo[-1] < y.mean() < hi[-1]
    # it is narrower than the closed-form empirical-Bernstein CS
    elo, ehi = eb_cs(y, ALPHA, 0.0, 1.0)
    assert hi[-1] - lo[-1] < ehi[-1] - elo[-1]


# --------------------------------------------------------------------------------------------- decide
def test_decide_orients_by_direction_and_reports_when() -> None:
    d = decide(SAMPLE, margin=0.001, alpha=ALPHA, method="t")
    assert d.decision is Outcome.BETTER and d.cs_low is not None and d.cs_low > 0
    assert d.n == 12 and d.estimate == pytest.approx(SAMPLE.mean())
    # the same differences of val_loss (lower is better) are worse
    assert (
        decide(SAMPLE, margin=0.001, alpha=ALPHA, method="t", direction="minimize").decision is Outcome.WORSE
    )
    # decided_at_n: the first prefix from which the outcome held
    firsts = [decide(SAMPLE[:k], margin=0.001, alpha=ALPHA, method="t").decision for k in range(1, 13)]
    assert d.decided_at_n == firsts.index(Outcome.BETTER) + 1
    assert all(o is Outcome.BETTER for o in firsts[d.decided_at_n - 1 :])
    # Bonferroni: a family of 1000 comparisons runs each at alpha / 1000 and is wider
    wide = decide(SAMPLE, margin=0.001, alpha=ALPHA, method="t", family_size=1000)
    assert wide.alpha == ALPHA / 1000 and wide.cs_low is not None and wide.cs_low < d.cs_low


def test_decide_equivalent_and_undecided() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(0.0, 0.002, 40)
    assert decide(x, margin=0.01, alpha=ALPHA, method="t").decision is Outcome.EQUIVALENT
    assert decide(x[:3], margin=0.01, alpha=ALPHA, method="t").decision is Outcome.UNDECIDED
    assert decide(x, margin=0.0001, alpha=ALPHA, method="t").decision is Outcome.UNDECIDED
    empty = decide([], margin=0.01, alpha=ALPHA, method="t")
    assert (empty.n, empty.estimate, empty.cs_low, empty.decision) == (0, None, None, Outcome.UNDECIDED)


def test_intervals_never_leave_the_range_of_a_difference() -> None:
    x = [0.9, -0.95, 0.99, -0.8, 0.7, 0.95]
    for method in ("t", "bounded"):
        d = decide(x, margin=0.01, alpha=ALPHA, method=method, bounds=(0.0, 1.0))
        assert d.cs_low is not None and d.cs_high is not None
        assert -1.0 <= d.cs_low <= d.cs_high <= 1.0


def test_bad_arguments_name_the_field() -> None:
    with pytest.raises(SpecError, match="alpha"):
        decide(SAMPLE, margin=0.01, alpha=0.7, method="t")
    with pytest.raises(SpecError, match="margin"):
        decide(SAMPLE, margin=-0.1, alpha=0.05, method="t")
    with pytest.raises(SpecError, match="bounded"):
        decide(SAMPLE, margin=0.01, alpha=0.05, method="bounded", bounds=(0.0, math.inf))
    with pytest.raises(SpecError, match="outside"):
        decide([0.5, 1.5], margin=0.01, alpha=0.05, method="bounded", bounds=(0.0, 1.0))
    with pytest.raises(ValueError):
        decide(SAMPLE, margin=0.01, alpha=0.05, method="z")
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(SpecError, match="prior_scale"):
            decide(SAMPLE, margin=0.01, alpha=0.05, method="t", prior_scale=bad)


def test_prior_scale_reaches_the_decision() -> None:
    """decide(prior_scale=tau) reads the CS of t_cs(tau) (running intersection of the prefixes)."""
    for tau in (0.3, 2.0):
        lo, hi = t_cs(SAMPLE, ALPHA, tau)
        d = decide(SAMPLE, margin=0.001, alpha=ALPHA, method="t", prior_scale=tau)
        assert d.cs_low == pytest.approx(float(np.max(lo))) and d.cs_high == pytest.approx(float(np.min(hi)))
    assert decide(SAMPLE, margin=0.001, alpha=ALPHA, method="t", prior_scale=0.3).cs_low != d.cs_low


def test_trial_score() -> None:
    h = [0.50, 0.61, None, 0.58, 0.55]
    assert trial_score(h, "maximize", "last") == 0.55
    assert trial_score(h, "maximize", "best") == 0.61
    assert trial_score(h, "minimize", "best") == 0.50
    assert trial_score(h, "maximize", "mean_last_k", k=2) == pytest.approx((0.58 + 0.55) / 2)
    assert trial_score(h, "maximize", "mean_last_k", k=10) == pytest.approx((0.50 + 0.61 + 0.58 + 0.55) / 4)
    assert trial_score([None, float("nan")], "maximize", "last") is None
