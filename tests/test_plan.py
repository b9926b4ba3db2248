"""The plan: cells (factorial, zip, exclude, collapse), baseline, trial hashes, search configs, describe()."""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import pytest

from ielcore.codeprint import code_fingerprint, trial_identity
from ielcore.errors import SpecError
from ielcore.spec import TrialConfig, apply_overrides
from orchestrator.plan import (
    Cell,
    build_plan,
    cell_key,
    cell_search_params,
    search_trial_config,
    trials_for_seeds,
)
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
        assert t.trial_hash == t.config.identity == trial_identity(t.config.to_dict(), code_fingerprint())
        assert t.trial_hash != trial_identity(t.config.to_dict(), "other code")  # the code is in it
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


def test_building_a_plan_builds_only_a_probe_dataset_and_a_meta_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The plan runs the builders' checks on a one-image, at most 64x64 dataset and a model on the meta device."""
    import torch

    from ielcore.data import DATASET_TYPES
    from ielcore.models import MODEL_TYPES

    data_calls: list[dict[str, Any]] = []
    model_devices: list[str] = []
    make_cells, unet_init = DATASET_TYPES["cells"], MODEL_TYPES["unet"].__init__

    @functools.wraps(make_cells)
    def cells(**kwargs: Any) -> Any:
        data_calls.append(kwargs)
        return make_cells(**kwargs)

    @functools.wraps(unet_init)
    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        model_devices.append(str(torch.empty(0).device))
        unet_init(self, *args, **kwargs)

    monkeypatch.setitem(DATASET_TYPES, "cells", cells)
    monkeypatch.setattr(MODEL_TYPES["unet"], "__init__", init)
    plan = build_plan(study(factors={"noise.rate": [0.0, 0.3], "model.width": [4, 8]}, seeds=2))
    assert len(plan.trials) == 8
    assert data_calls and all(c["num_images"] == 1 and c["size"] <= 64 for c in data_calls)
    assert model_devices == ["meta", "meta"]  # once per distinct data and model setting


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


# -- adaptive seeds ----------------------------------------------------------------------------------------

ADAPTIVE = {
    "factors": {"iel.type": ["none", "heat"]},
    "baseline": {"iel.type": "none"},
    "seeds": {"adaptive": {"start": 3, "max": 8, "batch": 2}},
    "decide": {"metric": "dice", "score": "best", "margin": 0.01, "alpha": 0.05, "method": "bounded"},
}


def test_adaptive_plan_has_the_start_seeds_and_adds_seeds_with_the_same_identity() -> None:
    plan = build_plan(study(**ADAPTIVE))
    assert [(t.cell_key, t.seed) for t in plan.trials] == [(k, s) for k in keys(plan) for s in (0, 1, 2)]
    assert plan.n_trials() == 6
    heat = "iel.type=heat"
    assert plan.study.adaptive is not None
    more = plan.trials_for_seeds(heat, plan.study.adaptive.next_seeds(3))
    assert [t.seed for t in more] == [3, 4] and all(
        t.cell_key == heat and t.config.seed == t.seed for t in more
    )
    # a seed added later is the trial a fixed design with that seed would have planned
    fixed = build_plan(study(**{**ADAPTIVE, "seeds": 5, "decide": None}))
    expected = {(t.cell_key, t.seed): t for t in fixed.trials}
    for t in (*plan.trials, *more):
        assert t == expected[(t.cell_key, t.seed)]
        assert t.trial_hash == t.config.identity
    assert trials_for_seeds(plan.cell(heat), []) == ()
    with pytest.raises(ValueError, match="seed"):
        trials_for_seeds(plan.cell(heat), [-1])
    with pytest.raises(KeyError, match="no cell"):
        plan.trials_for_seeds("iel.type=tv", [3])


def test_describe_shows_the_adaptive_design_and_decide_settings() -> None:
    text = build_plan(study(**ADAPTIVE)).describe()
    for part in [
        "seeds: adaptive: every cell starts with 3 (0..2); an undecided comparison gets 2 more at a time, up to 8",
        "decide: maximize dice (trial score: best epoch); method bounded, alpha 0.05 (family-wise), "
        "equivalence margin 0.01",
        "total trials: 6 to start, at most 16 (2 cells x 8 seeds)",
    ]:
        assert part in text, part
    fixed = build_plan(
        study(**{**ADAPTIVE, "seeds": 2, "decide": {"metric": "val_loss", "score": "mean_last_k"}})
    )
    assert "decide: minimize val_loss (trial score: mean of the last 5 epochs); method t" in fixed.describe()


def test_adaptive_max_counts_toward_the_trial_limit() -> None:
    factors = {"iel.type": ["none", "heat"], "noise.rate": [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]}
    with pytest.raises(SpecError, match="12 cells x 10000 seeds") as info:
        build_plan(
            study(**{**ADAPTIVE, "factors": factors, "seeds": {"adaptive": {"start": 3, "max": 10_000}}})
        )
    assert info.value.path == "seeds.adaptive.max"


# -- a folder dataset's files are part of a trial's identity -------------------------------------------------


def _folder(root: Path, values: tuple[int, ...] = (0, 1)) -> Path:
    import numpy as np
    from PIL import Image

    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i, v in enumerate(values):
        Image.fromarray(np.full((16, 16, 3), 40 * i, dtype=np.uint8)).save(root / "images" / f"c{i}.png")
        Image.fromarray(np.full((16, 16), v, dtype=np.uint8)).save(root / "masks" / f"c{i}.png")
    return root


def test_a_folder_datasets_files_are_part_of_the_trial_hash(tmp_path: Path) -> None:
    from ielcore.data.folder import folder_fingerprint

    root = _folder(tmp_path / "a")
    base = {**BASE, "data": {"type": "folder", "root": str(root), "num_classes": 2}}
    first = build_plan(study(base=base))
    fingerprint = first.cells[0].config["data"]["fingerprint"]
    assert fingerprint == folder_fingerprint(str(root)) and len(fingerprint) == 64
    assert first.trials[0].config.data["fingerprint"] == fingerprint
    assert build_plan(study(base=base)).trials == first.trials  # same files: same trials

    # edited in place: one mask changes, same root string, same size
    import numpy as np
    from PIL import Image

    Image.fromarray(np.ones((16, 16), dtype=np.uint8)).save(root / "masks" / "c0.png")
    edited = build_plan(study(base=base))
    assert edited.trials[0].trial_hash != first.trials[0].trial_hash
    # another folder with the same root string (moved away, another one put there)
    root.rename(tmp_path / "a_old")
    _folder(root, values=(1, 0))
    other = build_plan(study(base=base))
    assert len({t.trial_hash for t in (first.trials[0], edited.trials[0], other.trials[0])}) == 3
    # renaming a file changes the identity too; a file the loader ignores does not
    (root / "images" / "notes.txt").write_text("ignored")
    assert build_plan(study(base=base)).trials[0].trial_hash == other.trials[0].trial_hash
    for sub in ("images", "masks"):
        (root / sub / "c1.png").rename(root / sub / "c9.png")
    assert build_plan(study(base=base)).trials[0].trial_hash != other.trials[0].trial_hash


def test_a_given_fingerprint_must_match_the_files(tmp_path: Path) -> None:
    root = _folder(tmp_path / "a")
    base = {**BASE, "data": {"type": "folder", "root": str(root), "num_classes": 2, "fingerprint": "0" * 64}}
    with pytest.raises(SpecError, match="do not match the given fingerprint") as info:
        build_plan(study(base=base))
    assert info.value.path == "base.data.fingerprint"
