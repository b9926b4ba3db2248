"""The plan: cells (factorial, zip, exclude, collapse), baseline, trial hashes, search configs, describe()."""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import pytest

from ielcore.errors import SpecError
from ielcore.spec import TrialConfig, apply_overrides, config_hash
from orchestrator.plan import Cell, build_plan, cell_key, cell_search_params, search_trial_config
from orchestrator.study import parse_study

BASE = {
    "data": {"type": "cells", "num_images": 16, "size": 32},
    "model": {"type": "unet", "width": 8, "depth": 2},
    "noise": {"type": "block"},
    "epochs": 2,
    "batch_size": 4,
}


def study(**fields: Any) -> Any:
    doc: dict[str, Any] = {"version": 1, "name": "p", "base": copy.deepcopy(BASE)}
    doc.update(fields)
    return parse_study(doc)


def keys(plan: Any) -> list[str]:
    return [c.key for c in plan.cells]


def test_full_factorial_cells_and_trials() -> None:
    plan = build_plan(
        study(factors={"noise.rate": [0.0, 0.1, 0.3], "optimizer.type": ["adam", "sgd"]}, seeds=2)
    )
    assert keys(plan) == [
        "noise.rate=0.0,optimizer.type=adam",
        "noise.rate=0.0,optimizer.type=sgd",
        "noise.rate=0.1,optimizer.type=adam",
        "noise.rate=0.1,optimizer.type=sgd",
        "noise.rate=0.3,optimizer.type=adam",
        "noise.rate=0.3,optimizer.type=sgd",
    ]
    assert len(plan.trials) == plan.n_trials() == 12 and (plan.n_combinations, plan.n_excluded) == (6, 0)
    assert [t.seed for t in plan.trials_of(keys(plan)[0])] == [0, 1]
    cell = plan.cell("noise.rate=0.1,optimizer.type=sgd")
    assert cell.factors == {"noise.rate": 0.1, "optimizer.type": "sgd"}
    assert cell.config["noise"]["rate"] == 0.1 and cell.config["optimizer"]["type"] == "sgd"
    with pytest.raises(KeyError, match="no cell"):
        plan.cell("nope")


def test_zip_groups_vary_together() -> None:
    plan = build_plan(
        study(
            factors={"noise.rate": [0.0, 0.3]},
            base={**BASE, "iel": {"type": "heat"}},
            zip=[{"iel.dt": [0.1, 0.2], "iel.steps": [20, 10]}],
        )
    )
    assert keys(plan) == [
        "noise.rate=0.0,iel.dt=0.1,iel.steps=20",
        "noise.rate=0.0,iel.dt=0.2,iel.steps=10",
        "noise.rate=0.3,iel.dt=0.1,iel.steps=20",
        "noise.rate=0.3,iel.dt=0.2,iel.steps=10",
    ]
    assert [(c.config["iel"]["dt"], c.config["iel"]["steps"]) for c in plan.cells[:2]] == [
        (0.1, 20),
        (0.2, 10),
    ]


def test_exclude_drops_matching_combinations() -> None:
    plan = build_plan(
        study(
            factors={"noise.rate": [0.0, 0.3], "iel.type": ["none", "heat", "tv"]},
            exclude=[{"iel.type": "none", "noise.rate": 0.0}, {"iel.type": "tv", "noise.rate": 0}],
        )
    )
    assert (len(plan.cells), plan.n_combinations, plan.n_excluded) == (4, 6, 2)
    assert "noise.rate=0.0,iel.type=none" not in keys(plan) and "noise.rate=0.0,iel.type=tv" not in keys(plan)
    with pytest.raises(SpecError, match="remove all 1 combinations") as info:
        build_plan(study(factors={"noise.rate": [0.1]}, exclude=[{"noise.rate": 0.1}]))
    assert info.value.path == "exclude"


def test_inapplicable_factors_are_dropped_and_cells_collapse() -> None:
    plan = build_plan(study(factors={"iel.type": ["none", "heat"], "iel.steps": [5, 20]}, seeds=3))
    assert keys(plan) == ["iel.type=none", "iel.type=heat,iel.steps=5", "iel.type=heat,iel.steps=20"]
    assert plan.cells[0].factors == {"iel.type": "none"} and plan.cells[0].config["iel"] == {"type": "none"}
    assert (plan.n_combinations, plan.n_excluded, len(plan.trials)) == (4, 0, 9)
    assert "4 combinations, 0 excluded, 1 collapsed" in plan.describe()


def test_identical_resolved_configs_collapse_into_the_first_cell() -> None:
    # steps 20 and dt 0.1 are the heat defaults: the first zip row equals the base configuration.
    plan = build_plan(
        study(
            base={**BASE, "iel": {"type": "heat"}},
            zip=[{"iel.steps": [20, 20, 5], "iel.dt": [0.1, 0.1, 0.1]}],
        )
    )
    assert keys(plan) == ["iel.steps=20,iel.dt=0.1", "iel.steps=5,iel.dt=0.1"]
    assert plan.n_combinations == 3


def test_no_factors_gives_one_base_cell() -> None:
    plan = build_plan(study(seeds=[4, 9]))
    assert keys(plan) == ["base"] and [t.seed for t in plan.trials] == [4, 9]
    assert plan.cells[0].config == TrialConfig.from_dict(BASE).to_dict()


def test_baseline_marks_every_matching_cell() -> None:
    plan = build_plan(
        study(
            factors={"noise.rate": [0.0, 0.3], "iel.type": ["none", "heat"], "iel.steps": [5, 9]},
            baseline={"iel.type": "none"},
        )
    )
    assert [c.key for c in plan.baseline_cells] == [
        "noise.rate=0.0,iel.type=none",
        "noise.rate=0.3,iel.type=none",
    ]
    # A baseline naming a factor that is dropped from its cell still matches (on the combinations).
    plan = build_plan(
        study(
            factors={"iel.type": ["none", "heat"], "iel.steps": [5, 9]},
            baseline={"iel.type": "none", "iel.steps": 5},
        )
    )
    assert [c.key for c in plan.baseline_cells] == ["iel.type=none"]
    assert not any(c.is_baseline for c in build_plan(study(factors={"noise.rate": [0.0, 0.3]})).cells)


def test_trial_configs_and_hashes() -> None:
    spec = study(factors={"noise.rate": [0.0, 0.3], "iel.type": ["none", "heat"]}, seeds=3)
    plan, again = build_plan(spec), build_plan(spec)
    assert [t.trial_hash for t in plan.trials] == [t.trial_hash for t in again.trials]
    assert len({t.trial_hash for t in plan.trials}) == len(plan.trials) == 12
    for t in plan.trials:
        cell = plan.cell(t.cell_key)
        expected = TrialConfig.from_dict(apply_overrides(BASE, {**cell.factors, "seed": t.seed}))
        assert t.config == expected and t.config.seed == t.seed
        assert t.trial_hash == config_hash(t.config.to_dict()) == t.config.hash
    # The same configuration in another study has the same identity (reuse across studies).
    other = build_plan(
        study(factors={"iel.type": ["heat"]}, base={**BASE, "noise": {"type": "block", "rate": 0.3}})
    )
    assert {t.trial_hash for t in other.trials} == {
        plan.trials_of("noise.rate=0.3,iel.type=heat")[0].trial_hash
    }


def test_factor_on_optimizer_type_keeps_the_base_learning_rate() -> None:
    plan = build_plan(
        study(base={**BASE, "optimizer": {"lr": 0.01}}, factors={"optimizer.type": ["adam", "sgd"]})
    )
    assert [c.config["optimizer"]["lr"] for c in plan.cells] == [0.01, 0.01]


def test_folder_dataset_root_is_checked_without_loading(tmp_path: Path) -> None:
    root = tmp_path / "wbc"
    base = {**BASE, "data": {"type": "folder", "root": str(root)}}
    with pytest.raises(SpecError, match="does not exist") as info:
        build_plan(study(base=base))
    assert info.value.path == "base.data.root"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    plan = build_plan(study(base=base))  # empty folders: the plan only resolves, loading happens in the trial
    assert plan.cells[0].config["data"]["root"] == str(root)
    with pytest.raises(SpecError) as info:
        build_plan(study(base=base, factors={"data.root": [str(root), str(tmp_path / "other")]}))
    assert info.value.path == "factors.data.root"


def test_building_a_plan_builds_no_model_or_dataset(monkeypatch: pytest.MonkeyPatch) -> None:
    from ielcore.data import DATASET_TYPES
    from ielcore.models import MODEL_TYPES

    def forbid(fn: Any) -> Any:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError(f"{fn.__qualname__} called while planning")

        return wrapper

    monkeypatch.setitem(DATASET_TYPES, "cells", forbid(DATASET_TYPES["cells"]))
    monkeypatch.setattr(MODEL_TYPES["unet"], "__init__", forbid(MODEL_TYPES["unet"].__init__))
    plan = build_plan(study(factors={"noise.rate": [0.0, 0.3], "model.width": [4, 8]}, seeds=2))
    assert len(plan.trials) == 8


SEARCH = {
    "n_trials": 6,
    "params": {
        "iel.dt": {"type": "float", "low": 0.01, "high": 0.25, "log": True},
        "optimizer.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
    },
}


def test_searched_plan_has_cells_but_no_trials() -> None:
    plan = build_plan(study(factors={"iel.type": ["none", "heat"]}, search=SEARCH, seeds=2))
    assert keys(plan) == ["iel.type=none", "iel.type=heat"] and plan.trials == ()
    assert plan.n_trials() == 12
    spec = plan.study.search
    assert spec is not None
    assert [p.path for p in cell_search_params(plan.cells[0], spec)] == ["optimizer.lr"]
    assert [p.path for p in cell_search_params(plan.cells[1], spec)] == ["iel.dt", "optimizer.lr"]
    text = plan.describe()
    assert (
        "search: 6 trials per cell, sampler tpe, pruner median, maximize dice; params iel.dt, optimizer.lr"
        in text
    )
    assert "total trials: 12" in text


def test_search_trial_config_applies_params_drops_inapplicable_and_validates() -> None:
    plan = build_plan(study(factors={"iel.type": ["none", "heat"]}, search=SEARCH))
    none, heat = plan.cells
    cfg = search_trial_config(heat, {"iel.dt": 0.25, "optimizer.lr": 0.005}, seed=3)
    assert (cfg.iel["dt"], cfg.optimizer["lr"], cfg.seed, cfg.iel["steps"]) == (0.25, 0.005, 3, 20)
    cfg = search_trial_config(none, {"iel.dt": 0.25, "optimizer.lr": 0.005}, seed=1)
    assert cfg.iel == {"type": "none"} and cfg.optimizer["lr"] == 0.005
    assert (
        search_trial_config(heat, {"iel.dt": 0.25}, 1).hash
        == search_trial_config(heat, {"iel.dt": 0.25}, 1).hash
    )
    with pytest.raises(SpecError, match="worst-case gain"):
        search_trial_config(heat, {"iel.dt": 0.3, "iel.steps": 50}, seed=0)


def test_search_bounds_checked_in_every_cell() -> None:
    bad = {"n_trials": 2, "params": {"iel.dt": {"type": "float", "low": 0.01, "high": 0.6}}}
    with pytest.raises(SpecError, match="in cell 'iel.type=heat'") as info:
        build_plan(study(factors={"iel.type": ["none", "heat"]}, search=bad))
    assert info.value.path == "search.params.iel.dt.high"


def test_cell_key_format() -> None:
    assert cell_key({}) == "base"
    assert cell_key({"iel.type": "heat", "noise.rate": 0.2}) == "iel.type=heat,noise.rate=0.2"
    assert cell_key({"a.b": True, "c.d": None, "e.f": [1, 2]}) == "a.b=true,c.d=null,e.f=[1,2]"
    # strings that would read as another type, or that contain separators, are quoted
    assert cell_key({"a.b": "1", "c.d": "x,y", "e.f": ""}) == 'a.b="1",c.d="x,y",e.f=""'


def test_describe_lists_study_factors_counts_and_cells() -> None:
    plan = build_plan(
        study(
            description="noise x IEL",
            factors={"noise.rate": [0.0, 0.3], "iel.type": ["none", "heat"], "iel.steps": [5, 20]},
            exclude=[{"iel.type": "none", "noise.rate": 0.0}],
            baseline={"iel.type": "none"},
            seeds=3,
        )
    )
    text = plan.describe()
    for part in [
        "study p: noise x IEL",
        "  noise.rate: [0.0, 0.3]",
        "  iel.type: [none, heat]",
        "exclude: iel.type=none,noise.rate=0.0",
        "baseline: iel.type=none",
        "cells: 5 (8 combinations, 2 excluded, 1 collapsed)",
        "seeds: 3 (0, 1, 2)",
        "search: none",
        "total trials: 15",
    ]:
        assert part in text, part
    rows = [line.split() for line in text.splitlines() if line.startswith("  ") and line.strip()[0].isdigit()]
    assert len(rows) == 5
    assert rows[2] == ["3", "*", "0.3", "none", "-", "noise.rate=0.3,iel.type=none"]
    assert rows[0] == ["1", "0.0", "heat", "5", "noise.rate=0.0,iel.type=heat,iel.steps=5"]
    assert sum(r[1] == "*" for r in rows) == 1


def test_cell_is_frozen() -> None:
    cell = build_plan(study()).cells[0]
    assert isinstance(cell, Cell)
    with pytest.raises(AttributeError):
        cell.key = "x"  # type: ignore[misc]
