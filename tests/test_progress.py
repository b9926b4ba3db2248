"""The progress of ``iel submit``: plain lines when not a terminal (one per change, no ANSI codes), the
``rich`` table on a terminal, the ETA (start-up excluded), the closing summary of failed trials; and a
real ``iel submit`` piped through a subprocess."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from ielcore.states import TrialState
from orchestrator.plan import build_plan
from orchestrator.progress import CellCounts, DecisionRow, Progress, primary_metric
from orchestrator.progress_table import render_table
from orchestrator.study import load_study
from tests.studyfiles import noop_study, write_study

ROOT = Path(__file__).resolve().parent.parent


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _plain(total: int = 4, **kw: object) -> tuple[Progress, list[str], Clock]:
    lines: list[str] = []
    clock = Clock()
    cells = {"a": CellCounts(total=2), "b": CellCounts(total=2)}
    return Progress(total, lines.append, live=False, clock=clock, cells=cells, **kw), lines, clock  # type: ignore[arg-type]


def test_plain_output_is_one_line_per_change() -> None:
    p, lines, clock = _plain()
    p.phase("starting Ray...")
    p.show()
    assert lines == ["starting Ray..."]  # nothing changed: show() adds no line
    p.trial_started("a")
    p.show()
    p.show()
    assert len(lines) == 2 and lines[1].startswith("started a  [0/4] done 0 | running 1")
    clock.t += 10
    p.trial_ended("a", TrialState.COMPLETE, metrics={"dice": 0.8125}, duration_s=10.0, seed=0)
    assert lines[2].startswith("a seed 0 done dice=0.8125  [1/4] done 1 | running 0")
    assert "best dice 0.8125 (a)" in lines[2]
    p.fused += 2  # a counter the driver adds to directly: one line, then none until the next change
    p.show()
    p.show()
    assert len(lines) == 4 and "fused 2" in lines[3]
    p.decisions([("a", "better", 0.011, 0.004, 0.019)])
    p.decisions([("a", "better", 0.011, 0.004, 0.019)])  # the same rows again: no line
    assert lines[4:] == ["decision a: better +0.011 [+0.004, +0.019]"]
    assert not any("\x1b" in line for line in lines)


def test_best_so_far_follows_the_metric_direction() -> None:
    p, _, _ = _plain(metric="val_loss")
    for cell, v in (("a", 0.5), ("b", 0.2), ("a", 0.1), ("b", 0.9)):
        p.trial_ended(cell, TrialState.COMPLETE, metrics={"val_loss": v}, duration_s=1.0)
    assert (p.cells["a"].best, p.cells["b"].best) == (0.1, 0.2)
    assert p.best_overall() == ("a", 0.1)
    q, _, _ = _plain()
    for cell, v in (("a", 0.5), ("b", 0.7), ("a", float("nan"))):
        q.trial_ended(cell, TrialState.COMPLETE, metrics={"dice": v}, duration_s=1.0)
    assert q.best_overall() == ("b", 0.7) and q.cells["a"].best == 0.5


def test_eta_excludes_start_up_and_uses_concurrency() -> None:
    p, lines, clock = _plain(total=6, concurrency=2)
    p.phase("starting Ray...")
    clock.t += 30  # start-up: not part of any estimate
    assert p.eta_s() is None
    for cell in ("a", "b"):
        p.trial_started(cell)
    clock.t += 10
    for cell in ("a", "b"):
        p.trial_ended(cell, TrialState.COMPLETE, metrics={"dice": 0.5}, duration_s=10.0)
    # 4 trials left, 2 at a time, 10 s each: 2 waves of 10 s
    assert p.eta_s() == pytest.approx(20.0)
    assert lines[-1].endswith("ETA 20s")
    p.trial_started("a")
    assert p.eta_s() == pytest.approx(15.0)  # one running, part-way through
    p.trial_ended("a", TrialState.FAILED, failure_kind="oom", error="CUDA out of memory\nstack...")
    assert p.eta_s() == pytest.approx(20.0)  # 3 left at 2 at a time: 2 waves


def test_summary_lists_failed_trials_with_kind_and_first_line() -> None:
    p, lines, clock = _plain()
    p.trial_started("a")
    p.trial_ended(
        "a",
        TrialState.FAILED,
        failure_kind="error",
        error="\nValueError: boom\n  at line 3",
        seed=1,
        retry=True,
    )
    p.trial_started("a")
    p.trial_ended(
        "a", TrialState.FAILED, failure_kind="error", error="\nValueError: boom\n  at line 3", seed=1
    )
    p.trial_started("b")
    p.trial_ended("b", TrialState.FAILED, failure_kind="diverged", error="loss is nan", seed=0)
    clock.t += 75
    n = len(lines)
    p.show(final=True)
    p.show(final=True)  # closing twice prints once
    summary = lines[n:]
    assert summary[0].endswith("| elapsed 1m15s") and "failed 2" in summary[0] and "retried 1" in summary[0]
    assert summary[1:] == [
        "2 failed trial(s):",
        "  a seed 1: [error] ValueError: boom",
        "  b seed 0: [diverged] loss is nan",
    ]
    assert (p.cells["a"].failed, p.cells["b"].failed, p.retried) == (1, 1, 1)


def test_rich_table_renders_cells_best_and_decisions() -> None:
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=160, color_system=None)
    lines: list[str] = []
    cells = {"plain": CellCounts(total=3), "heat dt0.05": CellCounts(total=3)}
    p = Progress(6, lines.append, live=True, console=console, cells=cells, clock=Clock())
    p.phase("starting Ray...")
    assert "starting Ray..." in buf.getvalue()
    p.trial_started("plain")
    p.trial_ended("plain", TrialState.COMPLETE, metrics={"dice": 0.75}, duration_s=2.0)
    p.trial_started("heat dt0.05")
    p.trial_ended("heat dt0.05", TrialState.COMPLETE, metrics={"dice": 0.8}, duration_s=2.0)
    p.trial_started("heat dt0.05")
    p.decisions([DecisionRow("heat dt0.05", "better", 0.05, 0.01, 0.09)])
    text = Console(file=io.StringIO(), force_terminal=True, width=160, color_system=None)
    text.print(render_table(p))
    out = text.file.getvalue()  # type: ignore[attr-defined]
    rows = {
        cols[0]: cols[1:]
        for line in out.splitlines()
        if len(cols := [c.strip() for c in line.split("│")]) > 1 and cols[0] in ("plain", "heat dt0.05")
    }
    # cell | done | running | failed | pruned | reused/kept | best dice | decision
    assert rows["plain"] == ["1/3", "·", "·", "·", "·", "0.7500", ""]
    assert rows["heat dt0.05"] == ["1/3", "1", "·", "·", "·", "0.8000", "better +0.050 [+0.010, +0.090]"]
    assert "best dice ↑" in out and "decision vs baseline" in out and "2/6 trials" in out
    p.show(final=True)
    assert lines and lines[0].startswith("[2/6] done 2")  # the summary goes to the sink after the table
    assert "\x1b[" in buf.getvalue()  # the live table redraws in place on a terminal


def test_primary_metric_of_real_specs(tmp_path: Path) -> None:
    plain = load_study(write_study(tmp_path, noop_study("p")))
    assert primary_metric(plain) == "dice"
    search = noop_study("s", factors={}, baseline=None, seeds=1)
    search["search"] = {
        "n_trials": 2,
        "objectives": [{"metric": "val_loss", "direction": "minimize"}],
        "params": {"optimizer.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}},
    }
    spec = load_study(write_study(tmp_path, search))
    assert primary_metric(spec) == "val_loss"
    p = Progress.for_plan(build_plan(spec), None)
    assert p.metric == "val_loss" and not p.maximize and [c.total for c in p.cells.values()] == [2]
    grid = Progress.for_plan(build_plan(plain), None)
    assert grid.total == 8 and sorted(c.total for c in grid.cells.values()) == [2, 2, 2, 2]


@pytest.mark.slow
def test_iel_submit_piped_prints_plain_lines(tmp_path: Path) -> None:
    doc = noop_study(
        "piped",
        seeds=1,
        retries=0,
        factors={"noop.fail_at_epoch": [None, 2]},
        baseline={"noop.fail_at_epoch": None},
    )
    path = write_study(tmp_path, doc)
    home = tmp_path / "home"

    def submit() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", "submit", str(path), "--home", str(home)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )

    proc = submit()
    assert proc.returncode == 1, proc.stderr[-3000:]  # one trial failed for good
    out = proc.stdout.splitlines()
    assert "\x1b" not in proc.stdout
    phases = [line for line in out if line.endswith("...")]
    # a new home: nothing recorded, so Ray and the workers start first, the stores while the workers start
    assert phases == ["starting Ray...", "opening stores...", "workers starting..."]
    assert len([line for line in out if line.startswith("started ")]) == 2
    assert len([line for line in out if " done dice=" in line]) == 1
    assert (
        len(
            [
                line
                for line in out
                if " FAILED [error]: IELError: no-op trial failed on purpose in epoch 2" in line
            ]
        )
        == 1
    )
    counts = [line for line in out if "] done " in line]
    assert all(a != b for a, b in zip(counts, counts[1:]))  # one line per change
    i = out.index("1 failed trial(s):")
    assert out[i - 1].startswith("[2/2] done 1") and "elapsed" in out[i - 1]
    assert out[i + 1].startswith("  ") and out[i + 1].endswith(
        "seed 0: [error] IELError: no-op trial failed on purpose in epoch 2 (noop.fail_at_epoch)"
    )
    # the same home again: the stores first (what is recorded decides whether Ray starts at all)
    again = submit()
    assert again.returncode == 1, again.stderr[-3000:]  # the failed trial runs again, and fails again
    phases = [line for line in again.stdout.splitlines() if line.endswith("...")]
    assert phases == ["opening stores...", "starting Ray...", "workers starting..."]
