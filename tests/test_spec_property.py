"""Property: any mutation of a valid study gives a Plan or a SpecError, never another exception."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ielcore.errors import SpecError
from orchestrator.plan import Plan, build_plan
from orchestrator.study import apply_overrides, parse_study
from orchestrator.study_version import ChangeKind, StudyChanged, canonical_spec, check_resubmit

BASE = {
    "data": {"type": "cells", "num_images": 16, "size": 32},
    "model": {"type": "unet", "width": 8, "depth": 2},
    "noise": {"type": "block"},
    "iel": {"type": "heat"},
    "epochs": 2,
    "batch_size": 4,
}
GRID = {
    "version": 1,
    "name": "prop",
    "description": "property test",
    "base": BASE,
    "factors": {"noise.rate": [0.0, 0.3], "iel.type": ["none", "heat"], "iel.steps": [5, 10]},
    "zip": [{"optimizer.lr": [0.001, 0.01], "optimizer.type": ["adam", "sgd"]}],
    "exclude": [{"iel.type": "none", "noise.rate": 0.0}],
    "baseline": {"iel.type": "none"},
    "seeds": 2,
    "resources": {"cpus": 1, "gpus": 0.5, "gpu_memory_fraction": 0.5},
    "max_concurrent": 2,
    "retries": 1,
    "timeout_s": 60,
    "fuse": "off",
}
SEARCHED = {
    **{k: v for k, v in GRID.items() if k != "zip"},
    "seeds": [0, 5],
    "search": {
        "n_trials": 4,
        "sampler": "tpe",
        "pruner": "median",
        "seed": 0,
        "objectives": [{"metric": "dice", "direction": "maximize"}],
        "params": {
            "iel.dt": {"type": "float", "low": 0.01, "high": 0.2, "log": True},
            "label_smoothing.steps": {"type": "int", "low": 0, "high": 10, "step": 2},
            "optimizer.type": {"type": "categorical", "choices": ["adam", "sgd"]},
        },
    },
}

ARMED = {
    **{k: v for k, v in GRID.items() if k not in ("zip", "factors", "exclude", "baseline")},
    "arms": {"plain": {"iel": {"type": "none"}}, "heat": {"iel": {"type": "heat", "dt": 0.1, "steps": 5}}},
    "factors": {"noise.rate": [0.0, 0.3], "iel.max_gain": [100.0, 1000.0]},
    "exclude": [{"arm": "heat", "noise.rate": 0.0}],
    "baseline": "plain",
}

KEYS = st.sampled_from(
    ["arm", "iel.stepz", "noise.rate", "iel", "seed", "model.width", "type", "low", "x.y.z", ""]
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-1000, 1000)
    | st.sampled_from([2**31, -(2**31), 2**63, 2**64])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
    | st.sampled_from(["none", "heat", "tv", "grid", "median", "dice", "auto", "float", "categorical"])
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(KEYS | st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=8,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*prefix, i))


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def _other_type(value: Any) -> st.SearchStrategy[Any]:
    kinds = {
        dict: st.lists(SCALARS, max_size=3),
        list: st.text(max_size=5) | st.dictionaries(st.text(max_size=4), SCALARS, max_size=2),
        str: st.integers(-5, 5) | st.lists(SCALARS, max_size=2),
        bool: st.sampled_from(["yes", 1, 0.5]),
        type(None): st.sampled_from([0, "", [], {}]),
    }
    return kinds.get(type(value), st.text(max_size=5) | st.booleans() | st.lists(SCALARS, max_size=2))


def mutate(doc: Any, data: st.DataObject) -> Any:
    path = data.draw(st.sampled_from(list(_paths(doc))), label="path")
    op = data.draw(st.sampled_from(["delete", "insert", "replace", "retype"]), label="op")
    target = _get(doc, path)
    if op == "delete" and path:
        parent = _get(doc, path[:-1])
        del parent[path[-1]]
    elif op == "insert" and isinstance(target, dict):
        target[data.draw(KEYS | st.text(max_size=6), label="key")] = data.draw(VALUES, label="value")
    elif op == "insert" and isinstance(target, list):
        target.insert(data.draw(st.integers(0, len(target))), data.draw(VALUES, label="value"))
    else:
        value = data.draw(VALUES if op != "retype" else _other_type(target), label="new value")
        if not path:
            return value
        _get(doc, path[:-1])[path[-1]] = value
    return doc


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_study_gives_a_plan_or_a_spec_error(data: st.DataObject) -> None:
    doc: Any = copy.deepcopy(data.draw(st.sampled_from([GRID, SEARCHED, ARMED]), label="start"))
    for _ in range(data.draw(st.integers(1, 4), label="mutations")):
        doc = mutate(doc, data)
    try:
        plan = build_plan(parse_study(doc, source="prop.yaml"))
    except SpecError as e:
        assert e.message and str(e).startswith("prop.yaml")
        return
    assert isinstance(plan, Plan) and plan.cells
    assert len({c.key for c in plan.cells}) == len(plan.cells)
    assert len({t.trial_hash for t in plan.trials}) == len(plan.trials)
    assert plan.n_trials() >= len(plan.cells) and plan.describe()
    # The stored version of a valid study compares equal to itself, as stored (sorted JSON) and as the
    # raw document (what spec_json held before the canonical form).
    canonical = canonical_spec(plan.study)
    stored = json.loads(json.dumps(canonical, sort_keys=True))
    assert check_resubmit(stored, canonical).kind is ChangeKind.IDENTICAL
    with pytest.raises(StudyChanged) as raw:  # raw: recorded by code that did not fingerprint itself
        check_resubmit(doc, canonical)
    assert [c.path for c in raw.value.changes] == ["code"]
    # Setting every top-level key to its own value with --set (JSON is YAML flow) changes nothing.
    sets = [f"{k}={json.dumps(v)}" for k, v in doc.items()]
    again = parse_study(apply_overrides(doc, sets), overrides=sets)
    assert check_resubmit(canonical, canonical_spec(again)).changes[0].path == "overrides"


def test_unmutated_documents_are_valid() -> None:
    grid, searched = build_plan(parse_study(GRID)), build_plan(parse_study(SEARCHED))
    # 16 combinations - 4 excluded (none x 0.0) - 2 collapsed (iel.steps dropped for none)
    assert (len(grid.cells), len(grid.trials)) == (10, 20)
    assert (len(searched.cells), searched.trials, searched.n_trials()) == (5, (), 20)
    # 2 arms x 2 rates x 2 gains - 2 excluded (heat x 0.0) - 2 collapsed (max_gain dropped for none)
    armed = build_plan(parse_study(ARMED))
    assert [c.key for c in armed.cells] == [
        "arm=plain,noise.rate=0.0",
        "arm=plain,noise.rate=0.3",
        "arm=heat,noise.rate=0.3,iel.max_gain=100.0",
        "arm=heat,noise.rate=0.3,iel.max_gain=1000.0",
    ]
