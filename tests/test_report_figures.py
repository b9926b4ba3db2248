"""Report figures and verdicts on a real SQLite results database filled with known values (no training):
axis limits and bands read back from the matplotlib figures stay inside each metric's range, every seed is
drawn, and the verdicts that open the report say what the statistics path computed."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from matplotlib.collections import PolyCollection
from scipy import stats as sps

from orchestrator.db import ResultsDB, TrialState
from orchestrator.report import plots
from orchestrator.report.build import build_report, training_curves
from orchestrator.report.seedplots import MEAN_LW, SEED_LW, STRIP_OFFSET, metric_limits
from orchestrator.report.tables import compare, load_study_data, summarise
from orchestrator.report.verdicts import verdicts
from orchestrator.settings import Settings
from orchestrator.stats import holm

# cell -> seed -> final dice; the heat arm at noise 0.4 is far better on every seed, at noise 0.0 the two
# seeds disagree wildly (its t interval would run far outside [0, 1])
DICE = {
    ("0.0", "none"): [0.50, 0.52, 0.51],
    ("0.0", "heat"): [0.05, 0.98, 0.60],
    ("0.4", "none"): [0.40, 0.42, 0.41],
    ("0.4", "heat"): [0.70, 0.73, 0.71],
}


def _fill(url: str, spec: dict) -> None:
    with ResultsDB(url) as db:
        sid = db.ensure_study("figs", "figure test", spec)
        n = 0
        for (rate, itype), dice in DICE.items():
            key = f"noise.rate={rate},iel.type={itype}"
            cid = db.ensure_cell(
                sid, key, {"noise.rate": float(rate), "iel.type": itype}, itype == "none", None
            )
            for seed, d in enumerate(dice):
                tr = db.ensure_trial(sid, cid, seed, f"{n:064d}", {"seed": seed}, None, "v")
                n += 1
                db.mark_running(tr.id, attempt=1, mlflow_run_id=None, host="h", device="cpu")
                # a noisy curve ending at d: epoch 1 at d - 0.3 (clipped), epoch 2 at d; loss falls
                epochs = [
                    (1, "dice", max(d - 0.3, 0.0)),
                    (2, "dice", d),
                    (1, "train_loss", 1.0),
                    (2, "train_loss", 0.5),
                ]
                db.finish_trial(
                    tr.id, TrialState.COMPLETE, final_metrics={"dice": d, "miou": d / 2}, duration_s=1.0,
                    epoch_metrics=epochs,
                )  # fmt: skip


@pytest.fixture
def study(tmp_path: Path) -> tuple[Settings, ResultsDB]:
    settings = Settings.resolve(home=str(tmp_path / "home"))
    settings.home.mkdir(parents=True)
    _fill(settings.db_url, {"name": "figs", "baseline": {"iel.type": "none"}})
    db = ResultsDB(settings.db_url)
    yield settings, db
    db.close()


def test_metric_limits_stay_in_the_range() -> None:
    assert metric_limits("dice", [-2.0, 4.0]) == (0.0, 1.0)
    low, high = metric_limits("dice", [0.5, 0.6])  # type: ignore[misc]
    assert 0.49 < low < 0.5 and 0.6 < high < 0.61
    assert metric_limits("val_loss", [0.0, 0.0]) == (0.0, 0.01)
    assert metric_limits("dice", [None, float("nan")]) is None


def test_cell_results_show_every_seed_and_intervals_inside_0_1(study: tuple[Settings, ResultsDB]) -> None:
    _, db = study
    data = load_study_data(db, "figs")
    stats = summarise(data)
    fig = plots.build_cell_results(data, stats, ["dice"])
    ax = fig.axes[0]
    low, high = ax.get_xlim()
    assert 0.0 <= low < 0.05 and 0.98 < high <= 1.0
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[0] == "noise.rate=0.0 · iel.type=none (baseline)" and len(labels) == 4
    for y, (cell, dice) in enumerate(zip(data.cells, DICE.values())):
        stat = next(s for s in stats if s.cell == cell.key and s.metric == "dice")
        strip = [c for c in ax.collections if np.allclose(c.get_offsets()[:, 1].mean(), y + STRIP_OFFSET)]
        assert len(strip) == 1 and sorted(strip[0].get_offsets()[:, 0]) == sorted(dice)  # every seed
        bar = [ln for ln in ax.lines if list(ln.get_ydata()) == [y, y] and len(ln.get_xdata()) == 2]
        assert [tuple(b.get_xdata()) for b in bar] == [(stat.ci_low, stat.ci_high)]
        assert 0.0 <= stat.ci_low <= stat.ci_high <= 1.0  # type: ignore[operator]
    plots._plt().close(fig)


def test_training_curves_thin_seeds_thick_mean_axis_in_range(study: tuple[Settings, ResultsDB]) -> None:
    _, db = study
    data = load_study_data(db, "figs")
    fig = plots.build_training_curves(data, training_curves(db, data), ["dice", "train_loss"])
    axes = np.array(fig.axes).reshape(len(data.rows), 2)
    for r, row in enumerate(data.rows):
        dice_ax, loss_ax = axes[r]
        thin = [ln for ln in dice_ax.lines if ln.get_linewidth() == SEED_LW]
        thick = [ln for ln in dice_ax.lines if ln.get_linewidth() == MEAN_LW]
        assert len(thin) == 6 and len(thick) == 2  # 2 arms x 3 seeds, one mean per arm
        for line, itype in zip(thick, ("none", "heat")):
            finals = DICE[(row.split("=")[1], itype)]
            assert line.get_ydata()[-1] == pytest.approx(np.mean(finals))
        low, high = dice_ax.get_ylim()
        assert low >= 0.0 and high <= 1.0
        assert loss_ax.get_ylim()[0] >= 0.0  # a loss axis does not go below 0
    plots._plt().close(fig)


def test_metric_vs_noise_bands_and_axis_inside_the_range(study: tuple[Settings, ResultsDB]) -> None:
    _, db = study
    data = load_study_data(db, "figs")
    fig = plots.build_metric_vs(data, summarise(data), "noise.rate")
    for ax, metric in zip(fig.axes, data.metrics):
        low, high = ax.get_ylim()
        assert low >= 0.0 and high <= 1.0, (metric, low, high)
        bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
        assert bands
        for band in bands:
            ys = np.concatenate([p.vertices[:, 1] for p in band.get_paths()])
            ys = ys[np.isfinite(ys)]
            assert ys.min() >= 0.0 and ys.max() <= 1.0
    plots._plt().close(fig)


def test_t_verdicts_follow_the_holm_corrected_paired_tests(study: tuple[Settings, ResultsDB]) -> None:
    _, db = study
    data = load_study_data(db, "figs")
    basis, lines = verdicts(db, data, compare(data))
    p_raw = [
        sps.ttest_rel(DICE[(r, "heat")], DICE[(r, "none")]).pvalue for r in ("0.0", "0.4")
    ]  # fmt: skip
    p_holm = holm(p_raw)
    diff = np.mean(np.array(DICE[("0.4", "heat")]) - np.array(DICE[("0.4", "none")]))
    assert "paired t-tests of final dice" in basis
    assert lines == [
        f"iel.type=heat vs iel.type=none at noise.rate=0.0: not shown (p_holm={p_holm[0]:.2g}, n=3)",
        f"iel.type=heat vs iel.type=none at noise.rate=0.4: better (p_holm={p_holm[1]:.2g}, Δ {diff:+.4f}, n=3)",
    ]
    assert p_holm[1] < 0.05 <= p_holm[0]


def test_decide_verdicts_and_the_report_opens_with_them(tmp_path: Path) -> None:
    settings = Settings.resolve(home=str(tmp_path / "home"))
    settings.home.mkdir(parents=True)
    spec = {"name": "figs", "baseline": {"iel.type": "none"}, "decide": {"metric": "dice", "method": "t"}}
    _fill(settings.db_url, spec)
    report = build_report(settings, "figs", tmp_path / "out", log_to_mlflow=False)
    text = report.path.read_text()
    head, _, rest = text.partition("## Verdicts")
    assert "## Method" not in head and "## Method" in rest  # the verdicts open the report
    items = [ln[2:] for ln in rest.split("## Method")[0].splitlines() if ln.startswith("- ")]
    assert len(items) == 2
    pattern = r"iel\.type=heat vs iel\.type=none at noise\.rate=0\.(0|4): (better|worse|equivalent|undecided), [+-]\d\.\d{4} \[[^\]]+\], (decided at|after) 3 seeds"
    assert all(re.fullmatch(pattern, item) for item in items), items
    diff = np.mean(np.array(DICE[("0.4", "heat")]) - np.array(DICE[("0.4", "none")]))
    assert f"{diff:+.4f}" in items[1]
    assert {p.name for p in report.figures} >= {
        "cell_results.png",
        "metrics_vs_noise_rate.png",
        "training_curves.png",
    }
