"""The study specification: parsing, defaults, typed fields, search spaces and safe YAML loading."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from ielcore.errors import SpecError
from ielcore.yamlio import load_yaml_file, parse_yaml_text
from orchestrator.study import (
    METRICS,
    AdaptiveSeeds,
    DecideSpec,
    Method,
    Objective,
    Resources,
    Score,
    SearchParam,
    check_plain,
    load_study,
    parse_study,
    same_value,
)

BASE = {
    "data": {"type": "cells", "num_images": 16, "size": 32},
    "model": {"type": "unet", "width": 8, "depth": 2},
    "epochs": 2,
    "batch_size": 4,
}

FULL_YAML = """
version: 1
name: quickstart
description: "noise x IEL"
base:
  data: {type: cells, num_images: 16, size: 32}
  model: {type: unet, width: 8, depth: 2}
  noise: {type: block}
  epochs: 2
  batch_size: 4
factors:
  noise.rate: [0.0, 0.3]
  iel.type: [none, heat]
zip:
  - {iel.dt: [0.1, 0.2], iel.steps: [20, 10]}
exclude:
  - {iel.type: none, noise.rate: 0.0}
baseline: {iel.type: none}
seeds: 3
search:
  n_trials: 8
  sampler: tpe
  pruner: median
  seed: 7
  objectives: [{metric: dice, direction: maximize}]
  params:
    optimizer.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
    optimizer.type: {type: categorical, choices: [adam, sgd]}
    label_smoothing.steps: {type: int, low: 0, high: 20, step: 5}
resources: {cpus: 2, gpus: 0.5, gpu_memory_fraction: 0.4}
max_concurrent: 2
retries: 3
timeout_s: 600
fuse: off
"""


def doc(**overrides: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"version": 1, "name": "t", "base": copy.deepcopy(BASE)}
    d.update(overrides)
    return d


def test_full_document_parses_into_typed_frozen_fields(tmp_path: Path) -> None:
    path = tmp_path / "quickstart.yaml"
    path.write_text(FULL_YAML)
    s = load_study(path)
    assert s.name == "quickstart" and s.description == "noise x IEL" and s.source == str(path)
    assert s.factors == (("noise.rate", (0.0, 0.3)), ("iel.type", ("none", "heat")))
    assert s.zip_groups == ((("iel.dt", (0.1, 0.2)), ("iel.steps", (20, 10))),)
    assert s.factor_paths == ("noise.rate", "iel.type", "iel.dt", "iel.steps")
    assert (
        s.factor_origin("iel.dt") == "zip[0].iel.dt" and s.factor_origin("noise.rate") == "factors.noise.rate"
    )
    assert s.exclude == ({"iel.type": "none", "noise.rate": 0.0},)
    assert s.baseline == {"iel.type": "none"}
    assert s.seeds == (0, 1, 2)
    assert s.resources == Resources(cpus=2.0, gpus=0.5, gpu_memory_fraction=0.4)
    assert (s.max_concurrent, s.retries, s.timeout_s, s.fuse) == (2, 3, 600.0, "off")
    q = s.search
    assert q is not None
    assert (q.n_trials, q.sampler, q.pruner, q.seed) == (8, "tpe", "median", 7)
    assert q.objectives == (Objective("dice", "maximize"),)
    assert q.params == (
        SearchParam("optimizer.lr", "float", 1e-4, 1e-2, log=True),
        SearchParam("optimizer.type", "categorical", choices=("adam", "sgd")),
        SearchParam("label_smoothing.steps", "int", 0, 20, step=5),
    )
    assert s.raw["base"]["noise"] == {"type": "block"} and s.raw["fuse"] is False  # the document as written
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.name = "other"  # type: ignore[misc]


def test_defaults_of_a_minimal_study() -> None:
    s = parse_study({"version": 1, "name": "minimal"})
    assert s.base == {} and s.factors == () and s.zip_groups == () and s.exclude == ()
    assert s.baseline == {} and s.seeds == (0,) and s.search is None
    assert s.resources == Resources(1.0, 0.0, None)
    assert (s.max_concurrent, s.retries, s.timeout_s, s.fuse, s.description) == (1, 1, None, "off", "")


def test_parse_copies_the_document() -> None:
    d = doc(factors={"noise.rate": [0.0, 0.1]})
    s = parse_study(d)
    d["base"]["epochs"] = 99
    d["factors"]["noise.rate"].append(0.5)
    assert s.base["epochs"] == 2 and s.raw["base"]["epochs"] == 2
    assert s.factors == (("noise.rate", (0.0, 0.1)),) and s.raw["factors"]["noise.rate"] == [0.0, 0.1]


@pytest.mark.parametrize(
    ("text", "mode"), [("off", "off"), ("on", "auto"), ("auto", "auto"), ("false", "off")]
)
def test_fuse_accepts_yaml_booleans(text: str, mode: str) -> None:
    assert parse_study(parse_yaml_text(f"version: 1\nname: f\nfuse: {text}\n")).fuse == mode


def test_seed_list_keeps_order() -> None:
    assert parse_study(doc(seeds=[7, 3, 11])).seeds == (7, 3, 11)


@pytest.mark.parametrize("metric", sorted(METRICS))
def test_objective_direction_defaults_by_metric(metric: str) -> None:
    s = parse_study(
        doc(
            search={
                "n_trials": 2,
                "objectives": [metric],
                "params": {"optimizer.lr": {"type": "float", "low": 1e-4, "high": 1e-2}},
            }
        )
    )
    assert s.search is not None and s.search.objectives == (Objective(metric, METRICS[metric]),)
    assert METRICS[metric] in ("maximize", "minimize")


def test_multi_objective_defaults_to_no_pruner_and_rejects_cmaes() -> None:
    params = {"optimizer.lr": {"type": "float", "low": 1e-4, "high": 1e-2}}
    s = parse_study(doc(search={"n_trials": 2, "objectives": ["dice", "val_loss"], "params": params}))
    assert s.search is not None and s.search.pruner == "none" and s.search.multi_objective
    assert s.search.directions == ("maximize", "minimize")
    with pytest.raises(SpecError, match="one objective only") as info:
        parse_study(
            doc(search={"n_trials": 2, "sampler": "cmaes", "objectives": ["dice", "miou"], "params": params})
        )
    assert info.value.path == "search.sampler"


def test_grid_sampler_space_and_default_trial_count() -> None:
    params = {
        "optimizer.lr": {"type": "float", "low": 0.1, "high": 0.3, "step": 0.1},
        "label_smoothing.steps": {"type": "int", "low": 1, "high": 5, "step": 2},
        "optimizer.type": {"type": "categorical", "choices": ["adam", "sgd"]},
    }
    s = parse_study(doc(search={"sampler": "grid", "params": params}))
    assert s.search is not None
    assert s.search.grid_space() == {
        "optimizer.lr": [0.1, 0.2, 0.3],  # exact decimals, no 0.30000000000000004
        "label_smoothing.steps": [1, 3, 5],
        "optimizer.type": ["adam", "sgd"],
    }
    assert s.search.n_trials == 18
    assert parse_study(doc(search={"sampler": "grid", "n_trials": 5, "params": params})).search.n_trials == 5  # type: ignore[union-attr]
    with pytest.raises(SpecError, match="only 18 points") as info:
        parse_study(doc(search={"sampler": "grid", "n_trials": 19, "params": params}))
    assert info.value.path == "search.n_trials"


def test_step_must_divide_the_range() -> None:
    with pytest.raises(SpecError, match="multiple of step") as info:
        parse_study(
            doc(
                search={
                    "n_trials": 3,
                    "params": {"label_smoothing.steps": {"type": "int", "low": 0, "high": 10, "step": 3}},
                }
            )
        )
    assert info.value.path == "search.params.label_smoothing.steps.high"


def test_search_without_params_is_an_error() -> None:
    with pytest.raises(SpecError, match="at least one parameter"):
        parse_study(doc(search={"n_trials": 3, "params": {}}))


def test_parse_study_rejects_a_non_mapping_and_locates_source() -> None:
    with pytest.raises(SpecError, match="must be a mapping"):
        parse_study([1, 2])
    with pytest.raises(SpecError) as info:
        parse_study(doc(retries=-2), source="mine.yaml")
    assert (info.value.source, info.value.path) == ("mine.yaml", "retries")
    assert str(info.value).startswith("mine.yaml: field 'retries': ")


def test_check_plain_accepts_json_values_and_integer_keys() -> None:
    check_plain({"a": [1, 2.5, None, True, "x", {"b": {0: 0, 255: 1}}]})
    for bad, path in [
        ({"a": float("nan")}, "a"),
        ({"a": [1, float("inf")]}, "a[1]"),
        ({"a": {True: 1}}, "a.True"),
        ({"a": {None: 1}}, "a.None"),
        ({"a": b"x"}, "a"),
        ({"a": 2**70}, "a"),
    ]:
        with pytest.raises(SpecError) as info:
            check_plain(bad)
        assert info.value.path == path


def test_structural_keys_must_be_strings() -> None:
    with pytest.raises(SpecError, match="keys must be strings") as info:
        parse_study(doc(base={"optimizer": {1: 0.1}}))
    assert info.value.path == "base.optimizer.1"


def test_same_value_keeps_booleans_apart() -> None:
    assert same_value(0, 0.0) and same_value([1, {"a": 2}], [1.0, {"a": 2}])
    assert not same_value(True, 1) and not same_value("1", 1) and not same_value(None, 0)


# -- safe YAML loading -----------------------------------------------------------------------------------


def test_missing_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(SpecError, match="file not found") as info:
        load_study(path)
    assert info.value.source == str(path) and "nope.yaml" in str(info.value)


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="is a directory"):
        load_yaml_file(tmp_path)


def test_size_limit_is_a_parameter(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("version: 1\nname: s\n")
    assert load_yaml_file(path, max_bytes=19) == {"version": 1, "name": "s"}
    with pytest.raises(SpecError, match="19 bytes, over the limit of 18 bytes"):
        load_yaml_file(path, max_bytes=18)


def test_duplicate_keys_rejected_at_any_depth_but_merge_keys_allowed() -> None:
    with pytest.raises(SpecError, match=r"duplicate key 'b' \(line 4"):
        parse_yaml_text("a:\n  x:\n    b: 1\n    b: 2\n")
    assert parse_yaml_text("d: &d {x: 1, y: 2}\ne:\n  <<: *d\n  y: 3\n") == {
        "d": {"x": 1, "y": 2},
        "e": {"x": 1, "y": 3},
    }


def test_yaml_values_stay_json_compatible(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes("\ufeffversion: 1\nname: café\nwhen: 2024-01-02\n".encode())
    assert load_yaml_file(path) == {"version": 1, "name": "café", "when": "2024-01-02"}
    for tag in ("!!set {a}", "!!omap [a: 1]", "!!python/name:os.system", "!custom 1"):
        with pytest.raises(SpecError, match="not allowed"):
            parse_yaml_text(f"x: {tag}\n")


# -- adaptive seeds and decide ----------------------------------------------------------------------------

ARMS = {"factors": {"iel.type": ["none", "heat"]}, "baseline": {"iel.type": "none"}}


def test_adaptive_seeds_and_decide_parse_into_frozen_dataclasses() -> None:
    s = parse_study(
        doc(
            **ARMS,
            seeds={"adaptive": {"start": 3, "max": 30, "batch": 2}},
            decide={"metric": "val_loss", "score": "mean_last_k", "k": 4, "margin": 0.02, "alpha": 0.1},
        )
    )
    assert s.adaptive == AdaptiveSeeds(start=3, max=30, batch=2)
    assert s.seeds == (0, 1, 2) and s.adaptive.initial_seeds == (0, 1, 2)
    assert (
        s.adaptive.next_seeds(3) == (3, 4)
        and s.adaptive.next_seeds(29) == (29,)
        and s.adaptive.next_seeds(30) == ()
    )
    assert s.decide == DecideSpec(
        metric="val_loss", score=Score.MEAN_LAST_K, k=4, margin=0.02, alpha=0.1, method=Method.T
    )
    assert s.decide.direction == "minimize" and s.decide.info.bounded is False
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.decide.alpha = 0.5  # type: ignore[misc]


def test_decide_defaults_and_fixed_seeds() -> None:
    s = parse_study(doc(**ARMS, seeds=[4, 7], decide={"metric": "dice_c2", "method": "bounded"}))
    assert s.seeds == (4, 7) and s.adaptive is None
    assert s.decide == DecideSpec(
        metric="dice_c2", score=Score.LAST, k=5, margin=0.0, alpha=0.05, method=Method.BOUNDED
    )
    assert s.decide.direction == "maximize" and s.decide.info.bounded
    assert parse_study(doc(seeds=4)).seeds == (0, 1, 2, 3) and parse_study(doc()).decide is None
    # batch defaults to 1; alpha 0.5 is the top of its range
    s = parse_study(
        doc(**ARMS, seeds={"adaptive": {"start": 2, "max": 2}}, decide={"metric": "dice", "alpha": 0.5})
    )
    assert s.adaptive == AdaptiveSeeds(2, 2, 1) and s.decide is not None and s.decide.alpha == 0.5


def test_adaptive_start_needs_two_seeds() -> None:
    with pytest.raises(SpecError, match="2..10000") as info:
        parse_study(doc(**ARMS, seeds={"adaptive": {"start": 1, "max": 9}}, decide={"metric": "dice"}))
    assert info.value.path == "seeds.adaptive.start"


def test_objective_directions_come_from_the_metric_registry() -> None:
    from ielcore.metric_info import METRIC_INFO

    assert {name: info.direction for name, info in METRIC_INFO.items()} == METRICS
    s = parse_study(
        doc(
            search={
                "n_trials": 2,
                "objectives": ["dice_c1", "components"],
                "pruner": "none",
                "params": {"optimizer.lr": {"type": "float", "low": 0.001, "high": 0.01}},
            }
        )
    )
    assert s.search is not None
    assert [(o.metric, o.direction) for o in s.search.objectives] == [
        ("dice_c1", "maximize"),
        ("components", "minimize"),
    ]


# -- YAML limits, shared with `iel train` --------------------------------------------------------------------

BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
    for i in range(8)
)


def test_an_alias_bomb_is_refused_by_the_one_yaml_loader(tmp_path: Path) -> None:
    """Nine levels of ten aliases: 10**9 values once expanded, under 1 kB on disk (issue 12, item 18)."""
    from ielcore.spec import load_config_file

    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB + "epochs: 2\n", encoding="utf-8")
    assert path.stat().st_size < 1000
    for load in (load_yaml_file, load_config_file):
        with pytest.raises(SpecError, match="too large or too deeply nested") as info:
            load(path)
        assert info.value.source == str(path) and "aliases" in str(info.value)
    # a few aliases are fine
    path.write_text("base: &b {epochs: 2}\nother: *b\n", encoding="utf-8")
    assert load_config_file(str(path)) == {"base": {"epochs": 2}, "other": {"epochs": 2}}


def test_a_trial_configuration_file_has_the_study_files_limits(tmp_path: Path) -> None:
    from ielcore.spec import load_config_file

    path = tmp_path / "big.yaml"
    path.write_bytes(b"epochs: 2\n# " + b"x" * 2_000_000 + b"\n")
    with pytest.raises(SpecError, match="limit of 1,000,000 bytes for a trial configuration"):
        load_config_file(str(path))
    path.write_text("epochs: 2\nepochs: 3\n", encoding="utf-8")
    with pytest.raises(SpecError, match="duplicate key 'epochs'"):
        load_config_file(str(path))
    path.write_text("kind: !!python/object/apply:os.system [echo hi]\n", encoding="utf-8")
    with pytest.raises(SpecError, match="not allowed"):
        load_config_file(str(path))
