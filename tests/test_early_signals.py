"""A Ctrl-C during the CLI's start-up that an import swallows still stops ``iel`` (exit 130)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.studyfiles import noop_study, write_study

REPO = Path(__file__).resolve().parents[1]

# A library that swallows every exception around an optional import, hit by Ctrl-C while it imports.
SWALLOWING_IMPORT = """
import os, signal, sys
from orchestrator import early_signals  # what the `iel` entry point imports first
try:
    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C arrives while the library imports
    import this_optional_dependency_is_missing
except BaseException:
    pass  # the library carries on: the KeyboardInterrupt is gone
from orchestrator.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_swallowed_ctrl_c_during_start_up_still_stops_the_submit(tmp_path: Path) -> None:
    path = write_study(tmp_path, noop_study("early_swallowed"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "IEL_"))}
    env["IEL_HOME"] = str(tmp_path / "home")
    proc = subprocess.run(
        [sys.executable, "-c", SWALLOWING_IMPORT, "submit", str(path)],
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),  # inherited ignored: taken over too
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 130, proc.stdout + proc.stderr
    assert "interrupted" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "home" / "iel.db").exists()  # stopped before anything was recorded


def test_early_signals_remembers_and_raises_like_the_default_also_when_inherited_ignored() -> None:
    code = (
        "import signal, os\n"
        "from orchestrator import early_signals\n"
        "assert early_signals.pending() is None\n"
        "try:\n    os.kill(os.getpid(), signal.SIGINT)\n    import time; time.sleep(5)\n"
        "except KeyboardInterrupt:\n    print('raised', early_signals.pending())\n"
    )
    for inherited in (signal.SIG_DFL, signal.SIG_IGN):  # SIG_IGN: a background job of a script, say
        out = subprocess.run(
            [sys.executable, "-c", code],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            preexec_fn=lambda how=inherited: signal.signal(signal.SIGINT, how),  # type: ignore[misc]
        )
        assert out.stdout.strip() == f"raised {int(signal.SIGINT)}", (inherited, out.stderr)
