"""Shared fixtures: one local Ray instance per session, an isolated IEL_HOME per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

torch.set_num_threads(2)
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")

from tests.postgres import *  # noqa: E402,F401,F403  (fixtures postgres_server, postgres_url)


@pytest.fixture(autouse=True)
def _ctrl_c_not_left_ignored() -> Iterator[None]:
    """A library used by a test can leave this process ignoring SIGINT; an ignored signal is inherited by
    every process a later test starts, whose early Ctrl-C would then vanish. Put it back after each test."""
    import signal

    yield
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    """A real local Ray instance shared by the session's tests (2 CPUs, no dashboard)."""
    import ray

    from orchestrator.driver import init_ray

    init_ray(None, num_cpus=2)
    yield
    ray.shutdown()


@pytest.fixture
def iel_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "iel-runs"
    monkeypatch.setenv("IEL_HOME", str(home))
    monkeypatch.delenv("IEL_DB_URL", raising=False)
    monkeypatch.delenv("IEL_MLFLOW_URI", raising=False)
    return home
