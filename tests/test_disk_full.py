"""A real full disk mid-study: ``IEL_HOME`` on a 20 MiB tmpfs this test mounts, filled while trials run.

The driver stops with one clear message (no traceback) and exit status 2, closing what it can; after space
is freed, ``iel submit`` again completes the study with consistent bookkeeping.  Skipped only where the
tmpfs cannot be mounted (not root, no mount namespace), with the reason.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray

from orchestrator import cli
from orchestrator.settings import Settings
from tests.studyfiles import noop_study, write_study
from tests.test_faults import assert_exactly_once, wait_for
from tests.test_faults_cluster import Driver, states
from tests.test_faults_cluster import drivers as drivers_fixture
from tests.test_orchestrator import assert_consistent

drivers = drivers_fixture  # the fixture: `iel submit` processes, killed at teardown

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_local")]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    where = tmp_path / "small-disk"
    where.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(where)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a 20 MiB tmpfs at {where}: {proc.stderr.strip() or proc.returncode}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(folder: Path) -> Path:
    """Write a filler file until the file system says ENOSPC; returns its path."""
    filler = folder / "filler"
    block = b"\0" * (1 << 20)
    with open(filler, "wb") as f:
        while True:
            try:
                f.write(block)
                f.flush()
                os.fsync(f.fileno())
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
                break
    # The last partial block: fill the remaining bytes one page at a time.
    with contextlib.suppress(OSError), open(filler, "ab") as f:
        while True:
            f.write(b"\0" * 4096)
            f.flush()
    return filler


def test_disk_full_mid_study_one_message_then_resume_completes(
    tmp_path: Path, small_disk: Path, drivers: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = small_disk  # the driver's log goes beside it, on the big disk
    monkeypatch.setenv("IEL_HOME", str(home))
    doc = noop_study(
        "full",
        base={
            "kind": "noop",
            "epochs": 4,
            "noop": {"sleep_s": 1.0},
            "optimizer": {"type": "adam", "lr": 1e-3},
        },
        factors={"noise.rate": [0.0, 0.1, 0.2]},
        baseline={"noise.rate": 0.0},
        seeds=1,
        max_concurrent=1,
        retries=1,
    )
    path = write_study(tmp_path, doc)
    driver = Driver(path, home, "--address", str(ray.get_runtime_context().gcs_address))
    drivers.append(driver)
    wait_for(
        "a trial to run", lambda: driver.proc.poll() is not None or states(home / "iel.db").get("RUNNING")
    )
    assert driver.proc.poll() is None, driver.output()
    filler = fill(small_disk)
    code = driver.proc.wait(timeout=300)
    out = driver.output()
    assert code == 2, out
    assert "error: the disk is full" in out and "Free some space" in out, out
    assert "Traceback" not in out, out
    assert out.count("\n") < 30, out  # one message, not pages of tracebacks

    filler.unlink()
    assert cli.main(["submit", str(path), "--home", str(home)]) == 0
    settings = Settings.resolve(home=str(home))
    assert_exactly_once(settings, "full", 3)
    assert_consistent(home, "full")
