"""Named arms: factor levels that are whole configuration sections with a name (issue #14 item 11)."""

from __future__ import annotations

from typing import Any

import pytest

from ielcore.errors import SpecError
from ielcore.spec import TrialConfig, apply_overrides
from ielcore.yamlio import parse_yaml_text
from orchestrator.plan import build_plan
from orchestrator.study import parse_study
from orchestrator.study_version import StudyChanged, canonical_spec, check_resubmit

ARMS = """
version: 1
name: arms
base: {data: {type: cells, num_images: 16, size: 32}, model: {width: 8, depth: 2}, epochs: 2}
arms:
  plain: {}
  heat_mild: {iel: {type: heat, dt: 0.05, steps: 10}}
  heat_authors: {iel: {type: heat, dt: 0.1, steps: 20}}
factors: {noise.rate: [0.0, 0.2]}
baseline: plain
seeds: 2
"""


def doc_of(**edits: Any) -> dict[str, Any]:
    doc = parse_yaml_text(ARMS)
    for key, value in edits.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return doc


def plan_error(**edits: Any) -> SpecError:
    with pytest.raises(SpecError) as info:
        build_plan(parse_study(doc_of(**edits)))
    return info.value


def test_arms_are_the_first_factor_and_name_the_cells() -> None:
    spec = parse_study(doc_of())
    assert spec.arm_names == ("plain", "heat_mild", "heat_authors")
    assert spec.arm_overrides("heat_mild") == {"iel.type": "heat", "iel.dt": 0.05, "iel.steps": 10}
    assert spec.factor_paths == ("arm", "noise.rate") and spec.baseline == {"arm": "plain"}
    assert spec.raw["baseline"] == {"arm": "plain"}  # what the results database stores: a mapping
    plan = build_plan(spec)
    assert [c.key for c in plan.cells] == [
        f"arm={a},noise.rate={r}" for a in ("plain", "heat_mild", "heat_authors") for r in ("0.0", "0.2")
    ]
    assert [c.key for c in plan.baseline_cells] == ["arm=plain,noise.rate=0.0", "arm=plain,noise.rate=0.2"]
    cell = plan.cell("arm=heat_authors,noise.rate=0.2")
    assert cell.factors == {"arm": "heat_authors", "noise.rate": 0.2}
    iel = cell.config["iel"]
    assert (iel["type"], iel["dt"], iel["steps"], cell.config["noise"]["rate"]) == ("heat", 0.1, 20, 0.2)
    assert plan.cell("arm=plain,noise.rate=0.0").config["iel"] == {"type": "none"}
    assert len(plan.trials) == 6 * 2


def test_an_arm_trial_has_the_hash_of_the_same_configuration_written_as_factors() -> None:
    """Arms are a way of writing: the zip form of the same study plans the same trials (reused by hash)."""
    plan = build_plan(parse_study(doc_of()))
    base = parse_yaml_text(ARMS)["base"]
    zipped = doc_of(
        arms=None,
        baseline={"iel.type": "none"},
        zip=[{"iel.type": ["none", "heat", "heat"], "iel.dt": [0.1, 0.05, 0.1], "iel.steps": [1, 10, 20]}],
    )
    by_zip = {t.trial_hash for t in build_plan(parse_study(zipped)).trials}
    assert {t.trial_hash for t in plan.trials} == by_zip
    t = plan.trials_of("arm=heat_mild,noise.rate=0.2")[1]
    expected = TrialConfig.from_dict(
        apply_overrides(
            base, {"iel.type": "heat", "iel.dt": 0.05, "iel.steps": 10, "noise.rate": 0.2, "seed": 1}
        )
    )
    assert t.config == expected and t.trial_hash == expected.identity


def test_baseline_as_a_mapping_and_exclude_name_arms() -> None:
    plan = build_plan(
        parse_study(
            doc_of(
                baseline={"arm": "plain", "noise.rate": 0.0},
                exclude=[{"arm": "heat_mild", "noise.rate": 0.2}],
            )
        )
    )
    assert [c.key for c in plan.baseline_cells] == ["arm=plain,noise.rate=0.0"]
    assert "arm=heat_mild,noise.rate=0.2" not in [c.key for c in plan.cells]
    assert plan.n_excluded == 1 and len(plan.cells) == 5


def test_a_factor_that_does_not_apply_to_an_arm_collapses() -> None:
    plan = build_plan(parse_study(doc_of(factors={"iel.max_gain": [100.0, 200.0]})))
    assert [c.key for c in plan.cells] == [
        "arm=plain",
        "arm=heat_mild,iel.max_gain=100.0",
        "arm=heat_mild,iel.max_gain=200.0",
        "arm=heat_authors,iel.max_gain=100.0",
        "arm=heat_authors,iel.max_gain=200.0",
    ]
    assert plan.n_combinations == 6
    assert "collapsed" in plan.describe() and "  arm plain: the base configuration" in plan.describe()
    assert "  arm heat_mild: iel.type=heat,iel.dt=0.05,iel.steps=10" in plan.describe()


def test_arms_combine_with_search() -> None:
    search = {
        "n_trials": 3,
        "params": {"optimizer.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}},
    }
    plan = build_plan(parse_study(doc_of(search=search, seeds=1)))
    assert len(plan.cells) == 6 and plan.n_trials() == 18


@pytest.mark.parametrize(
    ("edits", "path", "message"),
    [
        ({"arms": {"plain": {}, "heat mild": {}}}, "arms.heat mild", "invalid arm name 'heat mild'"),
        ({"arms": {"plain": {}, "heat.mild": {}}}, "arms.heat.mild", "no dots"),
        (
            {"arms": {"plain": {}, "h": {"iel": {"type": "heat", "dtt": 0.1}}}},
            "arms.h.iel.dtt",
            "unknown parameter 'dtt'",
        ),
        ({"arms": {"plain": {}, "h": {"iel": {"type": "hot"}}}}, "arms.h.iel.type", "unknown IEL type 'hot'"),
        ({"arms": {"plain": {}, "h": {"epochz": 3}}}, "arms.h.epochz", "unknown key 'epochz'"),
        ({"arms": {"plain": {}, "h": {"seed": 3}}}, "arms.h.seed", "varied by 'seeds:'"),
        ({"arms": {"plain": {}, "h": [1]}}, "arms.h", "expected a mapping"),
        ({"arms": {"plain": {}}, "baseline": None}, "arms", "at least two arms"),
        ({"factors": {"iel.dt": [0.1, 0.2]}}, "arms.heat_mild.iel.dt", r"also a factor \(factors\.iel\.dt\)"),
        ({"factors": {"arm": ["a", "b"]}}, "factors.arm", "the factor of the named arms"),
        (
            {"baseline": "hot"},
            "baseline",
            "'hot' is not an arm; the arms are: plain, heat_mild, heat_authors",
        ),
        ({"baseline": {"arm": "hot"}}, "baseline.arm", "'hot' is not a value of factor 'arm'"),
        ({"exclude": [{"arm": "hot"}]}, "exclude[0].arm", "'hot' is not a value of factor 'arm'"),
        ({"arms": None}, "baseline", "names an arm, but the study has no 'arms:'"),
    ],
)
def test_bad_arms_name_the_field(edits: dict[str, Any], path: str, message: str) -> None:
    with pytest.raises(SpecError, match=message) as info:
        parse_study(doc_of(**edits))
    assert info.value.path == path


def test_an_arm_and_a_searched_path_conflict() -> None:
    search = {"n_trials": 2, "params": {"iel.dt": {"type": "float", "low": 0.01, "high": 0.1}}}
    with pytest.raises(SpecError, match="also searched") as info:
        parse_study(doc_of(search=search))
    assert info.value.path == "arms.heat_mild.iel.dt"


def test_an_unstable_arm_is_refused_at_its_section() -> None:
    err = plan_error(arms={"plain": {}, "hot": {"iel": {"type": "heat", "dt": 0.3, "steps": 50}}})
    assert err.path == "arms.hot.iel" and "in cell 'arm=hot,noise.rate=0.0'" in err.message
    assert "worst-case gain" in err.message


def test_a_section_as_factor_values_points_to_arms() -> None:
    err = plan_error(
        arms=None, baseline=None, factors={"iel": [{"type": "none"}, {"type": "heat", "dt": 0.1}]}
    )
    assert err.path == "factors.iel" and "named arms, e.g. 'arms: {plain: {}, heat: {iel:" in err.message


def test_an_edited_arm_is_a_refused_change() -> None:
    old = canonical_spec(parse_study(doc_of()))
    assert old["arms"]["heat_mild"] == {"iel.type": "heat", "iel.dt": 0.05, "iel.steps": 10}
    arms = parse_yaml_text(ARMS)["arms"] | {"heat_mild": {"iel": {"type": "heat", "dt": 0.02, "steps": 10}}}
    with pytest.raises(StudyChanged, match=r"arms\.heat_mild\.iel\.dt: 0\.05 -> 0\.02"):
        check_resubmit(old, canonical_spec(parse_study(doc_of(arms=arms))))
