"""The statistics of reports against SciPy on fixed data (orchestrator.stats and the report's tables)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from orchestrator.report.tables import assign_rows, factor_order
from orchestrator.stats import bootstrap_interval, describe, holm, paired, t_interval

X = [0.61, 0.64, 0.59, 0.66, 0.62, 0.63, 0.60, 0.65]
ARM = [0.712, 0.695, 0.731, 0.688, 0.704, 0.726]
BASE = [0.690, 0.699, 0.702, 0.671, 0.688, 0.701]


def test_describe_matches_scipy_t_interval() -> None:
    s = describe(X)
    lo, hi = sps.t.interval(0.95, len(X) - 1, loc=np.mean(X), scale=sps.sem(X))
    assert s.n == 8
    assert s.mean == pytest.approx(np.mean(X), abs=1e-15)
    assert s.std == pytest.approx(np.std(X, ddof=1), rel=1e-12)
    assert (s.ci_low, s.ci_high) == (pytest.approx(lo, rel=1e-12), pytest.approx(hi, rel=1e-12))
    # A 99 % interval is wider and still centred on the mean.
    lo99, hi99 = t_interval(X, level=0.99)
    assert lo99 < s.ci_low and hi99 > s.ci_high
    assert (lo99 + hi99) / 2 == pytest.approx(s.mean)


def test_describe_small_samples() -> None:
    one = describe([0.5])
    assert (one.n, one.mean, one.std, one.ci_low, one.ci_high) == (1, 0.5, None, None, None)
    none = describe([])
    assert none.n == 0 and math.isnan(none.mean)
    # two values: t_{0.975,1} = 12.706...
    two = describe([1.0, 3.0])
    assert two.ci_high - two.mean == pytest.approx(
        sps.t.ppf(0.975, 1) * np.std([1, 3], ddof=1) / math.sqrt(2)
    )


def test_bootstrap_interval_matches_scipy_percentile_bootstrap() -> None:
    ours = bootstrap_interval(X, n_resamples=4000, seed=1)
    ref = sps.bootstrap(
        (np.array(X),), np.mean, method="percentile", n_resamples=4000, random_state=7, confidence_level=0.95
    ).confidence_interval
    width = ref.high - ref.low
    assert ours[0] == pytest.approx(ref.low, abs=0.1 * width)
    assert ours[1] == pytest.approx(ref.high, abs=0.1 * width)
    assert bootstrap_interval(X, seed=3) == bootstrap_interval(X, seed=3)  # deterministic for a seed
    assert bootstrap_interval([0.4] * 5) == (0.4, 0.4)
    boot = describe(X, bootstrap=True)
    assert (boot.ci_low, boot.ci_high) == bootstrap_interval(X)


def test_paired_matches_scipy() -> None:
    p = paired(ARM, BASE)
    d = np.array(ARM) - np.array(BASE)
    assert p.n == 6
    assert p.mean_diff == pytest.approx(d.mean(), rel=1e-12)
    lo, hi = sps.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=sps.sem(d))
    assert (p.ci_low, p.ci_high) == (pytest.approx(lo, rel=1e-12), pytest.approx(hi, rel=1e-12))
    assert p.p_t == pytest.approx(sps.ttest_rel(ARM, BASE).pvalue, rel=1e-12)
    assert p.p_wilcoxon == pytest.approx(sps.wilcoxon(ARM, BASE).pvalue, rel=1e-12)
    assert p.effect_size == pytest.approx(d.mean() / d.std(ddof=1), rel=1e-12)
    # The paired t-test is the one-sample t-test of the differences.
    assert p.p_t == pytest.approx(sps.ttest_1samp(d, 0.0).pvalue, rel=1e-12)


def test_paired_exact_values_and_degenerate_cases() -> None:
    # Wilcoxon, 5 pairs all improving: exact two-sided p = 2 / 2^5.
    assert paired([1, 2, 3, 4, 5.5], [0, 0, 0, 0, 0]).p_wilcoxon == pytest.approx(2 / 32)
    same = paired([0.5, 0.6, 0.7], [0.5, 0.6, 0.7])
    assert (same.mean_diff, same.p_t, same.p_wilcoxon, same.effect_size) == (0.0, 1.0, 1.0, None)
    single = paired([0.7], [0.6])
    assert single.mean_diff == pytest.approx(0.1) and single.p_t is None and single.ci_low is None
    with pytest.raises(ValueError, match="equal lengths"):
        paired([1.0, 2.0], [1.0])


def test_holm_against_its_definition() -> None:
    # Sorted 0.005, 0.01, 0.03, 0.04 -> 4*0.005, 3*0.01, 2*0.03, max(0.06, 1*0.04).
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.2, None, 0.5]) == [pytest.approx(0.4), None, pytest.approx(0.5)]
    assert holm([0.9, 0.8]) == [1.0, 1.0]  # capped at 1
    rng = np.random.default_rng(0)
    p = list(rng.uniform(0, 0.2, size=9))
    adj = holm(p)
    order = np.argsort(p)
    m = len(p)
    expected = np.maximum.accumulate([min(1.0, (m - r) * p[i]) for r, i in enumerate(order)])
    assert [adj[i] for i in order] == pytest.approx(list(expected))
    assert all(a >= b for a, b in zip(adj, p))  # never smaller than the raw p-value


def test_rows_pair_each_arm_with_the_baseline_of_its_row() -> None:
    cells = [
        ("noise.rate=0.0,iel.type=none", {"iel.type": "none", "noise.rate": 0.0}, True),
        (
            "noise.rate=0.0,iel.type=heat,iel.steps=5",
            {"iel.type": "heat", "noise.rate": 0.0, "iel.steps": 5},
            False,
        ),
        ("noise.rate=0.4,iel.type=none", {"iel.type": "none", "noise.rate": 0.4}, True),
        (
            "noise.rate=0.4,iel.type=heat,iel.steps=5",
            {"iel.type": "heat", "noise.rate": 0.4, "iel.steps": 5},
            False,
        ),
        (
            "noise.rate=0.4,iel.type=heat,iel.steps=9",
            {"iel.type": "heat", "noise.rate": 0.4, "iel.steps": 9},
            False,
        ),
    ]
    order = factor_order([c[0] for c in cells], ["iel.steps", "iel.type", "noise.rate"])
    assert order == ("noise.rate", "iel.type", "iel.steps")
    rows = assign_rows(cells, ["iel.type"], order)
    assert rows["noise.rate=0.0,iel.type=none"] == ("noise.rate=0.0", "iel.type=none", None)
    assert rows["noise.rate=0.4,iel.type=heat,iel.steps=9"] == (
        "noise.rate=0.4",
        "iel.type=heat,iel.steps=9",
        "noise.rate=0.4,iel.type=none",
    )
    assert rows["noise.rate=0.0,iel.type=heat,iel.steps=5"][2] == "noise.rate=0.0,iel.type=none"
    # Without arm factors every cell is in one row and compared with nothing.
    flat = assign_rows(cells, [], order)
    assert {r for r, _, _ in flat.values()} == {"all"} and all(b is None for _, _, b in flat.values())
