"""A new home starts Ray and its workers before the stores exist (they start while the stores are created);
whatever stops the study before its loop -- here stores that cannot be opened -- shuts those workers down."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import ray

from orchestrator.driver import StudyRunner
from orchestrator.settings import Settings
from orchestrator.study import load_study
from tests.studyfiles import noop_study, write_study

pytestmark = pytest.mark.usefixtures("ray_local")


def _alive_workers() -> set[str]:
    """The TrialWorker actors alive in this Ray instance (from its control store)."""
    from ray._private.state import actors

    return {
        actor_id
        for actor_id, info in actors().items()
        if info.get("State") != "DEAD" and "TrialWorker" in str(info.get("ActorClassName", ""))
    }


def test_workers_started_early_are_shut_down_when_the_stores_cannot_open(tmp_path: Path) -> None:
    assert ray.is_initialized()
    spec = load_study(write_study(tmp_path, noop_study("early", seeds=2)))
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the MLflow store's folder should be")
    settings = Settings.resolve(home=str(tmp_path / "home"), mlflow=f"sqlite:///{blocked}/sub/mlflow.db")
    before = _alive_workers()
    phases: list[str] = []
    with pytest.raises(Exception) as caught:  # noqa: B017 (whatever the store's error, it stops the study)
        StudyRunner(spec, settings, progress=phases.append).run()
    # (the traceback keeps the driver's frames, and so its pool, alive: only a shutdown ends its workers)
    assert caught.traceback
    assert phases[:2] == ["starting Ray...", "opening stores..."], phases  # the early path was taken
    deadline = time.monotonic() + 60  # a killed actor is marked DEAD shortly after: a liveness bound
    while _alive_workers() - before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive_workers() - before  # the workers it started are gone again
