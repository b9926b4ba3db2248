"""What a study's MLflow and Optuna records tell a user, on real Ray, MLflow (SQLite), Optuna and SQLite.

One adaptive-free study with ``decide:`` runs twice (a resume): the cell runs carry the aggregates and the
decisions of the one statistics path, the study run the summary; run names are short; standard MLflow tags
are set; no ``final_*`` copies and no ``noop.*`` params on real trials; a resume does not reopen the first
submit's runs; Optuna has metric names, study and trial attributes, and every epoch as an intermediate value.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import optuna
import pytest
from mlflow.tracking import MlflowClient

from orchestrator.db import ResultsDB
from orchestrator.decisions import study_decisions
from orchestrator.driver import StudyRunner
from orchestrator.report.tables import cell_inputs, load_study_data
from orchestrator.run_names import cell_label, trial_label
from orchestrator.settings import Settings
from orchestrator.stats import summarise_cells
from orchestrator.study import load_study
from orchestrator.tracking import Tracker, final_rows, tracked_params
from tests.studyfiles import write_study
from tests.test_orchestrator import assert_consistent

pytestmark = pytest.mark.usefixtures("ray_local")


def study_doc(name: str, seeds: int) -> dict[str, Any]:
    return {
        "version": 1,
        "name": name,
        "description": "which arm wins",
        "base": {"kind": "noop", "epochs": 3, "noop": {"noise_sd": 0.02, "sleep_s": 0.05}},
        "arms": {"plain": {}, "clear": {"iel": {"type": "tv"}, "noop": {"effect": 0.15}}},
        "baseline": "plain",
        "factors": {"noise.rate": [0.0, 0.4]},
        "seeds": seeds,
        "decide": {"metric": "dice", "margin": 0.05, "alpha": 0.05, "method": "t"},
        "max_concurrent": 2,
        "retries": 0,
    }


def _submit(path: Path, home: Path) -> tuple[float, float]:
    spec = load_study(path)
    start = time.time()
    StudyRunner(spec, Settings.resolve(home=str(home))).run()
    return start, time.time()


def test_study_runs_carry_the_aggregates_and_a_resume_does_not_reopen_them(
    tmp_path: Path, iel_home: Path
) -> None:
    first = _submit(write_study(tmp_path, study_doc("wins", seeds=3)), iel_home)
    second = _submit(write_study(tmp_path, study_doc("wins", seeds=5)), iel_home)  # a resume: 2 more seeds
    settings = Settings.resolve(home=str(iel_home))
    db = ResultsDB(settings.db_url)
    client = MlflowClient(settings.mlflow_uri)
    exp = client.get_experiment_by_name("iel/wins")
    runs = client.search_runs([exp.experiment_id], max_results=10000)
    role = {r.info.run_id: r.data.tags["iel.role"] for r in runs}

    # 4. every study and cell run lies within its own submit: none is reopened, none spans the gap
    for r in runs:
        if r.data.tags["iel.role"] in ("study", "cell"):
            window = first if r.data.tags["iel.submit"] == "1" else second
            assert window[0] * 1000 - 1 <= r.info.start_time <= r.info.end_time <= window[1] * 1000 + 1
            assert r.info.status == "FINISHED"
    studies = sorted((r for r in runs if role[r.info.run_id] == "study"), key=lambda r: r.info.start_time)
    assert [r.data.tags["iel.submit"] for r in studies] == ["1", "2"]
    assert [r.info.run_name for r in studies] == ["wins", "wins · submit 2"]

    # 1. the cell runs of the last submit carry the statistics path's numbers, the study run the summary
    data = load_study_data(db, "wins")
    stats = {(s.cell, s.metric): s for s in summarise_cells(cell_inputs(data), ["dice"])}
    decisions = {d.cell: d for d in study_decisions(db, "wins", load_study(tmp_path / "wins.yaml").decide)}
    assert decisions
    last_cells = [r for r in runs if role[r.info.run_id] == "cell" and r.data.tags["iel.submit"] == "2"]
    assert len(last_cells) == 4
    for r in last_cells:
        key = r.data.tags["iel.cell"]
        s, m = stats[(key, "dice")], r.data.metrics
        assert (m["n_trials"], m["dice_n"]) == (5, 5)
        assert m["dice_mean"] == pytest.approx(s.mean) and m["dice_ci_low"] == pytest.approx(s.ci_low)
        assert m["dice_ci_high"] == pytest.approx(s.ci_high)
        assert r.info.run_name.startswith(cell_label(data.cell(key).factors))
        if key in decisions:
            dec = decisions[key].decision
            assert r.data.tags["iel.decision"] == dec.decision.value
            assert m["decision_estimate"] == pytest.approx(dec.estimate)
            assert (m["decision_cs_low"], m["decision_cs_high"]) == pytest.approx((dec.cs_low, dec.cs_high))
            assert m.get("decided_at_n") == dec.decided_at_n
        else:
            assert "iel.decision" not in r.data.tags  # a baseline is not compared
        # updated while the study ran: the history of n_trials steps through the finished-trial counts
        history = sorted((h.step, h.value) for h in client.get_metric_history(r.info.run_id, "n_trials"))
        assert history[-1] == (20, 5.0) and [v for _, v in history] == sorted(v for _, v in history)
    top = studies[-1]
    assert top.data.metrics["trials_complete"] == 20
    assert top.data.tags["iel.best"].count("clear") == 2  # the clear arm wins both noise rows
    assert (
        top.data.tags["iel.decisions"].count(" vs ") == 2
        and "Best arm" in top.data.tags["mlflow.note.content"]
    )
    totals = [h.value for h in client.get_metric_history(top.info.run_id, "trials_complete")]
    assert len(totals) >= 2, "the study run's summary was written only once, not while the study ran"

    # 2. + 3. trials: short names, standard tags, no final_* copies, no noop.* params on real trials
    trials = {t.mlflow_run_id: t for t in db.trials("wins")}
    for r in runs:
        if role[r.info.run_id] != "trial":
            continue
        t = trials[r.info.run_id]
        assert r.info.run_name == trial_label(data.cell(t.cell_key).factors, t.seed)
        assert r.data.tags["mlflow.user"] and r.data.tags["mlflow.source.name"]
        assert not [k for k in r.data.metrics if k.startswith("final_")]
        assert (
            "noop.effect" in r.data.params
        )  # a no-op trial's noop section applies (training: see test_mlflow_models)

    # 7. Optuna: metric names, study attributes, the trial's MLflow run, every epoch as an intermediate value
    storage = optuna.storages.RDBStorage(settings.db_url)
    for cell in data.cells:
        study = optuna.load_study(study_name=cell.optuna_study_name, storage=storage)
        assert study.metric_names == ["dice"]
        assert study.user_attrs["cell"] == cell.key and study.user_attrs["iel_study"] == "wins"
        assert study.user_attrs["factors"] == cell.factors
        assert study.user_attrs["mlflow_experiment_id"] == exp.experiment_id
        for t in db.trials("wins"):
            if t.cell_key != cell.key:
                continue
            ot = study.trials[t.optuna_trial_number]
            assert ot.user_attrs["mlflow_run_id"] == t.mlflow_run_id
            epochs = {int(e): v for e, n, v in db.epoch_metrics(t.id) if n == "dice"}
            assert ot.intermediate_values == epochs and len(epochs) == 3
    assert_consistent(iel_home, "wins")
    db.close()


def test_a_quote_in_a_tag_value_is_found_not_pasted_into_a_filter(tmp_path: Path) -> None:
    """issue 12.11: a factor value with ``'`` (here a cell key) must not break the run lookup."""
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", str(tmp_path / "artifacts"))
    exp = tracker.experiment("s")
    tags = {"iel.role": "cell", "iel.cell": "data.root=/data/o'brien's \"cells\""}
    run = tracker.ensure_run(exp, "c", tags)
    other = tracker.ensure_run(exp, "d", {"iel.role": "cell", "iel.cell": "data.root=/data/o"})
    assert tracker.ensure_run(exp, "c", tags) == run != other
    assert tracker.find_run(exp, {"iel.cell": "' or '1'='1"}) is None


def test_final_values_are_logged_only_when_they_differ_from_the_last_epoch() -> None:
    epochs = {1: {"dice": 0.5}, 2: {"dice": 0.6, "loss": 0.3}}
    assert final_rows(epochs, {"dice": 0.6, "loss": None, "test_dice": 0.7}) == [(2, "test_dice", 0.7)]
    assert final_rows(epochs, {"dice": 0.65}) == [(2, "dice", 0.65)]  # latest value = final
    assert final_rows({}, {"dice": 0.1}) == [(0, "dice", 0.1)]


def test_run_names_are_short_and_params_apply() -> None:
    factors = {"iel.type": "heat", "iel.dt": 0.05, "iel.steps": 10, "noise.rate": 0.4}
    assert trial_label(factors, 3) == "heat dt0.05 N10 · noise 0.4 · seed 3"
    assert trial_label({"arm": "heat_mild", "noise.rate": 0.4}, 3) == "heat_mild · noise 0.4 · seed 3"
    assert trial_label({}, 0, 7) == "base · seed 0 · #7"
    assert "noop" not in tracked_params({"kind": "train", "noop": {"effect": 0.1}, "epochs": 2})
    assert "noop" in tracked_params({"kind": "noop", "noop": {"effect": 0.1}})
