"""The driver's Optuna storage (batched writes behind a single-writer cache) against Optuna's own RDB storage:
the same asks, reports and tells give the same proposals, pruning decisions and stored trials."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from orchestrator.driver.storage import end_trial, optuna_storage, write_trial_extras

optuna.logging.set_verbosity(optuna.logging.ERROR)


def _drive(storage: Any, batched: bool, n: int = 40) -> list[Any]:
    """A seeded TPE search, two trials at a time, with epochs, attributes, pruning, failures; returns what
    the driver saw (proposals and pruning decisions)."""
    study = optuna.create_study(
        storage=storage,
        study_name="s",
        sampler=optuna.samplers.TPESampler(seed=7, multivariate=True, n_startup_trials=5),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
        direction="maximize",
    )
    seen: list[Any] = []
    dists = {
        "lr": optuna.distributions.FloatDistribution(1e-5, 1e-1, log=True),
        "width": optuna.distributions.IntDistribution(8, 64, step=8),
        "act": optuna.distributions.CategoricalDistribution(["relu", "gelu"]),
    }
    running: list[optuna.trial.Trial] = []
    for i in range(n):
        trial = study.ask(dists)
        attrs = {"seed": i % 3, "trial_hash": f"h{i}"}
        if batched:
            write_trial_extras(trial, attrs)
        else:
            for k, v in attrs.items():
                trial.set_user_attr(k, v)
        seen.append((trial.number, dict(trial.params)))
        running.append(trial)
        if len(running) < 2:
            continue
        done = running.pop(0)
        quality = -abs(math.log10(done.params["lr"]) + 3) + done.params["width"] / 64
        curve = {e: quality * e / 3 for e in (1, 2, 3)}
        done.report(curve[1], 1)  # streamed: the pruner is asked
        pruned = done.should_prune()
        seen.append(("prune", done.number, pruned))
        rest = {e: v for e, v in curve.items() if e > 1}
        if pruned:
            tell: Any = lambda d=done: study.tell(d, state=TrialState.PRUNED)  # noqa: E731
        elif done.number % 7 == 3:
            tell = lambda d=done: study.tell(d, state=TrialState.FAIL)  # noqa: E731
        else:
            tell = lambda d=done, v=curve[3]: study.tell(d, v)  # noqa: E731
        if batched:  # the driver's end of a trial: its last extras and its end in one transaction
            end_trial(done, {"mlflow_run_id": f"r{done.number}"}, {1: 99.0, **rest}, tell)  # 1 stays
            continue
        done.set_user_attr("mlflow_run_id", f"r{done.number}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for e, v in {1: 99.0, **rest}.items():
                done.report(v, e)
        tell()
    return seen


def _stored(url: str) -> list[tuple[Any, ...]]:
    storage = optuna.storages.RDBStorage(url)
    study = optuna.load_study(study_name="s", storage=storage)
    return [
        (t.number, t.state, t.values, t.params, t.user_attrs, t.system_attrs, t.intermediate_values)
        for t in study.get_trials(deepcopy=False)
    ]


@pytest.mark.parametrize("n", [40])
def test_driver_storage_matches_optuna_rdb_storage(tmp_path: Path, n: int) -> None:
    plain_url, ours_url = f"sqlite:///{tmp_path / 'plain.db'}", f"sqlite:///{tmp_path / 'ours.db'}"
    plain = _drive(optuna.storages.RDBStorage(plain_url), batched=False, n=n)
    ours_storage = optuna_storage(ours_url)
    ours = _drive(ours_storage, batched=True, n=n)
    assert ours == plain
    assert any(p for p in plain if p[0] == "prune" and p[2]), "no trial was pruned: the check is weak"
    stored = _stored(ours_url)
    assert stored == _stored(plain_url)
    assert {t[1] for t in stored} == {
        TrialState.COMPLETE,
        TrialState.PRUNED,
        TrialState.FAIL,
        TrialState.RUNNING,
    }

    # and the cache serves what the database holds (times included: the end is not re-read)
    def full(trials: list[Any]) -> list[tuple[Any, ...]]:
        return [
            (t.number, t.state, t.values, t.params, t.user_attrs, t.system_attrs, t.intermediate_values)
            + (t.datetime_start, t.datetime_complete)
            for t in trials
        ]

    cached = optuna.load_study(study_name="s", storage=ours_storage).get_trials(deepcopy=False)
    in_db = optuna.load_study(study_name="s", storage=optuna.storages.RDBStorage(ours_url))
    assert full(cached) == full(in_db.get_trials(deepcopy=False))
    assert all(t.datetime_complete is not None for t in cached if t.state.is_finished())
