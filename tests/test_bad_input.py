"""Every kind of bad study file gives one SpecError naming the file, the field path and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from ielcore.errors import SpecError
from orchestrator.plan import build_plan
from orchestrator.study import load_study

HEAD = "version: 1\nname: bad\n"
_BASE = "data: {type: cells, num_images: 16, size: 32}, model: {type: unet, width: 8, depth: 2}, epochs: 2, batch_size: 4"
SEARCH = "search: {n_trials: 4, params: {optimizer.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}}}"


def study(*lines: str, base: str = "") -> str:
    """A study document: the quickstart-like base (plus ``base`` items) and the given top-level lines."""
    return HEAD + f"base: {{{_BASE}{', ' + base if base else ''}}}\n" + "".join(line + "\n" for line in lines)


def search(params: str, **extra: str) -> str:
    items = "".join(f", {k}: {v}" for k, v in extra.items())
    return f"search: {{n_trials: 4{items}, params: {{{params}}}}}"


FACTORS = "factors: {noise.rate: [0.0, 0.3], iel.type: [none, heat]}"
DECIDE = "decide: {metric: dice, margin: 0.01, alpha: 0.05}"

CASES: list[tuple[str, str | bytes, list[str]]] = [
    # -- the file itself
    (
        "yaml_syntax",
        HEAD + "factors: {noise.rate: [0.0, 0.3\n",
        ["invalid YAML at line", "column", "fix the syntax"],
    ),
    ("not_a_mapping", "- version: 1\n- name: x\n", ["must be a YAML mapping", "list"]),
    ("empty_document", "# nothing here\n", ["empty", "version: 1"]),
    (
        "python_tag",
        HEAD + "description: !!python/object/apply:os.system [echo hi]\n",
        ["tag", "not allowed", "plain"],
    ),
    ("binary_tag", HEAD + "description: !!binary aGk=\n", ["!!binary", "not allowed"]),
    ("non_utf8", b"version: 1\nname: caf\xe9\n", ["not UTF-8", "offset", "save it with UTF-8"]),
    (
        "huge_file",
        b"version: 1\nname: big\n# " + b"x" * 3_000_000 + b"\n",
        ["3,000,0", "limit of 1,000,000 bytes"],
    ),
    (
        "duplicate_key",
        study("factors:", "  noise.rate: [0.0, 0.3]", "  noise.rate: [0.1]"),
        ["duplicate key 'noise.rate'", "line", "only once"],
    ),
    # -- top level
    ("unknown_top_key", study("colour: red"), ["field 'colour'", "unknown key", "valid keys are", "factors"]),
    (
        "missing_version",
        "name: x\nbase: {}\n",
        ["field 'version'", "missing required key", "add 'version: 1'"],
    ),
    ("wrong_version", study().replace("version: 1", "version: 2"), ["field 'version'", "write 'version: 1'"]),
    ("bad_name", study().replace("name: bad", "name: my study"), ["field 'name'", "A-Z a-z 0-9 _ . -"]),
    ("factors_not_mapping", study("factors: [noise.rate]"), ["field 'factors'", "expected a mapping"]),
    ("max_concurrent_type", study("max_concurrent: two"), ["field 'max_concurrent'", "expected an integer"]),
    ("max_concurrent_zero", study("max_concurrent: 0"), ["field 'max_concurrent'", "1..100000"]),
    ("retries_negative", study("retries: -1"), ["field 'retries'", "0..1000"]),
    ("timeout_zero", study("timeout_s: 0"), ["field 'timeout_s'", "> 0", "null for no timeout"]),
    ("fuse_value", study("fuse: maybe"), ["field 'fuse'", "valid values are: auto, off"]),
    # -- base (a trial configuration)
    ("unknown_base_key", study(base="epoch: 3"), ["field 'base.epoch'", "valid keys are", "epochs"]),
    (
        "unknown_base_iel_key",
        study(base="iel: {type: heat, stepz: 3}"),
        ["field 'base.iel.stepz'", "valid parameters are", "steps"],
    ),
    (
        "wrong_type_epochs",
        study().replace("epochs: 2", "epochs: two"),
        ["field 'base.epochs'", "expected an integer"],
    ),
    (
        "unknown_noise",
        study(base="noise: {type: salt, rate: 0.1}"),
        ["field 'base.noise.type'", "'salt'", "valid noise models are", "block"],
    ),
    ("unknown_model", study().replace("type: unet", "type: resnet"), ["field 'base.model.type'", "unet"]),
    ("unknown_dataset", study().replace("type: cells", "type: mnist"), ["field 'base.data.type'", "cells, "]),
    ("rate_above_one", study(base="noise: {type: block, rate: 1.5}"), ["field 'base.noise.rate'", "[0, 1]"]),
    (
        "unstable_label_smoothing",
        study(base="label_smoothing: {steps: 10, dt: 1.5}"),
        ["field 'base.label_smoothing.dt'", "unstable", "dt <= 1"],
    ),
    (
        "iel_gain_over_limit",
        study(base="iel: {type: heat, dt: 0.5, steps: 50}"),
        ["field 'base.iel.max_gain'", "gain", "fewer steps or a smaller dt"],
    ),
    (
        "negative_steps",
        study(base="iel: {type: heat, steps: -3}"),
        ["field 'base.iel.steps'", "integer >= 1"],
    ),
    (
        "folder_root_missing",
        study().replace("{type: cells, num_images: 16, size: 32}", "{type: folder, root: no/such/dir}"),
        ["field 'base.data.root'", "does not exist", "images/", "fix the path"],
    ),
    # -- factors, zip, exclude, baseline
    (
        "empty_factor_list",
        study("factors: {noise.rate: []}"),
        ["field 'factors.noise.rate'", "non-empty list"],
    ),
    (
        "factor_duplicate_value",
        study("factors: {noise.rate: [0.1, 0.1]}"),
        ["field 'factors.noise.rate'", "listed twice"],
    ),
    (
        "unknown_iel_type",
        study("factors: {iel.type: [none, heet]}"),
        ["field 'factors.iel.type'", "'heet'", "valid IEL types are", "heat"],
    ),
    (
        "unknown_factor_path",
        study("factors: {iel.stepz: [1, 2]}", base="iel: {type: heat}"),
        ["field 'factors.iel.stepz'", "valid keys are", "steps"],
    ),
    (
        "unknown_section",
        study("factors: {optimiser.lr: [0.1]}"),
        ["field 'factors.optimiser.lr'", "optimizer"],
    ),
    ("seed_as_factor", study("factors: {seed: [0, 1]}"), ["field 'factors.seed'", "seeds:"]),
    (
        "negative_rate",
        study("factors: {noise.rate: [0.0, -0.1]}", base="noise: {type: block}"),
        ["field 'factors.noise.rate'", ">= 0.0", "-0.1"],
    ),
    (
        "zero_steps",
        study("factors: {iel.steps: [0, 5]}", base="iel: {type: heat}"),
        ["field 'factors.iel.steps'", "integer >= 1", "steps=0"],
    ),
    (
        "factor_gain_over_limit",
        study("factors: {iel.steps: [5, 50]}", base="iel: {type: heat, dt: 0.2}"),
        ["field 'factors.iel.steps'", "iel.steps=50", "fewer steps"],
    ),
    (
        "zip_unequal_lengths",
        study("zip: [{iel.dt: [0.1, 0.2], iel.steps: [20, 10, 5]}]", base="iel: {type: heat}"),
        ["field 'zip[0]'", "equal lengths", "iel.steps has 3"],
    ),
    (
        "path_set_twice",
        study("factors: {iel.steps: [5]}", "zip: [{iel.steps: [1, 2]}]", base="iel: {type: heat}"),
        ["field 'zip[0].iel.steps'", "set twice", "keep one"],
    ),
    (
        "exclude_not_a_factor",
        study(FACTORS, "exclude: [{iel.dt: 0.1}]"),
        ["field 'exclude[0].iel.dt'", "not a factor", "noise.rate, iel.type"],
    ),
    (
        "baseline_not_a_value",
        study(FACTORS, "baseline: {iel.type: tv}"),
        ["field 'baseline.iel.type'", "its values are", "'none'"],
    ),
    (
        "baseline_matches_no_cell",
        study(FACTORS, "exclude: [{iel.type: none}]", "baseline: {iel.type: none}"),
        ["field 'baseline'", "matches no cell", "noise.rate=0.0,iel.type=heat"],
    ),
    # -- seeds
    ("empty_seed_list", study("seeds: []"), ["field 'seeds'", "at least one seed"]),
    ("seed_count_zero", study("seeds: 0"), ["field 'seeds'", "1..10000", "got 0"]),
    ("duplicate_seed", study("seeds: [0, 1, 0]"), ["field 'seeds[2]'", "listed twice"]),
    # -- adaptive seeds and decide
    (
        "adaptive_max_below_start",
        study(FACTORS, "baseline: {iel.type: none}", "seeds: {adaptive: {start: 5, max: 3}}", DECIDE),
        ["field 'seeds.adaptive.max'", "below start", "max >= 5"],
    ),
    (
        "adaptive_batch_zero",
        study(
            FACTORS, "baseline: {iel.type: none}", "seeds: {adaptive: {start: 3, max: 9, batch: 0}}", DECIDE
        ),
        ["field 'seeds.adaptive.batch'", ">= 1", "batch: 1"],
    ),
    (
        "adaptive_unknown_key",
        study(FACTORS, "baseline: {iel.type: none}", "seeds: {adaptive: {start: 3, maximum: 9}}", DECIDE),
        ["field 'seeds.adaptive.maximum'", "valid keys are: start, max, batch"],
    ),
    (
        "adaptive_without_baseline",
        study(FACTORS, "seeds: {adaptive: {start: 3, max: 9}}", DECIDE),
        ["field 'seeds.adaptive'", "no baseline", "baseline: {iel.type: none}"],
    ),
    (
        "adaptive_with_search",
        study(FACTORS, "baseline: {iel.type: none}", "seeds: {adaptive: {start: 3, max: 9}}", DECIDE, SEARCH),
        ["field 'seeds.adaptive'", "cannot be combined with search", "fixed seed count"],
    ),
    (
        "decide_with_search",
        study(FACTORS, "baseline: {iel.type: none}", DECIDE, SEARCH),
        ["field 'decide'", "not replicates", "remove decide:"],
    ),
    (
        "decide_without_baseline",
        study(FACTORS, DECIDE),
        ["field 'decide'", "no baseline", "baseline: {iel.type: none}"],
    ),
    (
        "adaptive_without_decide",
        study(FACTORS, "baseline: {iel.type: none}", "seeds: {adaptive: {start: 3, max: 9}}"),
        ["field 'decide'", "need a decide: section", "decide: {metric: dice"],
    ),
    (
        "decide_alpha_zero",
        study(FACTORS, "decide: {metric: dice, alpha: 0}"),
        ["field 'decide.alpha'", "(0, 0.5]"],
    ),
    (
        "decide_alpha_too_large",
        study(FACTORS, "decide: {metric: dice, alpha: 0.6}"),
        ["field 'decide.alpha'", "(0, 0.5]", "0.05"],
    ),
    (
        "decide_negative_margin",
        study(FACTORS, "decide: {metric: dice, margin: -0.01}"),
        ["field 'decide.margin'", ">= 0", "metric units"],
    ),
    (
        "decide_unknown_metric",
        study(FACTORS, "decide: {metric: accuracy}"),
        ["field 'decide.metric'", "no trial records a metric 'accuracy'", "dice", "val_loss"],
    ),
    (
        "decide_bounded_unbounded_metric",
        study(FACTORS, "decide: {metric: val_loss, method: bounded}"),
        ["field 'decide.method'", "known range", "val_loss", "method: t"],
    ),
    (
        "decide_k_without_mean_last_k",
        study(FACTORS, "decide: {metric: dice, score: last, k: 3}"),
        ["field 'decide.k'", "mean_last_k"],
    ),
    (
        "decide_unknown_score",
        study(FACTORS, "decide: {metric: dice, score: median}"),
        ["field 'decide.score'", "last, mean_last_k, best"],
    ),
    # -- limits checked at plan time (the worker would fail every trial)
    (
        "data_size_huge",
        study(base="").replace("size: 32", "size: 1000000"),
        ["field 'base.data.size'", "over the limit of 4096", "GiB of memory"],
    ),
    (
        "model_depth_40",
        study().replace("depth: 2", "depth: 40"),
        ["field 'base.model'", "depth 40", "GiB of memory", "smaller model.width or model.depth"],
    ),
    (
        "num_images_1e9_string",
        study().replace("num_images: 16", "num_images: 1e9"),
        ["field 'base.data.num_images'", "expected an integer", "'1e9'"],
    ),
    (
        "num_images_billion",
        study().replace("num_images: 16", "num_images: 1000000000"),
        ["field 'base.data.num_images'", "would need", "GiB of memory", "over the limit"],
    ),
    (
        "factor_model_depth_40",
        study("factors: {model.depth: [2, 40]}"),
        ["field 'factors.model.depth'", "in cell 'model.depth=40'", "GiB of memory"],
    ),
    # -- search
    (
        "unknown_search_key",
        study(search("optimizer.lr: {type: float, low: 0.001, high: 0.01}", n_trial="3")),
        ["field 'search.n_trial'", "n_trials"],
    ),
    (
        "unknown_param_key",
        study(search("optimizer.lr: {type: float, low: 0.001, high: 0.01, lg: true}")),
        ["field 'search.params.optimizer.lr.lg'", "log"],
    ),
    (
        "unknown_objective_key",
        study(
            search(
                "optimizer.lr: {type: float, low: 0.001, high: 0.01}",
                objectives="[{metric: dice, goal: max}]",
            )
        ),
        ["field 'search.objectives[0].goal'", "direction"],
    ),
    (
        "unknown_metric",
        study(search("optimizer.lr: {type: float, low: 0.001, high: 0.01}", objectives="[{metric: iou}]")),
        ["field 'search.objectives[0].metric'", "miou"],
    ),
    (
        "low_above_high",
        study(search("iel.dt: {type: float, low: 0.3, high: 0.01}"), base="iel: {type: heat}"),
        ["field 'search.params.iel.dt.low'", "<= high", "swap"],
    ),
    (
        "log_low_not_positive",
        study(search("optimizer.lr: {type: float, low: 0.0, high: 0.01, log: true}")),
        ["field 'search.params.optimizer.lr.low'", "low > 0", "log: false"],
    ),
    (
        "int_non_int_bounds",
        study(search("iel.steps: {type: int, low: 1.5, high: 9}"), base="iel: {type: heat}"),
        ["field 'search.params.iel.steps.low'", "integer bounds", "type: float"],
    ),
    (
        "empty_categorical",
        study(search("optimizer.type: {type: categorical, choices: []}")),
        ["field 'search.params.optimizer.type.choices'", "non-empty list"],
    ),
    (
        "unknown_param_type",
        study(search("optimizer.lr: {type: real, low: 0.1, high: 1.0}")),
        ["field 'search.params.optimizer.lr.type'", "float, int, categorical"],
    ),
    (
        "unknown_sampler",
        study(search("optimizer.lr: {type: float, low: 0.001, high: 0.01}", sampler="bayes")),
        ["field 'search.sampler'", "tpe, random, grid, cmaes, nsga2"],
    ),
    (
        "unknown_pruner",
        study(search("optimizer.lr: {type: float, low: 0.001, high: 0.01}", pruner="asha")),
        ["field 'search.pruner'", "median, hyperband, none"],
    ),
    (
        "grid_needs_finite",
        study(search("optimizer.lr: {type: float, low: 0.001, high: 0.01}", sampler="grid")),
        ["field 'search.params.optimizer.lr'", "step", "categorical"],
    ),
    (
        "multi_objective_pruner",
        study(
            search(
                "optimizer.lr: {type: float, low: 0.001, high: 0.01}",
                pruner="median",
                objectives="[dice, val_loss]",
            )
        ),
        ["field 'search.pruner'", "multi-objective", "pruner: none"],
    ),
    (
        "search_path_is_factor",
        study("factors: {optimizer.lr: [0.001]}", SEARCH),
        ["field 'search.params.optimizer.lr'", "factor", "not both"],
    ),
    (
        "search_bound_invalid",
        study(search("iel.steps: {type: int, low: 0, high: 9}"), base="iel: {type: heat}"),
        ["field 'search.params.iel.steps.low'", "integer >= 1"],
    ),
    # -- named arms
    (
        "arm_unknown_parameter",
        study("arms: {plain: {}, heat_mild: {iel: {type: heat, dtt: 0.1}}}", "baseline: plain"),
        ["field 'arms.heat_mild.iel.dtt'", "unknown parameter 'dtt'", "dt"],
    ),
    (
        "arm_bad_name",
        study("arms: {plain: {}, 'heat mild': {iel: {type: heat}}}"),
        ["field 'arms.heat mild'", "invalid arm name", "A-Z a-z 0-9 _ -"],
    ),
    (
        "arm_and_factor_set_one_path",
        study("arms: {plain: {}, heat: {iel: {type: heat, steps: 5}}}", "factors: {iel.steps: [5, 10]}"),
        ["field 'arms.heat.iel.steps'", "also a factor (factors.iel.steps)", "not both"],
    ),
    (
        "baseline_unknown_arm",
        study("arms: {plain: {}, heat: {iel: {type: heat}}}", "baseline: hot"),
        ["field 'baseline'", "'hot' is not an arm", "plain, heat"],
    ),
    (
        "section_as_factor_values",
        study("factors: {iel: [{type: none}, {type: heat, dt: 0.1}]}"),
        ["field 'factors.iel'", "is a section", "named arms", "arms: {plain: {}"],
    ),
    # -- resources
    ("unknown_resources_key", study("resources: {gpu: 1}"), ["field 'resources.gpu'", "gpus"]),
    ("negative_gpus", study("resources: {gpus: -1}"), ["field 'resources.gpus'", ">= 0.0"]),
    (
        "fractional_gpus_above_one",
        study("resources: {gpus: 1.5}"),
        ["field 'resources.gpus'", "whole number"],
    ),
    (
        "gpu_memory_fraction_range",
        study("resources: {gpus: 0.5, gpu_memory_fraction: 1.5}"),
        ["field 'resources.gpu_memory_fraction'", "(0, 1]"],
    ),
]


@pytest.mark.parametrize(("name", "content", "expected"), CASES, ids=[c[0] for c in CASES])
def test_bad_study_file_names_file_path_and_fix(
    tmp_path: Path, name: str, content: str | bytes, expected: list[str]
) -> None:
    path = tmp_path / f"{name}.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(SpecError) as info:
        build_plan(load_study(path))
    message = str(info.value)
    assert f"{name}.yaml" in message
    assert info.value.source == str(path)
    for part in expected:
        assert part in message, f"{part!r} not in: {message}"


def test_iel_train_refuses_an_alias_bomb_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``iel train`` reads its YAML with the study files' limits (issue 12, item 18)."""
    from orchestrator import cli

    levels = "".join(f"l{i + 1}: &l{i + 1} [{', '.join([f'*l{i}'] * 10)}]\n" for i in range(8))
    path = tmp_path / "bomb.yaml"
    path.write_text("l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n" + levels, encoding="utf-8")
    out = tmp_path / "out"
    assert cli.main(["train", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "bomb.yaml" in err and "too large or too deeply nested" in err and "Traceback" not in err
    assert not out.exists()
    path.write_text("epochs: 1\n", encoding="utf-8")
    assert cli.main(["train", str(path), "--out", str(out), "--set", "noop=" + "[[" * 40 + "]]" * 40]) == 2
    assert "too large or too deeply nested" in capsys.readouterr().err and not out.exists()


NEW_CLI_CASES = (
    "adaptive_max_below_start",
    "adaptive_batch_zero",
    "adaptive_without_baseline",
    "adaptive_with_search",
    "adaptive_without_decide",
    "decide_alpha_too_large",
    "decide_negative_margin",
    "decide_unknown_metric",
    "decide_bounded_unbounded_metric",
    "data_size_huge",
    "model_depth_40",
    "num_images_billion",
)


@pytest.mark.parametrize("name", NEW_CLI_CASES)
def test_iel_submit_refuses_bad_seeds_decide_and_limits_and_writes_nothing(
    tmp_path: Path, iel_home: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    from orchestrator import cli

    content, expected = next((c, e) for n, c, e in CASES if n == name)
    path = tmp_path / f"{name}.yaml"
    path.write_text(str(content), encoding="utf-8")
    assert cli.main(["submit", str(path), "--home", str(iel_home)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: ") and "Traceback" not in err and len(err) < 2000
    assert all(part in err for part in expected), err
    assert not iel_home.exists() or not any(iel_home.iterdir())
    assert cli.main(["submit", str(path), "--dry-run"]) == 2
