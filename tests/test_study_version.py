"""Edited studies never mix: re-submitting a study with a changed spec (issue #12 items 2 and 4)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ielcore.errors import SpecError
from ielcore.yamlio import parse_yaml_text
from orchestrator.study import parse_study
from orchestrator.study_version import (
    ChangeKind,
    StudyChanged,
    canonical_spec,
    check_resubmit,
    rename,
)

GRID = """
version: 1
name: edited
base: {data: {type: cells, num_images: 16, size: 32}, model: {width: 8, depth: 2}, epochs: 3}
factors: {noise.rate: [0.0, 0.2], iel.type: [none, heat]}
baseline: {iel.type: none}
seeds: 3
max_concurrent: 1
"""

SEARCH = """
version: 1
name: searched
base: {epochs: 2}
factors: {noise.rate: [0.0, 0.2]}
seeds: 2
search:
  n_trials: 6
  objectives: [{metric: dice}]
  params: {optimizer.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}}
"""

ADAPTIVE = """
version: 1
name: adaptive
base: {epochs: 2}
factors: {iel.type: [none, heat]}
baseline: {iel.type: none}
seeds: {adaptive: {start: 3, max: 30, batch: 2}}
decide: {metric: dice, margin: 0.01}
"""


def spec_of(text: str, **edits: Any) -> dict[str, Any]:
    """The canonical spec of ``text`` with top-level keys replaced (``None`` removes a key)."""
    doc = parse_yaml_text(text)
    for key, value in edits.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return canonical_spec(parse_study(doc))


def refused(old: dict[str, Any], new: dict[str, Any], **kw: Any) -> StudyChanged:
    with pytest.raises(StudyChanged) as info:
        check_resubmit(old, new, **kw)
    return info.value


def test_identical_and_equivalent_writings_are_identical() -> None:
    old = spec_of(GRID)
    assert check_resubmit(old, spec_of(GRID)).kind is ChangeKind.IDENTICAL
    # seeds: 3 is the list [0, 1, 2]; a default written out is the default.
    assert check_resubmit(old, spec_of(GRID, seeds=[0, 1, 2], retries=1)).kind is ChangeKind.IDENTICAL
    base = {"data": {"type": "cells", "num_images": 16, "size": 32}, "model": {"width": 8, "depth": 2}}
    assert check_resubmit(old, spec_of(GRID, base={**base, "epochs": 3, "batch_size": 4})).changes == ()


def test_canonical_spec_is_json_and_survives_the_stored_round_trip() -> None:
    spec = canonical_spec(parse_study(parse_yaml_text(SEARCH)))
    stored = json.loads(
        json.dumps(spec, sort_keys=True, separators=(",", ":"))
    )  # as the repository stores it
    assert check_resubmit(stored, spec).kind is ChangeKind.IDENTICAL
    assert spec["factor_order"] == ["noise.rate"] and spec["seeds"] == [0, 1]
    assert spec["search"]["objectives"] == [{"metric": "dice", "direction": "maximize"}]


def test_seeds_shrinking_is_refused_with_a_diff_and_the_way_out() -> None:
    err = refused(spec_of(GRID), spec_of(GRID, seeds=2))
    assert err.study == "edited" and [str(c) for c in err.changes] == ["seeds: [0, 1, 2] -> [0, 1]"]
    text = str(err)
    assert "seeds: [0, 1, 2] -> [0, 1]" in text and "seeds [2] would be dropped" in text
    assert "new 'name:'" in text and "--as NEW_NAME" in text and "undo the change" in text


def test_epochs_change_is_refused() -> None:
    old = spec_of(GRID)
    base = {**parse_yaml_text(GRID)["base"], "epochs": 5}
    err = refused(old, spec_of(GRID, base=base))
    assert [(c.path, c.old, c.new) for c in err.changes] == [("base.epochs", 3, 5)]


def test_removing_a_factor_value_is_refused() -> None:
    err = refused(spec_of(GRID), spec_of(GRID, factors={"noise.rate": [0.0], "iel.type": ["none", "heat"]}))
    assert "factors.noise.rate: [0.0, 0.2] -> [0.0]" in str(err)


def test_reordering_factors_is_refused_because_cell_keys_change() -> None:
    err = refused(
        spec_of(GRID), spec_of(GRID, factors={"iel.type": ["none", "heat"], "noise.rate": [0.0, 0.2]})
    )
    assert [c.path for c in err.changes] == ["factor_order"]


def test_growing_seeds_and_execution_settings_are_accepted() -> None:
    old = spec_of(GRID)
    change = check_resubmit(old, spec_of(GRID, seeds=5, max_concurrent=4, retries=3, description="more"))
    assert change.kind is ChangeKind.COMPATIBLE
    assert {c.path for c in change.changes} == {"seeds", "max_concurrent", "retries", "description"}
    assert "max_concurrent: 1 -> 4" in change.describe()
    res = {"cpus": 2, "gpus": 0.5}
    assert check_resubmit(old, spec_of(GRID, resources=res, timeout_s=60)).kind is ChangeKind.COMPATIBLE
    base = {**parse_yaml_text(GRID)["base"], "artifacts": {"checkpoint": False}}
    assert check_resubmit(old, spec_of(GRID, base=base)).kind is ChangeKind.COMPATIBLE
    # a seed list that keeps every old seed, in any order
    assert check_resubmit(old, spec_of(GRID, seeds=[2, 0, 1, 7])).kind is ChangeKind.COMPATIBLE
    refused(old, spec_of(GRID, seeds=[0, 1, 7]))


def test_search_objective_direction_and_range_changes_are_refused() -> None:
    old = spec_of(SEARCH)
    doc = parse_yaml_text(SEARCH)["search"]
    err = refused(
        old, spec_of(SEARCH, search={**doc, "objectives": [{"metric": "dice", "direction": "minimize"}]})
    )
    assert "search.objectives" in str(err) and '"maximize"' in str(err) and '"minimize"' in str(err)
    params = {"optimizer.lr": {"type": "float", "low": 1.0e-4, "high": 1.0e-1, "log": True}}
    err = refused(old, spec_of(SEARCH, search={**doc, "params": params}))
    assert [(c.path, c.old, c.new) for c in err.changes] == [("search.params.optimizer.lr.high", 0.01, 0.1)]
    refused(old, spec_of(SEARCH, search={**doc, "objectives": ["val_loss"]}))
    refused(old, spec_of(SEARCH, search={**doc, "sampler": "random"}))


def test_search_more_trials_continue_fewer_are_refused_and_seeds_are_fixed() -> None:
    old = spec_of(SEARCH)
    doc = parse_yaml_text(SEARCH)["search"]
    assert check_resubmit(old, spec_of(SEARCH, search={**doc, "n_trials": 10})).kind is ChangeKind.COMPATIBLE
    assert "lowered from 6 to 4" in str(refused(old, spec_of(SEARCH, search={**doc, "n_trials": 4})))
    assert "cycle through the seeds" in str(refused(old, spec_of(SEARCH, seeds=3)))


def test_adaptive_max_raised_is_accepted_lowered_only_below_what_ran() -> None:
    old = spec_of(ADAPTIVE)
    seeds = parse_yaml_text(ADAPTIVE)["seeds"]
    more = {"adaptive": {**seeds["adaptive"], "max": 40}}
    change = check_resubmit(old, spec_of(ADAPTIVE, seeds=more))
    assert change.kind is ChangeKind.COMPATIBLE
    assert [str(c) for c in change.changes] == ["seeds.adaptive.max: 30 -> 40"]
    fewer = spec_of(ADAPTIVE, seeds={"adaptive": {**seeds["adaptive"], "max": 20}})
    assert "may have more seeds" in str(refused(old, fewer))
    assert "already have 25 seeds" in str(refused(old, fewer, seeds_done=25))
    assert check_resubmit(old, fewer, seeds_done=9).kind is ChangeKind.COMPATIBLE
    refused(old, spec_of(ADAPTIVE, seeds={"adaptive": {**seeds["adaptive"], "start": 4}}))
    refused(old, spec_of(ADAPTIVE, seeds=3, decide=None))


def test_decide_baseline_exclude_fuse_and_zip_changes_are_refused() -> None:
    old = spec_of(ADAPTIVE)
    refused(old, spec_of(ADAPTIVE, decide={"metric": "dice", "margin": 0.02}))
    grid = spec_of(GRID)
    refused(grid, spec_of(GRID, baseline={"iel.type": "heat"}))
    refused(grid, spec_of(GRID, exclude=[{"noise.rate": 0.0, "iel.type": "heat"}]))
    refused(grid, spec_of(GRID, fuse="auto"))
    err = refused(
        grid, spec_of(GRID, zip=[{"optimizer.lr": [0.001, 0.01], "optimizer.type": ["adam", "sgd"]}])
    )
    assert [c.path for c in err.changes] == ["zip", "factor_order"]


def test_the_diff_is_capped_at_ten_lines() -> None:
    old = spec_of(GRID)
    base = {"epochs": 9, "batch_size": 2, "amp": True, "device": "cpu"}
    base |= {"model": {"width": 4, "depth": 1}, "optimizer": {"type": "sgd", "lr": 0.5, "momentum": 0.1}}
    base |= {"data": {"type": "cells", "num_images": 8, "size": 16}}
    err = refused(
        old,
        spec_of(
            GRID, base=base, seeds=1, fuse="auto", factors={"noise.rate": [0.1], "iel.type": ["none", "heat"]}
        ),
    )
    lines = str(err).splitlines()
    assert len(err.changes) > 10 and f"... and {len(err.changes) - 10} more" in str(err)
    assert len(lines) == 1 + 10 + 1 + 1


def test_a_stored_raw_document_from_before_is_parsed_and_compared() -> None:
    raw = parse_yaml_text(GRID)  # what spec_json held before the canonical form
    # parsed and compared: the only difference is the code, unknown before code fingerprints were recorded
    err = refused(raw, spec_of(GRID))
    assert [c.path for c in err.changes] == ["code"] and err.changes[0].old is None
    assert "predate code fingerprints" in str(err)
    assert [c.path for c in refused(raw, spec_of(GRID, seeds=2)).changes] == ["seeds", "code"]
    broken = {**raw, "factors": {"noise.rate": "not a list"}}
    assert "can no longer be read" in str(refused(broken, spec_of(GRID)))


def test_rename_gives_a_new_name_and_checks_it() -> None:
    spec = parse_study(parse_yaml_text(GRID))
    renamed = rename(spec, "edited_v2")
    assert renamed.name == "edited_v2" and renamed.raw["name"] == "edited_v2" and spec.name == "edited"
    assert canonical_spec(renamed)["name"] == "edited_v2"
    with pytest.raises(SpecError, match="--as.*invalid name 'bad name'"):
        rename(spec, "bad name")


def test_overrides_are_recorded_but_only_their_effect_is_compared() -> None:
    doc = parse_yaml_text(GRID)
    written = parse_study({**doc, "max_concurrent": 1}, overrides=[])
    overridden = parse_study({**doc, "max_concurrent": 1}, overrides=["max_concurrent=1"])
    assert canonical_spec(overridden)["overrides"] == ["max_concurrent=1"]
    assert check_resubmit(canonical_spec(written), canonical_spec(overridden)).kind is ChangeKind.COMPATIBLE


@settings(max_examples=60, deadline=None)
@given(
    old=st.lists(st.integers(0, 20), min_size=1, max_size=6, unique=True),
    new=st.lists(st.integers(0, 20), min_size=1, max_size=6, unique=True),
    workers=st.integers(1, 8),
)
def test_a_seed_list_change_is_accepted_exactly_when_no_old_seed_is_dropped(
    old: list[int], new: list[int], workers: int
) -> None:
    before, after = spec_of(GRID, seeds=old), spec_of(GRID, seeds=new, max_concurrent=workers)
    if set(old) <= set(new):
        kind = check_resubmit(before, after).kind
        assert kind is (ChangeKind.IDENTICAL if old == new and workers == 1 else ChangeKind.COMPATIBLE)
    else:
        err = refused(before, after)
        assert [c.path for c in err.changes] == ["seeds"]
        assert str(sorted(set(old) - set(new), key=old.index)) in str(err)
