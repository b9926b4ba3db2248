"""End-to-end orchestration on real components: local Ray, MLflow SQLite store, Optuna RDB storage, SQLite.

The consistency check that every test ends with: each trial in our tables has its MLflow run (same state,
same final metrics) and its Optuna trial (same state); no MLflow run or Optuna trial is left RUNNING.
"""

from __future__ import annotations

import collections
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from orchestrator.db import ResultsDB, TrialState
from orchestrator.driver import StudyRunner
from orchestrator.settings import Settings
from orchestrator.study import load_study
from orchestrator.tracking import flatten
from tests.studyfiles import noop_study, write_study

pytestmark = pytest.mark.usefixtures("ray_local")

MLFLOW_STATE = {TrialState.COMPLETE: "FINISHED", TrialState.PRUNED: "KILLED", TrialState.FAILED: "FAILED"}
OPTUNA_STATE = {
    TrialState.COMPLETE: optuna.trial.TrialState.COMPLETE,
    TrialState.PRUNED: optuna.trial.TrialState.PRUNED,
    TrialState.FAILED: optuna.trial.TrialState.FAIL,
}


def run(path: Path, home: Path, **kwargs):  # type: ignore[no-untyped-def]
    spec = load_study(path)
    runner = StudyRunner(spec, Settings.resolve(home=str(home)), **kwargs)
    return runner, runner.run()


def assert_consistent(home: Path, study: str) -> list:  # type: ignore[type-arg]
    settings = Settings.resolve(home=str(home))
    db = ResultsDB(settings.db_url)
    client = MlflowClient(settings.mlflow_uri)
    storage = optuna.storages.RDBStorage(settings.db_url)
    trials = db.trials(study)
    exp = client.get_experiment_by_name(f"iel/{study}")
    runs = client.search_runs([exp.experiment_id], max_results=10000)
    assert not [r for r in runs if r.info.status == "RUNNING"], "an MLflow run was left RUNNING"
    by_id = {r.info.run_id: r for r in runs}
    optuna_trials: dict[tuple[str, int], optuna.trial.FrozenTrial] = {}
    for summary in optuna.get_all_study_summaries(storage):
        if summary.study_name.startswith(f"{study}::"):
            s = optuna.load_study(study_name=summary.study_name, storage=storage)
            for t in s.get_trials(deepcopy=False):
                assert t.state != optuna.trial.TrialState.RUNNING, "an Optuna trial was left RUNNING"
                optuna_trials[(summary.study_name, t.number)] = t
    for t in trials:
        assert t.state in MLFLOW_STATE, t
        assert t.mlflow_run_id in by_id, f"trial {t.id} has no MLflow run"
        run_ = by_id[t.mlflow_run_id]
        assert run_.info.status == MLFLOW_STATE[t.state]
        assert run_.data.tags["iel.trial_hash"] == t.trial_hash
        if t.state == TrialState.COMPLETE:
            for name, value in t.final_metrics.items():
                assert run_.data.metrics[name] == pytest.approx(value)  # the latest value is the final one
            assert not [k for k in run_.data.metrics if k.startswith("final_")], "a final_* copy was logged"
        if t.reused_from_id is None:
            ot = optuna_trials[(t.optuna_study_name, t.optuna_trial_number)]
            assert ot.state == OPTUNA_STATE[t.state]
            assert ot.user_attrs["trial_hash"] == t.trial_hash
    return trials


def max_optuna_running(home: Path, study: str) -> int:
    """The most Optuna trials of the study (all cells) that were RUNNING at one instant."""
    storage = optuna.storages.RDBStorage(Settings.resolve(home=str(home)).db_url)
    events = []
    for summary in optuna.get_all_study_summaries(storage):
        if summary.study_name.startswith(f"{study}::"):
            s = optuna.load_study(study_name=summary.study_name, storage=storage)
            for t in s.get_trials(deepcopy=False):
                events += [(t.datetime_start, 1), (t.datetime_complete, -1)]
    running = most = 0
    for _, delta in sorted(events):  # at equal times an end (-1) sorts before a start
        running += delta
        most = max(most, running)
    return most


def test_grid_study_counts_and_consistency(tmp_path: Path, iel_home: Path) -> None:
    path = write_study(tmp_path, noop_study("grid"))
    runner, outcome = run(path, iel_home)
    assert runner.plan.n_trials() == 8  # 2 noise rates x 2 lrs x 2 seeds
    assert outcome.trained == 8 and outcome.failed == 0
    trials = assert_consistent(iel_home, "grid")
    # Grid trials are asked from Optuna when they start, not all up front (which costs O(N^2) asks):
    # never more RUNNING there than max_concurrent.
    assert max_optuna_running(iel_home, "grid") <= 2
    assert len(trials) == 8
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert sorted({t.seed for t in trials}) == [0, 1]
    # per-epoch metrics are stored for every epoch
    db = ResultsDB(Settings.resolve(home=str(iel_home)).db_url)
    epochs = {e for e, _, _ in db.epoch_metrics(trials[0].id)}
    assert epochs == {1, 2, 3}


def test_resubmit_trains_nothing_and_overlap_is_reused(tmp_path: Path, iel_home: Path) -> None:
    path = write_study(tmp_path, noop_study("first"))
    _, first = run(path, iel_home)
    assert first.trained == 8
    _, again = run(path, iel_home)
    assert (again.trained, again.kept, again.reused) == (0, 8, 0)
    # A second study whose grid overlaps the first in the lr=1e-3 arm: those 4 trials are reused.
    doc = noop_study("second", factors={"noise.rate": [0.0, 0.2], "optimizer.lr": [1.0e-3, 3.0e-2]})
    _, second = run(write_study(tmp_path, doc), iel_home)
    assert (second.trained, second.reused) == (4, 4)
    trials = assert_consistent(iel_home, "second")
    reused = [t for t in trials if t.reused_from_id is not None]
    assert len(reused) == 4
    db = ResultsDB(Settings.resolve(home=str(iel_home)).db_url)
    for t in reused:
        original = db.get_trial(t.reused_from_id)
        assert original.study_name == "first" and original.trial_hash == t.trial_hash
        assert original.final_metrics == t.final_metrics


def test_failures_are_data_and_retried(tmp_path: Path, iel_home: Path) -> None:
    doc = noop_study(
        "faults",
        factors={"noop.fail_at_epoch": [None, 2], "noop.diverge_at_epoch": [None, 2]},
        baseline={"noop.fail_at_epoch": None},
        seeds=1,
        retries=1,
    )
    _, outcome = run(write_study(tmp_path, doc), iel_home)
    trials = assert_consistent(iel_home, "faults")
    by_cfg = {(t.config["noop"]["fail_at_epoch"], t.config["noop"]["diverge_at_epoch"]): t for t in trials}
    assert by_cfg[(None, None)].state == TrialState.COMPLETE
    diverged = by_cfg[(None, 2)]
    assert (diverged.state, diverged.failure_kind, diverged.failed_epoch) == (
        TrialState.FAILED,
        "diverged",
        2,
    )
    assert diverged.attempts == 1  # deterministic divergence is not retried
    failed = by_cfg[(2, None)]
    assert (failed.state, failed.failure_kind) == (TrialState.FAILED, "error")
    assert failed.attempts == 2  # one retry
    assert "on purpose" in (failed.error or "")
    assert outcome.failed == 3


def test_search_with_pruning(tmp_path: Path, iel_home: Path) -> None:
    doc = noop_study(
        "search",
        base={
            "kind": "noop",
            "epochs": 8,
            "noop": {"sleep_s": 0.15},
            "optimizer": {"type": "adam", "lr": 1.0e-3},
        },
        factors={"noise.rate": [0.0]},
        baseline={"noise.rate": 0.0},
        seeds=2,
        search={
            "n_trials": 8,
            "sampler": "random",
            "pruner": "median",
            "seed": 1,
            "objectives": [{"metric": "dice", "direction": "maximize"}],
            "params": {"optimizer.lr": {"type": "float", "low": 1.0e-6, "high": 1.0, "log": True}},
        },
    )
    runner, outcome = run(write_study(tmp_path, doc), iel_home)
    trials = assert_consistent(iel_home, "search")
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned, "the median pruner stopped no trial"
    db = ResultsDB(Settings.resolve(home=str(iel_home)).db_url)
    for t in pruned:
        assert max(e for e, _, _ in db.epoch_metrics(t.id)) < 8  # stopped before the last epoch
    storage = optuna.storages.RDBStorage(Settings.resolve(home=str(iel_home)).db_url)
    study = optuna.load_study(study_name="search::noise.rate=0.0", storage=storage)
    finished = [t for t in study.get_trials() if t.state.is_finished()]
    assert len(finished) == 8


def test_fused_study_matches_unfused(tmp_path: Path, iel_home: Path) -> None:
    base = {
        "device": "cpu",
        "epochs": 1,
        "batch_size": 4,
        "data": {"type": "cells", "num_images": 12, "size": 32},
        "model": {"type": "unet", "width": 4, "depth": 2},
        "noise": {"type": "block", "rate": 0.0},
        "artifacts": {"checkpoint": False, "prediction_grid": True},
    }
    factors = {"noise.rate": [0.0, 0.4], "iel.type": ["none", "heat"]}
    fused_doc = noop_study("fused", base=base, factors=factors, baseline={"iel.type": "none"}, fuse="auto")
    runner, outcome = run(write_study(tmp_path, fused_doc), iel_home)
    # Groups come from the plan: the 8 trials share one fusion key, so two groups of FUSE_GROUP_SIZE = 4.
    assert outcome.trained == 8 and runner.progress.fused == 8
    fused = {t.trial_hash: t for t in assert_consistent(iel_home, "fused")}
    plain_doc = noop_study("plain", base=base, factors=factors, baseline={"iel.type": "none"}, fuse="off")
    other = tmp_path / "other-home"
    runner, outcome = run(write_study(tmp_path, plain_doc), other)
    assert runner.progress.fused == 0
    plain = {t.trial_hash: t for t in assert_consistent(other, "plain")}
    assert fused.keys() == plain.keys()  # fusion does not change a trial's identity
    for h, t in fused.items():
        # float32 grouped convolutions sum in another order: losses agree closely, an argmax pixel may flip
        assert t.final_metrics["val_loss"] == pytest.approx(plain[h].final_metrics["val_loss"], abs=1e-4)
        assert t.final_metrics["dice"] == pytest.approx(plain[h].final_metrics["dice"], abs=0.01)


def test_fused_results_do_not_depend_on_worker_timing(tmp_path: Path, iel_home: Path) -> None:
    """Issue 12.5: with ``fuse: auto`` the groups come from the plan, so one worker (each group waits for it)
    and two workers (groups start side by side) train every trial with the same partners: float32 metrics
    are bit-identical and each trial's MLflow run names the same fused group.  (Groups used to be cut from
    the queue by the number of workers: one group of 8 with one worker, two of 4 with two.)"""
    base = {
        "device": "cpu",
        "epochs": 1,
        "batch_size": 4,
        "data": {"type": "cells", "num_images": 12, "size": 32},
        "model": {"type": "unet", "width": 4, "depth": 2},
        "noise": {"type": "block", "rate": 0.2},
        "artifacts": {"checkpoint": False, "prediction_grid": False},
    }
    doc = noop_study(
        "timing",
        base=base,
        factors={"iel.type": ["none", "heat"]},
        baseline={"iel.type": "none"},
        seeds=3,
        fuse="auto",
    )
    path = write_study(tmp_path, doc)
    seen = []
    for k, concurrency in enumerate((1, 2)):
        home = tmp_path / f"home-{k}"
        runner, outcome = run(path, home, max_concurrent=concurrency)
        assert outcome.trained == 6 and runner.progress.fused == 6  # groups of 4 and 2
        client = MlflowClient(Settings.resolve(home=str(home)).mlflow_uri)
        trials = assert_consistent(home, "timing")
        groups = {t.trial_hash: client.get_run(t.mlflow_run_id).data.tags["iel.fuse_group"] for t in trials}
        metrics = {t.trial_hash: t.final_metrics for t in trials}
        seen.append((groups, metrics))
    (groups_1, metrics_1), (groups_2, metrics_2) = seen
    assert sorted(collections.Counter(groups_1.values()).values()) == [2, 4]
    assert groups_1 == groups_2
    assert metrics_1 == metrics_2  # exact float equality, every metric of every trial


def test_resume_rewrites_the_mlflow_end_a_killed_driver_did_not_write(tmp_path: Path, iel_home: Path) -> None:
    """MLflow writes are applied in the background: a driver killed before its writer applied a run's end
    leaves a trial COMPLETE in the results database and its MLflow run RUNNING, without params or metrics.
    The next submit rewrites that end from the database (status, params, epoch and final metrics)."""
    path = write_study(tmp_path, noop_study("repair"))
    run(path, iel_home)
    settings = Settings.resolve(home=str(iel_home))
    db = ResultsDB(settings.db_url)
    client = MlflowClient(settings.mlflow_uri)
    trial = db.trials("repair")[0]
    old = client.get_run(trial.mlflow_run_id)
    tags = {k: v for k, v in old.data.tags.items() if k.startswith("iel.") or k == "mlflow.parentRunId"}
    lost = client.create_run(old.info.experiment_id, tags=tags).info.run_id  # created, end never written
    db.set_references(trial.id, mlflow_run_id=lost)
    _, outcome = run(path, iel_home)
    assert (outcome.kept, outcome.trained) == (8, 0)
    repaired = client.get_run(lost)
    assert repaired.info.status == "FINISHED" and "iel.error" not in repaired.data.tags
    assert repaired.data.params == flatten(trial.config)
    assert {k: repaired.data.metrics[k] for k in trial.final_metrics} == trial.final_metrics
    history = [(m.step, m.value) for m in client.get_metric_history(lost, "dice")]
    assert sorted(history) == [(int(e), v) for e, n, v in db.epoch_metrics(trial.id) if n == "dice"]
    assert_consistent(iel_home, "repair")
    db.close()
