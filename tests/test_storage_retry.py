"""A trial's end written to Optuna's storage twice (a retry after a connection lost past the commit) ends the
trial once, as asked, instead of failing the driver."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import optuna
import pytest
from sqlalchemy import exc as sa_exc

from orchestrator.driver.storage import end_trial, optuna_storage, storage_call


def test_a_retried_tell_whose_first_attempt_committed_is_done(tmp_path: Path) -> None:
    storage = optuna_storage(f"sqlite:///{tmp_path / 'optuna.db'}")
    study = optuna.create_study(study_name="retry", storage=storage)
    trial = study.ask()
    calls = []

    def tell_then_lose_the_connection(value: float) -> None:
        # the storage call under Study.tell (the driver's tell goes through it with a cache whose copy was
        # stale after the lost connection: the database already had the trial finished)
        calls.append(value)
        storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.COMPLETE, [value])
        if len(calls) == 1:  # ...and the connection is lost before the call returns
            raise sa_exc.OperationalError("COMMIT", {}, sqlite3.OperationalError("database is locked"))

    storage_call(tell_then_lose_the_connection, 0.25)
    assert calls == [0.25, 0.25]  # retried once, and the retry found the trial finished
    done = study.get_trials()
    assert len(done) == 1 and done[0].state == optuna.trial.TrialState.COMPLETE and done[0].value == 0.25

    # a first call on a finished trial is still an error (nothing was retried)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        storage_call(storage.set_trial_state_values, trial._trial_id, optuna.trial.TrialState.COMPLETE, [0.5])


def test_extras_staged_with_a_trials_end_are_written_once_with_it_after_a_retry(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    storage = optuna_storage(url)
    study = optuna.create_study(study_name="staged", storage=storage)
    trial = study.ask()
    calls = []

    def tell_lost_once() -> None:
        calls.append(1)
        if len(calls) == 1:  # the connection is lost before the write: nothing reached the database
            raise sa_exc.OperationalError("BEGIN", {}, sqlite3.OperationalError("database is locked"))
        study.tell(trial, 0.5)

    end_trial(trial, {"mlflow_run_id": "r1"}, {1: 0.25, 2: 0.5}, tell_lost_once)
    assert len(calls) == 2
    stored = optuna.load_study(study_name="staged", storage=optuna.storages.RDBStorage(url)).get_trials()
    assert len(stored) == 1
    assert stored[0].state == optuna.trial.TrialState.COMPLETE and stored[0].value == 0.5
    assert stored[0].user_attrs == {"mlflow_run_id": "r1"}
    assert stored[0].intermediate_values == {1: 0.25, 2: 0.5}
    assert storage.unstage(trial._trial_id) is None  # type: ignore[attr-defined]

    # a tell that writes nothing (the trial already ended) leaves the extras to their own write, which
    # fails as writing to a finished trial does
    again = study.ask()
    study.tell(again, 1.0)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        end_trial(again, {"late": 1}, {}, lambda: study.tell(again, 2.0, skip_if_finished=True))
    assert storage.unstage(again._trial_id) is None  # type: ignore[attr-defined]
