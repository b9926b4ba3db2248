"""The live progress line of ``iel submit``: done / running / pruned / failed / reused, and an ETA."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field


def _fmt_s(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


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
    _last: float = 0.0
    _started: float = field(default_factory=time.monotonic)

    @property
    def finished(self) -> int:
        return self.done + self.pruned + self.failed + self.reused + self.kept + self.invalid

    def eta_s(self) -> float | None:
        remaining = max(0, self.total - self.finished)
        if remaining == 0:
            return 0.0
        if not self.durations:
            return None
        elapsed = time.monotonic() - self._started
        rate = self.done / elapsed if elapsed > 0 and self.done else None
        if rate:
            return remaining / rate
        return remaining * (sum(self.durations) / len(self.durations))

    def line(self) -> str:
        eta = self.eta_s()
        return (
            f"[{self.finished}/{self.total}] done {self.done} | running {self.running} | pruned {self.pruned} | "
            f"failed {self.failed} | reused {self.reused} | kept {self.kept}"
            + (f" | retried {self.retried}" if self.retried else "")
            + (f" | invalid {self.invalid}" if self.invalid else "")
            + (f" | fused {self.fused}" if self.fused else "")
            + f" | elapsed {_fmt_s(time.monotonic() - self._started)}"
            + (f" | ETA {_fmt_s(eta)}" if eta is not None else "")
        )

    def show(self, final: bool = False) -> None:
        if self.sink is None:
            return
        now = time.monotonic()
        interactive = sys.stdout.isatty()
        if not final and now - self._last < (0.5 if interactive else 10.0):
            return
        self._last = now
        self.sink(self.line())
