"""The live progress of ``iel submit``: counts per cell, best so far, decisions, start-up phases and an ETA.

On a terminal it is a table redrawn in place (``rich``, see :mod:`orchestrator.progress_table`); when the
output is not a terminal (a pipe, a CI log) it is plain text, **one line per change** and no ANSI codes.

The driver tells it what happens through :meth:`Progress.phase` (start-up), :meth:`Progress.trial_started`,
:meth:`Progress.trial_ended`, :meth:`Progress.trial_kept` / :meth:`Progress.trial_reused` and
:meth:`Progress.decisions`; the counters (``done``, ``running``, ``kept``, ``fused``, ...) stay public fields
for the code that adds to them directly.  :meth:`Progress.show` redraws (throttled), ``show(final=True)``
closes the table and prints the summary with every failed trial and its reason.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ielcore.metric_info import metric_info
from ielcore.states import TrialState

DEFAULT_METRIC = "dice"
LIVE_REFRESH_S = 0.5


def _fmt_s(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def primary_metric(spec: Any) -> str:
    """The metric the progress ranks by: ``decide.metric``, else the first search objective, else Dice."""
    decide = getattr(spec, "decide", None)
    if decide is not None:
        return str(decide.metric)
    search = getattr(spec, "search", None)
    if search is not None and search.objectives:
        return str(search.objectives[0].metric)
    return DEFAULT_METRIC


def first_line(text: str | None) -> str:
    """The first non-empty line of an error message ("" for none)."""
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return ""


@dataclass(frozen=True)
class DecisionRow:
    """One comparison's decision as the driver passes it: ``(cell_key, decision, estimate, cs_low, cs_high)``."""

    cell_key: str
    decision: str
    estimate: float | None
    cs_low: float | None
    cs_high: float | None

    def text(self) -> str:
        if self.estimate is None:
            return self.decision
        interval = ""
        if self.cs_low is not None and self.cs_high is not None:
            interval = f" [{self.cs_low:+.3f}, {self.cs_high:+.3f}]"
        return f"{self.decision} {self.estimate:+.3f}{interval}"


@dataclass(frozen=True)
class FailedTrial:
    """A trial that failed for good: its cell, seed, failure kind and the first line of its error."""

    cell_key: str
    seed: int | None
    kind: str
    reason: str

    def text(self) -> str:
        seed = "" if self.seed is None else f" seed {self.seed}"
        return f"{self.cell_key}{seed}: [{self.kind}] {self.reason or 'no message'}"


@dataclass
class CellCounts:
    """Counts of one cell; ``best`` is the best final value of the primary metric so far."""

    total: int | None = None
    done: int = 0
    running: int = 0
    failed: int = 0
    pruned: int = 0
    reused: int = 0
    kept: int = 0
    best: float | None = None

    @property
    def finished(self) -> int:
        return self.done + self.failed + self.pruned + self.reused + self.kept


@dataclass
class Progress:
    total: int
    sink: Callable[[str], None] | None = None
    done: int = 0
    running: int = 0
    pruned: int = 0
    failed: int = 0
    reused: int = 0
    kept: int = 0
    retried: int = 0
    fused: int = 0  # trials trained inside a fused group (fuse: auto)
    invalid: int = 0  # sampled search configurations that failed validation (told FAIL to Optuna)
    concurrency: int = 1
    durations: list[float] = field(default_factory=list)
    metric: str = DEFAULT_METRIC
    cells: dict[str, CellCounts] = field(default_factory=dict)
    live: bool | None = None  # None: a live table when standard output is a terminal
    console: Any = None  # a rich Console for the live table (default: standard output)
    failures: list[FailedTrial] = field(default_factory=list)
    decision_rows: tuple[DecisionRow, ...] = ()
    phase_text: str | None = None
    clock: Callable[[], float] = time.monotonic
    _last: float = 0.0
    _started: float = 0.0
    _first_start: float | None = None  # when the first trial started: the ETA excludes the start-up
    _peak_running: int = 0
    _last_line: str = ""
    _live: Any = None
    _closed: bool = False

    def __post_init__(self) -> None:
        self._started = self.clock()
        if self.live is None:
            self.live = self.sink is not None and sys.stdout.isatty()

    @classmethod
    def for_plan(cls, plan: Any, sink: Callable[[str], None] | None, **kwargs: Any) -> Progress:
        """A progress over ``plan``'s cells, ranked by the study's primary metric."""
        per_cell: dict[str, int] = {}
        for t in getattr(plan, "trials", ()):
            per_cell[t.cell_key] = per_cell.get(t.cell_key, 0) + 1
        search = getattr(plan.study, "search", None)
        cells = {
            c.key: CellCounts(total=search.n_trials if search is not None else per_cell.get(c.key, 0))
            for c in plan.cells
        }
        return cls(plan.n_trials(), sink, metric=primary_metric(plan.study), cells=cells, **kwargs)

    # ------------------------------------------------------------------------------------ state
    @property
    def finished(self) -> int:
        return self.done + self.pruned + self.failed + self.reused + self.kept + self.invalid

    @property
    def maximize(self) -> bool:
        info = metric_info(self.metric)
        return info is None or info.direction == "maximize"

    def cell(self, key: str) -> CellCounts:
        return self.cells.setdefault(key, CellCounts())

    def best_overall(self) -> tuple[str, float] | None:
        """The cell holding the best value of the primary metric so far, and that value."""
        scored = [(k, c.best) for k, c in self.cells.items() if c.best is not None]
        if not scored:
            return None
        pick = max if self.maximize else min
        return pick(scored, key=lambda kv: kv[1])  # type: ignore[arg-type,return-value]

    def _offer(self, key: str, metrics: Mapping[str, float | None] | None) -> None:
        value = (metrics or {}).get(self.metric)
        if value is None or not math.isfinite(value):
            return
        c = self.cell(key)
        if c.best is None or (value > c.best if self.maximize else value < c.best):
            c.best = float(value)

    def eta_s(self) -> float | None:
        """Seconds left, from the mean duration of completed trials and the concurrency (start-up excluded)."""
        remaining = max(0, self.total - self.finished)
        if remaining == 0:
            return 0.0
        if not self.durations:
            return None
        mean = sum(self.durations) / len(self.durations)
        parallel = max(1, min(remaining, max(self.concurrency, self._peak_running)))
        waves = math.ceil(remaining / parallel)
        # the running trials are part-way through: their elapsed time is not left to wait for
        return max(0.0, waves * mean - (mean / 2 if self.running else 0.0))

    # ------------------------------------------------------------------------------------ events
    def phase(self, text: str) -> None:
        """A start-up phase (``starting Ray...``), shown until the first trial starts."""
        self.phase_text = text
        self._emit(text, force=True)

    def trial_started(self, cell_key: str) -> None:
        self.running += 1
        self.cell(cell_key).running += 1
        self._peak_running = max(self._peak_running, self.running)
        if self._first_start is None:
            self._first_start = self.clock()
            self.phase_text = None
        self._emit(f"started {cell_key}")

    def trial_ended(
        self,
        cell_key: str,
        state: TrialState,
        *,
        metrics: Mapping[str, float | None] | None = None,
        duration_s: float | None = None,
        failure_kind: str | None = None,
        error: str | None = None,
        retry: bool = False,
        seed: int | None = None,
    ) -> None:
        """A trial's attempt ended (``retry``: it fails now and runs again)."""
        c = self.cell(cell_key)
        self.running = max(0, self.running - 1)
        c.running = max(0, c.running - 1)
        what = state.value.lower()
        if state == TrialState.COMPLETE:
            self.done += 1
            c.done += 1
            if duration_s is not None:
                self.durations.append(duration_s)
            self._offer(cell_key, metrics)
            value = (metrics or {}).get(self.metric)
            what = "done" + (f" {self.metric}={value:.4f}" if value is not None else "")
        elif state == TrialState.PRUNED:
            self.pruned += 1
            c.pruned += 1
        elif retry:
            self.retried += 1
            what = f"failed [{failure_kind}], retrying: {first_line(error)}"
        else:
            self.failed += 1
            c.failed += 1
            kind = str(failure_kind or "error")
            self.failures.append(FailedTrial(cell_key, seed, kind, first_line(error)))
            what = f"FAILED [{kind}]: {first_line(error)}"
        seed_text = "" if seed is None else f" seed {seed}"
        self._emit(f"{cell_key}{seed_text} {what}")

    def trial_kept(self, cell_key: str, metrics: Mapping[str, float | None] | None = None) -> None:
        """A trial finished in an earlier run of this study (resume)."""
        self.kept += 1
        self.cell(cell_key).kept += 1
        self._offer(cell_key, metrics)
        self._emit(f"{cell_key} kept from an earlier run")

    def trial_reused(self, cell_key: str, metrics: Mapping[str, float | None] | None = None) -> None:
        """A trial copied from an identical finished trial of another study."""
        self.reused += 1
        self.cell(cell_key).reused += 1
        self._offer(cell_key, metrics)
        self._emit(f"{cell_key} reused")

    def trial_added(self, cell_key: str, n: int = 1) -> None:
        """``n`` more trials planned in ``cell_key`` (adaptive seeds)."""
        self.total += n
        c = self.cell(cell_key)
        c.total = (c.total or 0) + n

    def decisions(self, rows: Iterable[Sequence[Any] | DecisionRow]) -> None:
        """Replace the decisions shown: rows of ``(cell_key, decision, estimate, cs_low, cs_high)``."""
        new = tuple(r if isinstance(r, DecisionRow) else DecisionRow(*r) for r in rows)
        old = {r.cell_key: r for r in self.decision_rows}
        self.decision_rows = new
        changed = [r for r in new if old.get(r.cell_key) != r]
        if not changed:
            return
        if self.live:
            self._redraw()
            return
        for r in changed:
            self._write(f"decision {r.cell_key}: {r.text()}")

    # ------------------------------------------------------------------------------------ output
    def line(self) -> str:
        """The counts as one line (also each plain line's tail)."""
        eta = self.eta_s()
        best = self.best_overall()
        return (
            f"[{self.finished}/{self.total}] done {self.done} | running {self.running} | pruned {self.pruned} | "
            f"failed {self.failed} | reused {self.reused} | kept {self.kept}"
            + (f" | retried {self.retried}" if self.retried else "")
            + (f" | invalid {self.invalid}" if self.invalid else "")
            + (f" | fused {self.fused}" if self.fused else "")
            + (f" | best {self.metric} {best[1]:.4f} ({best[0]})" if best else "")
            + (f" | ETA {_fmt_s(eta)}" if eta is not None and self._first_start is not None else "")
        )

    def _write(self, text: str) -> None:
        if self.sink is not None:
            self.sink(text)

    def _emit(self, event: str, force: bool = False) -> None:
        if self.sink is None or self._closed:
            return
        if self.live:
            self._redraw(throttle=not force)
            return
        self._last_line = self.line()
        self._write(event if force else f"{event}  {self._last_line}")

    def _redraw(self, throttle: bool = False) -> None:
        now = self.clock()
        if throttle and self._live is not None and now - self._last < LIVE_REFRESH_S:
            return
        self._last = now
        from orchestrator.progress_table import render_table

        if self._live is None:
            from rich.console import Console
            from rich.live import Live

            console = self.console or Console()
            self._live = Live(console=console, auto_refresh=False, transient=False)
            self._live.start()
        self._live.update(render_table(self), refresh=True)

    def show(self, final: bool = False) -> None:
        """Redraw (a terminal) or print a line when the counts changed since the last one (not a terminal);
        ``final``: close the table and print the summary."""
        if self.sink is None or self._closed:
            return
        if final:
            self.close()
            return
        if self.live:
            self._redraw(throttle=True)
            return
        line = self.line()
        if line != self._last_line:  # counts some code added to directly (kept, fused, invalid)
            self._last_line = line
            self._write(line)

    def summary_lines(self) -> list[str]:
        """The closing summary: the counts, elapsed time, then each failed trial with its reason."""
        lines = [f"{self.line()} | elapsed {_fmt_s(self.clock() - self._started)}"]
        if self.failures:
            lines.append(f"{len(self.failures)} failed trial(s):")
            lines += [f"  {f.text()}" for f in self.failures]
        return lines

    def close(self) -> None:
        if self._closed:
            return
        if self._live is not None:
            from orchestrator.progress_table import render_table

            self._live.update(render_table(self), refresh=True)
            self._live.stop()
            self._live = None
        self._closed = True
        for text in self.summary_lines():
            self._write(text)
