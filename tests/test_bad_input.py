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
