"""``iel submit STUDY --set KEY=VALUE``: overrides of a study document (issue #14 item 10)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ielcore.errors import SpecError
from ielcore.yamlio import parse_yaml_text
from orchestrator.plan import build_plan
from orchestrator.study import apply_overrides, load_study, parse_study
from orchestrator.study_version import ChangeKind, StudyChanged, canonical_spec, check_resubmit

STUDY = """
version: 1
name: over
base: {data: {type: cells, num_images: 16, size: 32}, model: {width: 8, depth: 2}, epochs: 3,
       iel: {type: heat, dt: 0.1, steps: 5}}
factors: {noise.rate: [0.0, 0.3], optimizer.lr: [0.001, 0.01]}
baseline: {noise.rate: 0.0}
seeds: 3
"""
SEARCH = {"params": {"optimizer.momentum": {"type": "float", "low": 0.5, "high": 0.9}}, "n_trials": 4}


@pytest.fixture
def study_file(tmp_path: Path) -> Path:
    path = tmp_path / "over.yaml"
    path.write_text(STUDY)
    return path


def test_set_changes_values_without_touching_the_file(study_file: Path) -> None:
    spec = load_study(study_file, ["base.epochs=2", "seeds=1"])
    assert spec.base["epochs"] == 2 and spec.seeds == (0,)
    assert spec.overrides == ("base.epochs=2", "seeds=1") and spec.raw["base"]["epochs"] == 2
    assert load_study(study_file).base["epochs"] == 3 and "epochs: 3" in study_file.read_text()


def test_values_are_yaml_scalars_and_flow_collections() -> None:
    doc = parse_yaml_text(STUDY)
    out = apply_overrides(
        doc,
        [
            "base.iel.dt=0.05",
            "base.iel.type=none",
            "base.optimizer.type=sgd",
            "timeout_s=null",
            "fuse=auto",
            "description=a b c",
            "exclude=[{noise.rate: 0.3, optimizer.lr: 0.01}]",
            "seeds={adaptive: {start: 3, max: 40}}",
        ],
    )
    assert out["base"]["iel"] == {"type": "none", "dt": 0.05, "steps": 5}
    assert out["base"]["optimizer"] == {"type": "sgd"} and out["timeout_s"] is None
    assert out["fuse"] == "auto" and out["description"] == "a b c"
    assert out["exclude"] == [{"noise.rate": 0.3, "optimizer.lr": 0.01}]
    assert out["seeds"] == {"adaptive": {"start": 3, "max": 40}}
    assert doc["base"]["iel"]["dt"] == 0.1  # the document itself is not changed


def test_a_factor_path_after_factors_is_one_key() -> None:
    out = apply_overrides(
        parse_yaml_text(STUDY), ["factors.noise.rate=[0.0,0.2]", "factors.iel.steps=[5, 10]"]
    )
    assert out["factors"] == {"noise.rate": [0.0, 0.2], "optimizer.lr": [0.001, 0.01], "iel.steps": [5, 10]}
    spec = parse_study(out, overrides=["factors.noise.rate=[0.0,0.2]"])
    assert spec.factors[0] == ("noise.rate", (0.0, 0.2))


def test_search_params_take_a_whole_parameter_or_one_field_of_an_existing_one() -> None:
    doc = {**parse_yaml_text(STUDY), "search": SEARCH}
    out = apply_overrides(doc, ["search.params.optimizer.momentum.high=0.99", "search.n_trials=8"])
    assert out["search"]["params"] == {"optimizer.momentum": {"type": "float", "low": 0.5, "high": 0.99}}
    assert out["search"]["n_trials"] == 8
    out = apply_overrides(doc, ["search.params.iel.type={type: categorical, choices: [none, heat]}"])
    assert out["search"]["params"]["iel.type"] == {"type": "categorical", "choices": ["none", "heat"]}
    assert parse_study(out).search is not None


def test_arms_take_a_name_then_nested_keys() -> None:
    doc = {**parse_yaml_text(STUDY), "arms": {"plain": {}, "heat": {"iel": {"type": "heat", "dt": 0.1}}}}
    out = apply_overrides(doc, ["arms.heat.iel.dt=0.02", "arms.tv={iel: {type: tv}}", "baseline=plain"])
    assert out["arms"] == {
        "plain": {},
        "heat": {"iel": {"type": "heat", "dt": 0.02}},
        "tv": {"iel": {"type": "tv"}},
    }


def test_later_overrides_win() -> None:
    out = apply_overrides(parse_yaml_text(STUDY), ["base.epochs=2", "base.epochs=7"])
    assert out["base"]["epochs"] == 7


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("base.epochs", r"malformed override 'base.epochs': write KEY=VALUE"),
        ("=3", r"malformed key '' in override '=3'"),
        ("base..epochs=3", r"malformed key 'base..epochs'"),
        ("base.epochs=", r"override 'base.epochs=' has no value; write a value after '='"),
        (
            "epochs=2",
            r"unknown top-level key 'epochs'; a key starts with one of: version, name, .*base\.epochs=2",
        ),
        (
            "seeds.adaptive.max=40",
            r"'seeds' is 3, not a mapping, so it has no key 'adaptive'; set 'seeds' whole",
        ),
        ("base.epochs=[1, 2", r"the value of override 'base.epochs=\[1, 2' is not valid YAML"),
        ("base.epochs=!!python/object:os.system x", r"tags such as !!python/object are not allowed"),
    ],
)
def test_bad_overrides_name_the_override_and_the_fix(override: str, expected: str) -> None:
    with pytest.raises(SpecError, match=expected) as info:
        apply_overrides(parse_yaml_text(STUDY), [override])
    assert info.value.path == "--set"


def test_an_override_that_makes_the_study_invalid_is_reported_at_its_field(study_file: Path) -> None:
    with pytest.raises(SpecError) as info:
        load_study(study_file, ["base.epochs=-1"])
    assert info.value.path == "base.epochs" and info.value.source == str(study_file)
    with pytest.raises(SpecError, match="field '--set'.*unknown top-level key 'nmae'") as info:
        load_study(study_file, ["nmae=x"])
    assert info.value.source == str(study_file)


def test_overrides_are_shown_in_the_plan_and_part_of_the_version(study_file: Path) -> None:
    spec = load_study(study_file, ["base.epochs=2", "seeds=1"])
    text = build_plan(spec).describe()
    assert text.splitlines()[1] == "overrides: base.epochs=2, seeds=1"
    assert "overrides" not in build_plan(load_study(study_file)).describe()
    stored = canonical_spec(load_study(study_file))
    with pytest.raises(StudyChanged, match=r"base\.epochs: 3 -> 2"):
        check_resubmit(stored, canonical_spec(spec))
    same = load_study(study_file, ["max_concurrent=4"])
    assert check_resubmit(stored, canonical_spec(same)).kind is ChangeKind.COMPATIBLE
