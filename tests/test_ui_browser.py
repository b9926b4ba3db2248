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
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from orchestrator.db import ResultsDB, TrialState
from orchestrator.driver import StudyRunner
from orchestrator.report import build_report
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
        wins = noop_study(
            "uistudy",
            factors={},
            arms={"plain": {}, "heat_mild": {"iel": {"type": "tv"}, "noop": {"effect": 0.15}}},
            baseline="plain",
            seeds=3,
            decide={"metric": "dice", "margin": 0.05, "alpha": 0.05, "method": "t"},
        )
        wins["base"]["noop"] = {"noise_sd": 0.02}
        for doc in (wins, noop_study("other", factors={"optimizer.lr": [1.0e-3]}, seeds=1)):
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


def _ui_url(proc: subprocess.Popen[bytes], timeout_s: float) -> str:
    """The URL `iel ui` announces (read from its output; it is printed once the server answers)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline().decode()
        if not line and proc.poll() is not None:
            raise AssertionError(f"`iel ui` exited with {proc.returncode} before announcing its URL")
        if line.startswith("MLflow UI for "):
            return line.split(" at ", 1)[1].split(" (", 1)[0]
    raise AssertionError("`iel ui` announced no URL")


def test_mlflow_ui_shows_which_arm_wins_in_chromium(store: Settings, tmp_path: Path) -> None:
    _browser_or_skip()
    from playwright.sync_api import expect, sync_playwright

    client = MlflowClient(store.mlflow_uri)
    exp = client.get_experiment_by_name("iel/uistudy")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    assert len(runs) == 1 + 2 + 6  # study, 2 cells, 2 x 3 trials
    study_run = next(r for r in runs if r.data.tags["iel.role"] == "study")
    arm_run = next(
        r
        for r in runs
        if r.data.tags.get("iel.cell") == "arm=heat_mild" and r.data.tags["iel.role"] == "cell"
    )
    db = ResultsDB(store.db_url)
    trial = db.trials("uistudy", states=[TrialState.COMPLETE])[0]
    db.close()
    port = free_port()
    proc = _iel("ui", "uistudy", "--home", str(store.home), "--port", str(port))
    base = f"http://127.0.0.1:{port}"
    exp_url = f"{base}/#/experiments/{exp.experiment_id}"
    try:
        assert _ui_url(proc, SERVER_START_S) == f"{exp_url}/runs"  # `iel ui STUDY` opens on the study's runs
        listening = listening_addresses(port)
        assert listening == {"127.0.0.1"}
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(PAGE_WAIT_MS)

            # The study's experiment: every run; filtered to the cell runs with their aggregates as columns,
            # the runs table answers "which arm wins?".
            page.goto(f"{exp_url}/runs")
            expect(page.get_by_text("iel/uistudy").first).to_be_visible()
            expect(page.get_by_text(f"{len(runs)} matching runs", exact=True)).to_be_visible()
            expect(page.get_by_role("link", name="uistudy", exact=True).last).to_be_visible()
            if page.get_by_role("button", name="Close").count():  # MLflow 3's assistant panel
                page.get_by_role("button", name="Close").first.click()
            search = page.locator("input[placeholder*='metrics.']").first
            search.fill("tags.`iel.role` = 'cell'")
            search.press("Enter")
            expect(
                page.get_by_text("3 matching runs", exact=True)
            ).to_be_visible()  # the cells and their parent
            parent = page.get_by_role("gridcell").filter(
                has=page.get_by_role("link", name="uistudy", exact=True)
            )
            parent.locator("button").first.click()  # expand the study run: its cell runs show beneath it
            page.get_by_role("button", name="Columns").click()
            hide = ("Dataset", "Source", "Models")
            show = ("dice_mean", "dice_ci_low", "dice_ci_high", "decision_estimate", "iel.decision")
            for column in hide + show:
                page.get_by_text(column, exact=True).last.click()
            page.keyboard.press("Escape")
            expect(page.get_by_role("columnheader", name="dice_mean").first).to_be_visible()
            expect(page.get_by_role("link", name="heat_mild", exact=True).first).to_be_visible()
            expect(page.get_by_role("link", name="plain (baseline)", exact=True).first).to_be_visible()
            _shot(page, tmp_path, "mlflow-experiment.png")

            # The study run answers "which arm wins?": its description names the best arm and the decision.
            page.goto(f"{exp_url}/runs/{study_run.info.run_id}")
            expect(page.get_by_text("Best arm (dice, best mean per row):").first).to_be_visible()
            expect(page.get_by_text("heat_mild vs plain", exact=False).first).to_be_visible()
            if page.get_by_role("button", name="Close").count():  # MLflow 3's assistant panel
                page.get_by_role("button", name="Close").first.click()
            page.get_by_text("Best arm (dice, best mean per row):").first.scroll_into_view_if_needed()
            _shot(page, tmp_path, "mlflow-study-run.png")

            # The arm's cell run: n, mean and interval of Dice, and the decision against the baseline.
            page.goto(f"{exp_url}/runs/{arm_run.info.run_id}")
            expect(page.get_by_text("dice_mean", exact=True).first).to_be_visible()
            expect(page.get_by_text("decision_estimate", exact=True).first).to_be_visible()
            expect(page.get_by_text("iel.decision").first).to_be_visible()
            _shot(page, tmp_path, "mlflow-cell-run.png")

            # A trial run: its short name and its final Dice as the metric's latest value (no final_* copy).
            page.goto(f"{exp_url}/runs/{trial.mlflow_run_id}")
            arm = trial.cell_key.split("=", 1)[1]
            expect(page.get_by_text(f"{arm} · seed {trial.seed}").first).to_be_visible()
            dice = page.get_by_role("link", name="dice", exact=True).first
            expect(dice).to_be_visible()
            expect(page.get_by_text(repr(trial.final_metrics["dice"])).first).to_be_visible()
            assert page.get_by_text("final_dice", exact=True).count() == 0
            dice.scroll_into_view_if_needed()
            _shot(page, tmp_path, "mlflow-trial.png")

            # The report, logged to the parent run, previewed from the served artifacts.
            page.goto(f"{exp_url}/runs/{study_run.info.run_id}/artifacts")
            page.get_by_text("report", exact=True).first.click()
            page.get_by_text("report.md", exact=True).first.click()
            expect(page.get_by_text("Report of study").first).to_be_visible()
            _shot(page, tmp_path, "mlflow-report.png")
            browser.close()
        # SIGTERM to `iel ui` alone (not its process group): its server stops with it.
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert listening_addresses(port) == set()
    finally:
        stop_process(proc)


def test_ui_refuses_a_busy_port_a_missing_store_and_an_unknown_study(store: Settings, tmp_path: Path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        for command in (("ui",), ("optuna-dashboard", "uistudy")):
            proc = _iel(*command, "--home", str(store.home), "--port", str(port))
            out, _ = proc.communicate(timeout=120)
            assert proc.returncode == 2, out
            assert f"port {port} on 127.0.0.1 is already in use".encode() in out and b"Traceback" not in out
    empty = tmp_path / "no-home"
    proc = _iel("ui", "--home", str(empty), "--port", str(free_port()))
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2 and b"no MLflow store at" in out
    assert not (empty / "mlflow.db").exists() and not (empty / "mlartifacts").exists()
    proc = _iel("ui", "nope", "--home", str(store.home), "--port", str(free_port()))
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2 and b"studies there: ['other', 'uistudy']" in out


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
        assert expected == {"uistudy::arm=plain", "uistudy::arm=heat_mild"}
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


def test_optuna_dashboard_offers_no_action_that_fails(store: Settings, tmp_path: Path) -> None:
    """The dashboard's storage refuses to create, rename or delete the driver's studies; the page shows no
    such button (optuna-dashboard has no read-only mode: :func:`orchestrator.dashboards.read_only_pages`)."""
    _browser_or_skip()
    from playwright.sync_api import expect, sync_playwright

    port = free_port()
    proc = _iel("optuna-dashboard", "uistudy", "--home", str(store.home), "--port", str(port))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/api/studies", 60, proc)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(PAGE_WAIT_MS)
            page.goto(f"{base}/dashboard")
            expect(page.get_by_text("uistudy::arm=heat_mild").first).to_be_visible()
            expect(page.get_by_role("button", name="Reload")).to_be_visible()
            for name in ("Create", "delete study", "rename study"):
                assert page.get_by_role("button", name=name).count() == 0, name
            _shot(page, tmp_path, "optuna-dashboard.png")
            page.get_by_text("uistudy::arm=heat_mild").first.click()
            expect(page.get_by_text("Intermediate Values").first).to_be_visible()
            expect(page.get_by_text("Hyperparameter Importance").first).to_be_visible()
            page.wait_for_load_state("networkidle")
            assert page.get_by_text("internal server error").count() == 0  # no error toast
            _shot(page, tmp_path, "optuna-study.png")
            browser.close()
    finally:
        stop_process(proc)


def test_optuna_dashboard_names_the_studies_when_the_study_is_unknown(store: Settings) -> None:
    proc = _iel("optuna-dashboard", "nope", "--home", str(store.home), "--port", "0")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert b"studies with cells: ['other', 'uistudy']" in out
