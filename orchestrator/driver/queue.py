"""What runs next: the trials of the plan in order, Optuna's asks, fused groups -- and whatever a finished
trial calls for.

The driver loop talks to a :class:`TrialQueue` only:

* :meth:`TrialQueue.has_work` -- is a trial ready now (asking Optuna for one if the study searches);
* :meth:`TrialQueue.next_group` -- the trials one free worker takes: one trial, or a fused group;
* :meth:`TrialQueue.retry` -- a failed attempt goes back to the front (alone);
* :meth:`TrialQueue.on_finished` -- a trial ended for good: every registered *follower* may answer with new
  trials, appended with :meth:`TrialQueue.add` (e.g. more seeds of a cell whose interval is still wide);
* :attr:`TrialQueue.exhausted` -- nothing is ready and no source can produce more; the loop ends when the
  queue is exhausted and nothing is running (a running trial's end may still add work).

Fused groups (``fuse: auto``, grid studies) come from the plan, never from timing: the trials that share a
:func:`~ielcore.fused.fusion_key` are cut, in plan order, into chunks of :data:`FUSE_GROUP_SIZE`, so a
trial trains with the same partners however fast workers start (:func:`fusion_plan`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable

from ielcore.errors import SpecError
from ielcore.states import TrialState
from orchestrator.driver.adaptive import Decider
from orchestrator.driver.item import WorkItem
from orchestrator.driver.recorder import Recorder
from orchestrator.driver.storage import storage_call
from orchestrator.plan import Plan, search_trial_config
from orchestrator.study import StudySpec
from workers.protocol import TrialOutcome

FUSE_GROUP_SIZE = 4  # trials fused into one model (fuse: auto), whatever the number of workers

Follower = Callable[[WorkItem, TrialOutcome], Iterable[WorkItem]]
"""Called when a trial ended for good (not when it is retried); returns trials to add to the queue."""


def fusion_plan(plan: Plan, size: int = FUSE_GROUP_SIZE) -> dict[str, str]:
    """``trial_hash -> group name`` for a ``fuse: auto`` grid study (empty otherwise): the trials with one
    fusion key, in plan order, in chunks of ``size``; a group is named ``<key prefix>/<chunk index>``."""
    if plan.study.fuse != "auto" or plan.study.search is not None:
        return {}
    from ielcore.fused import fusion_key

    members: dict[str, list[str]] = {}
    for planned in plan.trials:
        key = fusion_key(planned.config)
        if key is not None:
            members.setdefault(key, []).append(planned.trial_hash)
    groups: dict[str, str] = {}
    for key, hashes in members.items():
        for start in range(0, len(hashes), size):
            groups.update((h, f"{key[:12]}/{start // size}") for h in hashes[start : start + size])
    return groups


MAX_DUPLICATE_ASKS = 50  # proposals in a row that repeat a finished configuration: the cell's space is spent


class SearchAsks:
    """Optuna's asks for a search study: one configuration at a time (when a worker is free), cell after
    cell, until each cell's ``n_trials`` budget is spent (trials finished in an earlier submit count).

    A proposal whose configuration the cell already has (finished, or asked in this submit) is told FAIL
    in Optuna with ``duplicate_of`` and asked again without spending the budget, so a resumed search ends
    with ``n_trials`` distinct configurations and no duplicate Optuna trials."""

    def __init__(self, spec: StudySpec, plan: Plan, recorder: Recorder) -> None:
        assert spec.search is not None, "SearchAsks needs a study with a search section"
        self.spec, self.plan, self.recorder = spec, plan, recorder
        n_trials = spec.search.n_trials
        self.budget: deque[tuple[str, int]] = deque()
        self.seen: dict[str, set[str]] = {cell.key: set() for cell in plan.cells}
        finished = (TrialState.COMPLETE, TrialState.PRUNED)
        for rec in recorder.db.trials(spec.name, states=finished) if recorder.db.study(spec.name) else []:
            self.seen.setdefault(rec.cell_key, set()).add(rec.trial_hash)
        self.duplicates = 0
        for cell in plan.cells:
            done = recorder.searches[cell.key].finished_count()
            self.budget.append((cell.key, max(0, n_trials - done)))
            recorder.progress.kept += min(done, n_trials)

    def remaining(self) -> int:
        return sum(left for _, left in self.budget)

    def next_item(self) -> WorkItem | None:
        """The next configuration to run, or None when the budget is spent."""
        repeats = 0
        while self.budget:
            key, left = self.budget[0]
            if left <= 0 or repeats >= MAX_DUPLICATE_ASKS:  # spent, or nothing new left to propose
                self.budget.popleft()
                repeats = 0
                continue
            item, spent = self._ask(key)
            if spent:
                self.budget[0] = (key, left - 1)
                repeats = 0
            else:
                repeats += 1
            if item is not None:
                return item
        return None

    def _ask(self, key: str) -> tuple[WorkItem | None, bool]:
        """Ask one configuration; returns the trial to run (or None) and whether it spent the budget."""
        cell, search = self.plan.cell(key), self.recorder.searches[key]
        trial, params = storage_call(search.ask)
        seed = self.spec.seeds[trial.number % len(self.spec.seeds)]
        try:
            cfg = search_trial_config(cell, params, seed)
        except SpecError as e:  # a sampled combination can be invalid (e.g. an IEL gain over its limit)
            self.recorder.reject(cell, trial, str(e))
            return None, True
        identity = cfg.identity
        if identity in self.seen[key]:  # proposed again: not a new trial, ask again
            storage_call(trial.set_user_attr, "duplicate_of", identity)
            storage_call(search.tell_failed, trial)
            self.duplicates += 1
            return None, False
        self.seen[key].add(identity)
        return self.recorder.new_search_item(cell, trial, seed, cfg.to_dict(), identity), True


class TrialQueue:
    """The trials waiting to run (see the module docstring).  Not thread safe: the driver loop owns it."""

    def __init__(self, items: Iterable[WorkItem] = (), asks: SearchAsks | None = None) -> None:
        self._ready: deque[WorkItem] = deque()  # may hold stale entries: only ids in _queued are waiting
        self._queued: set[int] = set()
        self._groups: dict[str, list[WorkItem]] = {}
        self._asks = asks
        self._followers: list[Follower] = []
        for item in items:
            self.add(item)

    # ------------------------------------------------------------------------------------ adding
    def add(self, item: WorkItem) -> None:
        """Append a trial (at any time, also while others run); it keeps its ``fuse_group``."""
        self._ready.append(item)
        self._queued.add(id(item))
        if item.fuse_group is not None:
            self._groups.setdefault(item.fuse_group, []).append(item)

    def retry(self, item: WorkItem) -> None:
        """Put a trial whose attempt failed back at the front; it runs again alone."""
        item.fuse_group = None
        self._ready.appendleft(item)
        self._queued.add(id(item))

    def follow(self, follower: Follower) -> None:
        """Register ``follower``, called by :meth:`on_finished`."""
        self._followers.append(follower)

    def on_finished(self, item: WorkItem, outcome: TrialOutcome) -> None:
        """A trial ended for good: add what the followers ask for."""
        for follower in self._followers:
            for new in follower(item, outcome):
                self.add(new)

    # ------------------------------------------------------------------------------------ taking
    def has_work(self) -> bool:
        """True when a trial is ready now (a search study asks Optuna for one here)."""
        if not self._queued and self._asks is not None:
            item = self._asks.next_item()
            if item is not None:
                self.add(item)
        return bool(self._queued)

    def next_group(self) -> list[WorkItem]:
        """The trials one free worker takes now: the first waiting trial and its fused group, if any."""
        while self._ready:
            first = self._ready.popleft()
            if id(first) not in self._queued:  # a stale entry: taken earlier with its group
                continue
            group = [first]
            if first.fuse_group is not None:
                group = self._groups.pop(first.fuse_group, group)
            if len(group) == 1:
                first.fuse_group = None
            self._queued.difference_update(id(m) for m in group)
            return group
        return []

    def waiting(self) -> int:
        """Trials that wait for a worker, counting the asks left in a search's budget."""
        return len(self._queued) + (self._asks.remaining() if self._asks is not None else 0)

    @property
    def exhausted(self) -> bool:
        return not self._queued and (self._asks is None or self._asks.remaining() == 0)

    def drain(self) -> list[WorkItem]:
        """Take every waiting trial out (the driver is stopping)."""
        items = []
        for item in self._ready:
            if id(item) in self._queued:
                self._queued.discard(id(item))
                items.append(item)
        self._ready.clear()
        self._groups.clear()
        return items


def build_queue(spec: StudySpec, plan: Plan, recorder: Recorder) -> TrialQueue:
    """The study's queue: Optuna's asks for a search study; otherwise the plan's trials that still have to
    run (each recorded first; kept and reused ones are resolved here), in plan order, with fused groups."""
    if spec.search is not None:
        return TrialQueue(asks=SearchAsks(spec, plan, recorder))
    groups = fusion_plan(plan)
    queue = TrialQueue()
    for planned in plan.trials:
        item = recorder.new_item(
            plan.cell(planned.cell_key),
            planned.seed,
            planned.config.to_dict(),
            planned.trial_hash,
            fuse_group=groups.get(planned.trial_hash),
        )
        if item is not None:
            queue.add(item)
    if spec.decide is not None:  # decisions after every trial; adaptive seeds: more only where undecided
        decider = Decider(spec, plan, recorder)
        for item in decider.resume():
            queue.add(item)
        queue.follow(decider.follow)
    return queue
