"""Seeds by the evidence: new seeds go only to comparisons that are still undecided.

With ``seeds: {adaptive: {start, max, batch}}`` every cell starts with seeds ``0 .. start-1`` (the plan).
Each time a trial ends the decisions are recomputed from the database (:func:`orchestrator.decisions.
study_decisions`; never held only in memory) and stored (view ``iel_decisions``).  A comparison that is still
``undecided`` and has fewer than ``max`` seeds gets the next ``batch`` seeds, for the arm and, where the
baseline does not have them yet, for its row's baseline (a baseline seed serves every arm of its row):

when its pairs have finished (nothing of the arm or of its baseline is pending or running).  So a comparison is
looked at after ``start``, ``start + batch``, ... seeds, and the seeds it ends with, its estimate and its
interval depend only on the data, never on how fast workers ran (a speculative batch handed to an idle worker
would make them depend on timing).  Workers idle only while every undecided comparison waits for one of its
own pairs that is still running.

Decided comparisons get none.  The study ends when every comparison is decided or at ``max``.  Seeds are
always ``0, 1, 2, ...`` in a cell, and a seed's trial is exactly the one a fixed design would have planned
(:meth:`orchestrator.plan.Plan.trials_for_seeds`), so it is identified by the same hash: after a restart, or a
re-submit with a larger ``max``, the unfinished seeds are taken up again and nothing is trained twice.
"""

from __future__ import annotations

from collections.abc import Iterable

from ielcore.states import TrialState
from orchestrator.db import TrialRecord
from orchestrator.db.comparisons import save_decisions
from orchestrator.decisions import study_decisions
from orchestrator.driver.item import WorkItem
from orchestrator.driver.recorder import Recorder
from orchestrator.plan import Plan
from orchestrator.stats import CellDecision, Outcome
from orchestrator.study import AdaptiveSeeds, StudySpec
from workers.protocol import TrialOutcome

_UNFINISHED = (TrialState.PENDING, TrialState.RUNNING)


class Decider:
    """The follower of the driver's queue for a study with ``decide:`` (see the module docstring).

    With fixed seeds it only recomputes and stores the decisions after every trial; with adaptive seeds it
    also gives the undecided comparisons their next seeds."""

    def __init__(self, spec: StudySpec, plan: Plan, recorder: Recorder) -> None:
        if spec.decide is None:
            raise ValueError("Decider needs a study with a decide section")
        self.spec, self.plan, self.recorder = spec, plan, recorder
        self.adaptive, self.decide = spec.adaptive, spec.decide
        self.decisions: list[CellDecision] = []

    # ---------------------------------------------------------------------------------- queue hooks
    def resume(self) -> list[WorkItem]:
        """At start: the unfinished seeds past the plan (an earlier driver added them), then what is due."""
        if self.adaptive is None:
            return self._extend()
        planned = set(self.adaptive.initial_seeds)
        items: list[WorkItem] = []
        for key, seeds in sorted(self._issued(self._trials()).items()):
            extra = sorted(seeds - planned)
            items += self._make(key, extra, count=False)
        return items + self._extend()

    def follow(self, item: WorkItem, outcome: TrialOutcome) -> Iterable[WorkItem]:
        """A trial ended for good: recompute the decisions; seeds for undecided comparisons whose pairs are in."""
        return self._extend()

    # ---------------------------------------------------------------------------------- the rule
    def _extend(self) -> list[WorkItem]:
        """New trials for the undecided comparisons that are due (see the module docstring)."""
        while True:
            trials = self._trials()
            self.decisions = study_decisions(self.recorder.db, self.spec.name, self.decide)
            save_decisions(self.recorder.db, self.spec.name, self.decisions)
            self.recorder.progress.decisions(
                [
                    (
                        d.cell,
                        d.decision.decision.value,
                        d.decision.estimate,
                        d.decision.cs_low,
                        d.decision.cs_high,
                    )
                    for d in self.decisions
                ]
            )
            targets = self._targets(trials, self.adaptive) if self.adaptive is not None else {}
            if not targets:
                return []
            issued = self._issued(trials)
            items: list[WorkItem] = []
            for key, target in sorted(targets.items()):
                have = issued.get(key, set())
                items += self._make(key, [s for s in range(target) if s not in have], count=True)
            if items:
                return items
            # every new seed was kept or reused (finished before): decide again with them

    def _targets(self, trials: list[TrialRecord], adaptive: AdaptiveSeeds) -> dict[str, int]:
        """``cell -> number of seeds it should have`` for every cell that needs more now."""
        issued = self._issued(trials)
        pending: dict[str, int] = {}
        for t in trials:
            if t.state in _UNFINISHED:
                pending[t.cell_key] = pending.get(t.cell_key, 0) + 1
        targets: dict[str, int] = {}
        for d in self.decisions:
            if d.decision.decision is not Outcome.UNDECIDED:
                continue
            have = len(issued.get(d.cell, ()))
            busy = pending.get(d.cell, 0) + pending.get(d.baseline_cell, 0)
            if have >= adaptive.max or busy:
                continue
            target = have + len(adaptive.next_seeds(have))
            for key in (d.cell, d.baseline_cell):
                if len(issued.get(key, ())) < target:
                    targets[key] = max(targets.get(key, 0), target)
        return targets

    def _make(self, key: str, seeds: list[int], *, count: bool) -> list[WorkItem]:
        """Record the trials of ``seeds`` in cell ``key`` (idempotent by hash); the ones that must run."""
        if not seeds:
            return []
        cell = self.plan.cell(key)
        items: list[WorkItem] = []
        for planned in self.plan.trials_for_seeds(key, seeds):
            if count:
                self.recorder.progress.trial_added(key)
            item = self.recorder.new_item(cell, planned.seed, planned.config.to_dict(), planned.trial_hash)
            if item is not None:
                items.append(item)
        return items

    # ---------------------------------------------------------------------------------- reading
    def _trials(self) -> list[TrialRecord]:
        return self.recorder.db.trials(self.spec.name)

    @staticmethod
    def _issued(trials: list[TrialRecord]) -> dict[str, set[int]]:
        out: dict[str, set[int]] = {}
        for t in trials:
            out.setdefault(t.cell_key, set()).add(t.seed)
        return out
