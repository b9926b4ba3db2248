"""The terminal view of :class:`orchestrator.progress.Progress`: a ``rich`` table, one row per cell."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from orchestrator.progress import Progress


def _num(value: int) -> str:
    return str(value) if value else "·"


def render_table(progress: Progress) -> RenderableType:
    """A status line (start-up phase or counts and ETA), the per-cell table and the failed trials so far."""
    from orchestrator.progress import _fmt_s

    decisions = {r.cell_key: r for r in progress.decision_rows}
    best = progress.best_overall()
    arrow = "↑" if progress.maximize else "↓"
    table = Table(title=None, expand=False, show_edge=False, pad_edge=False)
    table.add_column("cell", no_wrap=True)
    table.add_column("done", justify="right")
    table.add_column("running", justify="right")
    table.add_column("failed", justify="right")
    table.add_column("pruned", justify="right")
    table.add_column("reused/kept", justify="right")
    table.add_column(f"best {progress.metric} {arrow}", justify="right")
    if decisions:
        table.add_column("decision vs baseline")
    for key, c in progress.cells.items():
        total = f"/{c.total}" if c.total else ""
        best_text = "" if c.best is None else f"{c.best:.4f}"
        style = "bold green" if best is not None and best[0] == key else None
        row: list[RenderableType] = [
            Text(key),
            f"{c.done}{total}",
            _num(c.running),
            Text(_num(c.failed), style="red" if c.failed else ""),
            _num(c.pruned),
            _num(c.reused + c.kept),
            Text(best_text, style=style or ""),
        ]
        if decisions:
            d = decisions.get(key)
            row.append(d.text() if d is not None else "")
        table.add_row(*row)
    if progress.phase_text is not None and progress._first_start is None:
        head = Text(progress.phase_text, style="cyan")
    else:
        eta = progress.eta_s()
        eta_text = "" if eta is None else f"  ETA {_fmt_s(eta)}"
        head = Text(
            f"{progress.finished}/{progress.total} trials  done {progress.done}  running {progress.running}  "
            f"failed {progress.failed}{eta_text}"
        )
    parts: list[RenderableType] = [head, table]
    if progress.failures:
        parts.append(Text(f"failed: {progress.failures[-1].text()}", style="red"))
    return Group(*parts)
