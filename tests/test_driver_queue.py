"""The driver's queue: fused groups from the plan (never from timing), retries, follow-up trials."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from ielcore.states import TrialState
from orchestrator.driver.item import WorkItem
from orchestrator.driver.queue import FUSE_GROUP_SIZE, TrialQueue, fusion_plan
from orchestrator.plan import build_plan
from orchestrator.study import parse_study
from tests.studyfiles import noop_study
from workers.protocol import TrialOutcome

TRAIN = {
    "epochs": 1,
    "model": {"type": "unet", "width": 4, "depth": 1},
    "data": {"type": "cells", "num_images": 8, "size": 16},
}


def _plan(fuse: str, seeds: int = 5) -> Any:
    doc = noop_study(
        "q",
        base=TRAIN,
        factors={"iel.type": ["none", "heat"]},
        baseline={"iel.type": "none"},
        seeds=seeds,
        fuse=fuse,
    )
    return build_plan(parse_study(doc))


def _items(plan: Any) -> list[WorkItem]:
    groups = fusion_plan(plan)
    return [
        WorkItem(
            SimpleNamespace(id=n),
            plan.cell(t.cell_key),
            None,
            t.config.to_dict(),
            fuse_group=groups.get(t.trial_hash),
        )  # type: ignore[arg-type]
        for n, t in enumerate(plan.trials)
    ]


def test_fusion_groups_are_fixed_chunks_of_the_plan() -> None:
    plan = _plan("auto")  # 2 cells x 5 seeds, one fusion key: chunks of 4, 4, 2 in plan order
    groups = fusion_plan(plan)
    names = [groups[t.trial_hash] for t in plan.trials]
    assert FUSE_GROUP_SIZE == 4 and [names.count(n) for n in dict.fromkeys(names)] == [4, 4, 2]
    assert names == sorted(names, key=names.index)  # each group is a contiguous run of the plan
    assert fusion_plan(plan) == groups  # a pure function of the plan
    assert fusion_plan(_plan("off")) == {}


def test_queue_hands_out_plan_groups_retries_alone_and_takes_follow_ups() -> None:
    plan = _plan("auto")
    items = _items(plan)
    queue = TrialQueue(items)
    assert queue.waiting() == 10 and not queue.exhausted
    first = queue.next_group()
    assert [i.record.id for i in first] == [0, 1, 2, 3]
    queue.retry(first[2])  # a failed attempt runs again alone, before anything else
    assert [i.record.id for i in queue.next_group()] == [2] and first[2].fuse_group is None
    added = WorkItem(SimpleNamespace(id=99), items[0].cell, None, {})  # type: ignore[arg-type]
    queue.follow(lambda item, outcome: [added] if item.record.id == 0 else [])
    queue.on_finished(items[0], TrialOutcome(trial_id=0, attempt=1, state=TrialState.COMPLETE))
    queue.on_finished(items[1], TrialOutcome(trial_id=1, attempt=1, state=TrialState.COMPLETE))
    taken = [[i.record.id for i in queue.next_group()] for _ in range(3)]
    assert taken == [[4, 5, 6, 7], [8, 9], [99]]  # the follow-up comes after the plan
    assert items[8].fuse_group is not None and added.fuse_group is None
    assert queue.next_group() == [] and queue.exhausted and queue.waiting() == 0
