"""What the driver decides before and after a run: is there anything to do, and was the failure a full disk.

* :func:`nothing_to_do` -- a resubmitted study whose planned trials all finished (and whose search budgets
  are spent) needs no cluster: the driver then does not start Ray.
* :func:`disk_full_error` -- an error anywhere in an exception's chain that says the disk is full becomes one
  :class:`DiskFull` message naming the folder and the way out (free space, submit again: the resume repairs
  what could not be closed).
"""

from __future__ import annotations

import errno
from collections import Counter
from collections.abc import Iterator

from ielcore.errors import IELError
from orchestrator.db import ResultsDB, TrialRecord, TrialState
from orchestrator.plan import Plan
from orchestrator.settings import Settings, sqlite_file
from orchestrator.study import StudySpec

_FULL_TEXT = ("database or disk is full", "no space left on device", "disk quota exceeded")


class DiskFull(IELError):
    """The disk under the study's stores (or the artifacts) ran out of space while the study ran."""


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    stack = [error]
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        stack += [x for x in (e.__cause__, e.__context__, getattr(e, "orig", None)) if x is not None]


def is_disk_full(error: BaseException) -> bool:
    """True when ``error`` or an error it came from is ENOSPC / EDQUOT or SQLite's "database or disk is full"."""
    for e in _chain(error):
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(e).lower()
        if any(t in text for t in _FULL_TEXT):
            return True
    return False


def disk_full_error(error: BaseException, settings: Settings) -> DiskFull | None:
    """The one message for a full disk (None when ``error`` is something else)."""
    if not is_disk_full(error):
        return None
    where = sqlite_file(settings.db_url)
    folder = where.parent if where is not None else settings.home
    return DiskFull(
        f"the disk is full: a write under {folder} failed ({str(error).splitlines()[0][:200] if str(error) else type(error).__name__}). "
        "The driver stopped and closed what it could; the trials that were running will run again. "
        "Free some space (or point --home / $IEL_HOME at a larger disk) and `iel submit` the study again: "
        "the resume repairs the records left open and keeps every finished trial."
    )


def nothing_to_do(db: ResultsDB, spec: StudySpec, plan: Plan) -> bool:
    """True when a resubmitted study has nothing left to run: every planned trial (or each cell's search
    budget) finished in this study, and no record is left RUNNING or PENDING by an earlier driver."""
    if db.study(spec.name) is None:
        return False
    trials = db.trials(spec.name)
    if any(not t.state.is_finished for t in trials):
        return False
    if spec.search is not None:
        done = Counter(t.cell_key for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED))
        return all(done[cell.key] >= spec.search.n_trials for cell in plan.cells)
    complete = {t.trial_hash for t in trials if t.state == TrialState.COMPLETE}
    if not all(planned.trial_hash in complete for planned in plan.trials):
        return False
    return spec.adaptive is None or _adaptive_done(db, spec, trials)


def _adaptive_done(db: ResultsDB, spec: StudySpec, trials: list[TrialRecord]) -> bool:
    """Adaptive seeds: every added seed finished and no undecided comparison is below ``max`` (a re-submit
    with a larger ``max`` has work)."""
    from orchestrator.decisions import study_decisions
    from orchestrator.stats import Outcome

    if spec.adaptive is None or spec.decide is None or any(t.state != TrialState.COMPLETE for t in trials):
        return False
    issued = Counter(t.cell_key for t in trials)
    return all(
        d.decision.decision is not Outcome.UNDECIDED or issued[d.cell] >= spec.adaptive.max
        for d in study_decisions(db, spec.name, spec.decide)
    )
