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


# ----------------------------------------------------------------------- one statistics path (issue 11)
# A study written straight into a real SQLite results database: two noise rates x {none, heat} x 4 seeds,
# known final values.  The heat cell at noise 0.4 lacks dice on seed 3 (a missing metric); val_loss is
# recorded everywhere.  The second row's best dice is NOT the table's highest, and val_loss is minimised.
DICE = {
    ("0.0", "none"): [0.80, 0.82, 0.81, 0.83],
    ("0.0", "heat"): [0.84, 0.85, 0.83, 0.86],  # the table's highest dice
    ("0.4", "none"): [0.60, 0.61, 0.59, 0.62],
    ("0.4", "heat"): [0.66, 0.64, 0.65, None],
}
LOSS = {
    ("0.0", "none"): [0.30, 0.31, 0.29, 0.30],
    ("0.0", "heat"): [0.25, 0.26, 0.27, 0.24],
    ("0.4", "none"): [0.50, 0.52, 0.49, 0.51],
    ("0.4", "heat"): [0.55, 0.54, 0.56, 0.57],
}


@pytest.fixture
def filled_db(tmp_path):  # type: ignore[no-untyped-def]
    from orchestrator.db import ResultsDB, TrialState

    url = f"sqlite:///{tmp_path}/iel.db"
    db = ResultsDB(url)
    sid = db.ensure_study("agree", "", {"baseline": {"iel.type": "none"}, "seeds": 4})
    for (rate, arm), dice in DICE.items():
        key = f"noise.rate={rate},iel.type={arm}"
        cid = db.ensure_cell(sid, key, {"noise.rate": float(rate), "iel.type": arm}, arm == "none", None)
        for seed, (d, loss) in enumerate(zip(dice, LOSS[(rate, arm)])):
            h = f"{key}-{seed}".encode().hex()[-64:]
            tr = db.ensure_trial(sid, cid, seed, h, {"k": key}, None, "v")
            db.mark_running(tr.id, attempt=1, mlflow_run_id=None, host="h", device="cpu")
            final = {"val_loss": loss, **({"dice": d} if d is not None else {})}
            db.finish_trial(tr.id, TrialState.COMPLETE, final_metrics=final, duration_s=1.0)
    yield db, tmp_path
    db.close()


def test_results_and_report_give_the_same_numbers(filled_db, capsys) -> None:  # type: ignore[no-untyped-def]
    import json

    from orchestrator.cli import main
    from orchestrator.report.tables import compare, load_study_data, summarise
    from orchestrator.results import results_rows

    db, tmp = filled_db
    rows = {r["cell"]: r for r in results_rows(db, "agree", metric="dice", baseline={"iel.type": "none"})}
    data = load_study_data(db, "agree")
    stats = {s.cell: s for s in summarise(data) if s.metric == "dice"}
    comps = {c.cell: c for c in compare(data) if c.metric == "dice"}
    assert set(rows) == set(stats) and len(rows) == 4
    for key, s in stats.items():
        r = rows[key]
        assert (r["n"], r["mean"], r["std"], r["ci_low"], r["ci_high"], r["best"]) == (
            s.n,
            s.mean,
            s.std,
            s.ci_low,
            s.ci_high,
            s.best,
        )
    for key, c in comps.items():
        r = rows[key]
        assert (r["diff"], r["diff_ci_low"], r["diff_ci_high"], r["p_t"], r["p_holm"]) == (
            c.mean_diff,
            c.ci_low,
            c.ci_high,
            c.p_t,
            c.p_t_holm,
        )
    # the missing dice is missing: 3 values, their mean, and 3 pairs (seed 3 unpaired)
    heat4 = rows["noise.rate=0.4,iel.type=heat"]
    assert heat4["n"] == 3 and heat4["mean"] == pytest.approx(np.mean([0.66, 0.64, 0.65]))
    d = np.subtract([0.66, 0.64, 0.65], [0.60, 0.61, 0.59])
    assert heat4["diff"] == pytest.approx(d.mean()) and heat4["p_t"] == pytest.approx(
        sps.ttest_1samp(d, 0.0).pvalue
    )
    # best arm per row, not the table's single highest: heat wins both rows for dice
    assert [k for k, r in rows.items() if r["best"]] == [
        "noise.rate=0.0,iel.type=heat",
        "noise.rate=0.4,iel.type=heat",
    ]
    # Holm within the metric's two comparisons only (the report's val_loss comparisons are not in it)
    p = [rows[k]["p_t"] for k in ("noise.rate=0.0,iel.type=heat", "noise.rate=0.4,iel.type=heat")]
    assert [rows[k]["p_holm"] for k in ("noise.rate=0.0,iel.type=heat", "noise.rate=0.4,iel.type=heat")] == (
        pytest.approx(holm(p))
    )
    # val_loss: lower is better, per row
    loss_rows = results_rows(db, "agree", metric="val_loss", baseline={"iel.type": "none"})
    assert {r["cell"] for r in loss_rows if r["best"]} == {
        "noise.rate=0.0,iel.type=heat",
        "noise.rate=0.4,iel.type=none",
    }
    # intervals stay in the metric's range: dice <= 1
    assert all(r["ci_high"] <= 1.0 for r in rows.values())
    # `iel report` writes the same numbers to report.json
    out = tmp / "report"
    assert (
        main(["report", "agree", "--home", str(tmp), "--db", db.url, "--out", str(out), "--no-mlflow"]) == 0
    )
    doc = json.loads((out / "report.json").read_text())
    for s in (s for s in doc["summaries"] if s["metric"] == "dice"):
        r = rows[s["cell"]]
        assert [s[k] for k in ("n", "mean", "std", "ci_low", "ci_high", "best")] == [
            r[k] for k in ("n", "mean", "std", "ci_low", "ci_high", "best")
        ]
    dice_cmp = [c for c in doc["comparisons"] if c["metric"] == "dice"]
    assert len(dice_cmp) == 2
    for c in dice_cmp:
        r = rows[c["cell"]]
        assert [c["mean_diff"], c["ci_low"], c["ci_high"], c["p_t"], c["p_t_holm"]] == [
            r["diff"],
            r["diff_ci_low"],
            r["diff_ci_high"],
            r["p_t"],
            r["p_holm"],
        ]
    capsys.readouterr()
    # the CLI prints the same rows as JSON
    assert main(["results", "agree", "--home", str(tmp), "--db", db.url, "--format", "json"]) == 0
    printed = {r["cell"]: r for r in json.loads(capsys.readouterr().out)}
    for key, r in rows.items():
        assert printed[key]["mean"] == pytest.approx(r["mean"], rel=1e-15)
        assert printed[key].get("p_holm") == (pytest.approx(r["p_holm"]) if r.get("p_holm") else None)


def test_one_path_clips_and_decides() -> None:
    from orchestrator.stats.cells import CellInput, compare_cells, decide_cells, summarise_cells

    # a cell at the top of the range: its t interval would pass 1.0
    cells = [
        CellInput(
            "base", "all", "none", True, None, tuple((s, {"dice": v}) for s, v in enumerate([0.9, 0.91, 0.9]))
        ),
        CellInput(
            "arm",
            "all",
            "heat",
            False,
            "base",
            tuple((s, {"dice": v}) for s, v in enumerate([0.99, 1.0, 0.93])),
        ),
    ]
    (_, arm) = summarise_cells(cells, ["dice"])
    assert arm.ci_high == 1.0 and arm.ci_low is not None and arm.ci_low < arm.mean
    (c,) = compare_cells(cells, ["dice"])
    assert c.ci_low is not None and c.ci_high is not None and -1.0 <= c.ci_low <= c.ci_high <= 1.0
    assert compare_cells(cells, ["dice"], searched=True) == []
    (d,) = decide_cells(cells, metric="dice", margin=0.01, alpha=0.05, method="t")
    assert (d.cell, d.baseline_cell, d.decision.n, d.decision.alpha) == ("arm", "base", 3, 0.05)
    assert d.decision.decision.value == "undecided"  # three pairs never decide at alpha 0.05 (t needs n >= 5)
