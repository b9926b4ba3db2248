"""The dashboards, served for real: `iel ui` (MLflow) opened in headless Chromium, `iel optuna-dashboard`.

The browser test needs Debian's ``chromium`` (``.ci/install-browser.sh``) and the ``playwright`` package
(driven with that executable; ``playwright install`` is never needed).  Without them it is skipped, except
under CI (``$CI`` set), where it fails: the test must not vanish silently.  A screenshot of each page is
saved to the test's folder and, when ``$IEL_SCREENSHOT_DIR`` is set, copied there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from orchestrator.db import ResultsDB, TrialState
from orchestrator.report import build_report
from orchestrator.driver import StudyRunner
from orchestrator.settings import Settings
from orchestrator.study import load_study
from orchestrator.ui import free_port, stop_process, wait_http
from tests.studyfiles import noop_study, write_study

pytestmark = pytest.mark.usefixtures("ray_local")

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("IEL_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SERVER_START_S = 180  # a cold `mlflow server` on a busy 2-core machine can take a minute
PAGE_WAIT_MS = 60_000  # the MLflow UI is a React app: bounded waits for elements, never sleeps


def _browser_or_skip() -> None:
    missing = []
    if not (os.path.exists(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        missing.append(f"chromium at {CHROMIUM} (run .ci/install-browser.sh)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package (pip install playwright)")
    if missing:
        reason = "browser test needs " + " and ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(reason + "; $CI is set, so this is an error, not a skip")
        pytest.skip(reason)


def listening_addresses(port: int) -> set[str]:
    """IPv4/IPv6 addresses with a socket listening on ``port`` (Linux ``/proc/net/tcp*``)."""
    import ipaddress

    found = set()
    for name in ("tcp", "tcp6"):
        path = Path(f"/proc/net/{name}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr_hex, port_hex = local.split(":")
            if state != "0A" or int(port_hex, 16) != port:  # 0A = LISTEN
                continue
            raw = bytes.fromhex(addr_hex)
            # /proc writes each 32-bit word in host (little-endian) order.
            words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.add(str(ipaddress.ip_address(words)))
    return found


def _iel(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, ray_local: None) -> Iterator[Settings]:
    """Two finished no-op studies in one store; the first has its report logged."""
    tmp = tmp_path_factory.mktemp("ui")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("IEL_DB_URL", raising=False)
        mp.delenv("IEL_MLFLOW_URI", raising=False)
        settings = Settings.resolve(home=str(tmp / "home"))
        for doc in (
            noop_study("uistudy", factors={"optimizer.lr": [1.0e-3, 1.0e-2]}, seeds=2),
            noop_study("other", factors={"optimizer.lr": [1.0e-3]}, seeds=1),
        ):
            assert StudyRunner(load_study(write_study(tmp, doc)), settings).run().failed == 0
        build_report(settings, "uistudy", tmp / "report")
        yield settings


def _shot(page: object, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    page.screenshot(path=str(path))  # type: ignore[attr-defined]
    assert path.stat().st_size > 10_000
    if os.environ.get("IEL_SCREENSHOT_DIR"):
        os.makedirs(os.environ["IEL_SCREENSHOT_DIR"], exist_ok=True)
        shutil.copy(path, os.environ["IEL_SCREENSHOT_DIR"])


def test_mlflow_ui_shows_the_study_in_chromium(store: Settings, tmp_path: Path) -> None:
    _browser_or_skip()
    from playwright.sync_api import expect, sync_playwright

    client = MlflowClient(store.mlflow_uri)
    exp = client.get_experiment_by_name("iel/uistudy")
    study_run = client.search_runs([exp.experiment_id], "tags.`iel.role` = 'study'")[0]
    n_runs = len(client.search_runs([exp.experiment_id], max_results=1000))
    assert n_runs == 1 + 2 + 4  # study, 2 cells, 2 x 2 trials
    db = ResultsDB(store.db_url)
    trial = db.trials("uistudy", states=[TrialState.COMPLETE])[0]
    db.close()
    port = free_port()
    proc = _iel("ui", "--home", str(store.home), "--port", str(port))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/health", SERVER_START_S, proc)
        listening = listening_addresses(port)
        assert listening == {"127.0.0.1"}
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(PAGE_WAIT_MS)
            exp_url = f"{base}/#/experiments/{exp.experiment_id}"

            # The study's experiment and its parent run.
            page.goto(f"{exp_url}/runs")
            expect(page.get_by_text("iel/uistudy").first).to_be_visible()
            # The runs table has loaded every run: the study's, the cells' and the trials'.
            expect(page.get_by_text(f"{n_runs} matching runs", exact=True)).to_be_visible()
            expect(page.get_by_role("link", name="uistudy", exact=True).last).to_be_visible()
            _shot(page, tmp_path, "mlflow-experiment.png")

            # A trial run with its final metrics (the value the results database holds).
            page.goto(f"{exp_url}/runs/{trial.mlflow_run_id}")
            expect(page.get_by_text(f"{trial.cell_key} seed={trial.seed}").first).to_be_visible()
            final_dice = page.get_by_text("final_dice", exact=True).first
            expect(final_dice).to_be_visible()
            expect(page.get_by_text(repr(trial.final_metrics["dice"])).first).to_be_visible()
            final_dice.scroll_into_view_if_needed()
            _shot(page, tmp_path, "mlflow-trial.png")

            # The report, logged to the parent run, previewed from the served artifacts.
            page.goto(f"{exp_url}/runs/{study_run.info.run_id}/artifacts")
            page.get_by_text("report", exact=True).first.click()
            page.get_by_text("report.md", exact=True).first.click()
            expect(page.get_by_text("Report of study").first).to_be_visible()
            _shot(page, tmp_path, "mlflow-report.png")
            browser.close()
    finally:
        stop_process(proc)


def test_optuna_dashboard_serves_the_cell_studies_on_localhost(store: Settings) -> None:
    port = free_port()
    proc = _iel("optuna-dashboard", "uistudy", "--home", str(store.home), "--port", str(port))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/api/studies", 60, proc)
        with urllib.request.urlopen(f"{base}/api/studies", timeout=10) as resp:
            summaries = json.load(resp)["study_summaries"]
        db = ResultsDB(store.db_url)
        expected = {c.optuna_study_name for c in db.cells("uistudy")}
        db.close()
        assert {s["study_name"] for s in summaries} == expected  # the other study is not listed
        assert expected == {"uistudy::optimizer.lr=0.001", "uistudy::optimizer.lr=0.01"}
        listening = listening_addresses(port)
        assert listening == {"127.0.0.1"}
        # The dashboard cannot delete the driver's studies.
        sid = summaries[0]["study_id"]
        req = urllib.request.Request(f"{base}/api/studies/{sid}", method="DELETE")
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(req, timeout=10)
        with urllib.request.urlopen(f"{base}/api/studies", timeout=10) as resp:
            assert len(json.load(resp)["study_summaries"]) == 2
    finally:
        stop_process(proc)
    assert proc.returncode is not None


def test_optuna_dashboard_names_the_studies_when_the_study_is_unknown(store: Settings) -> None:
    proc = _iel("optuna-dashboard", "nope", "--home", str(store.home), "--port", "0")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert b"studies with cells: ['other', 'uistudy']" in out
