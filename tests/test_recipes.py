"""The shipped CPU recipes converge: plain CE on clean labels reaches Dice >= 0.85 in every seed.

``configs/cells_recipe.yaml`` and ``configs/nuclei_recipe.yaml`` are the baselines of the quickstart and
the small studies; a recipe in which some seeds lose a class (the width-8 ``cells`` U-Net lost the nucleus
class for some initial weights) makes every comparison built on it bimodal.  The measurements behind the
recipes (20 seeds each): ``python benchmarks/recipe_check.py configs/<name>_recipe.yaml --seeds 20``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ielcore.spec import TrialConfig
from ielcore.train import train_trial
from ielcore.yamlio import load_yaml_file

ROOT = Path(__file__).resolve().parents[1]
SEEDS = range(8)
CONVERGED = 0.85  # final validation Dice, mean over foreground classes
CLASS_FLOOR = 0.75  # every foreground class on its own: a collapsed class scores about 0


def recipe(name: str) -> TrialConfig:
    raw = load_yaml_file(ROOT / "configs" / f"{name}_recipe.yaml", what="trial configuration")
    return TrialConfig.from_dict(raw).replace({"artifacts.prediction_grid": False})


def test_recipes_are_plain_ce_on_clean_labels() -> None:
    for name in ("cells", "nuclei"):
        cfg = recipe(name)
        assert cfg.data["type"] == name and cfg.device == "cpu"
        assert cfg.iel["type"] == "none" and cfg.loss["type"] == "ce" and cfg.noise["rate"] == 0.0
        assert cfg.label_smoothing["steps"] == 0


def test_quickstart_trains_the_nuclei_recipe() -> None:
    """The quickstart's base is the converging nuclei recipe (only the noise rate, artifacts and a shorter
    schedule differ; tests/test_quickstart.py checks that the shorter schedule converges too)."""
    study = load_yaml_file(ROOT / "studies" / "quickstart.yaml")
    base = TrialConfig.from_dict(study["base"]).to_dict()
    shipped = recipe("nuclei").to_dict()
    assert base["epochs"] <= shipped["epochs"]
    for key in ("batch_size", "data", "model", "optimizer", "schedule", "loss", "device"):
        assert base[key] == shipped[key], key
    assert base["noise"] == {**shipped["noise"], "rate": base["noise"]["rate"]}
    assert study["baseline"] == "plain_ce" and study["arms"]["plain_ce"] == {}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["nuclei", "cells"])
def test_recipe_converges_in_every_seed(name: str) -> None:
    cache: dict[str, Any] = {}
    failures = []
    for seed in SEEDS:
        final = train_trial(recipe(name).replace({"seed": seed}), data_cache=cache).final_metrics
        per_class = {k: v for k, v in final.items() if k.startswith("dice_c")}
        assert per_class, "the trainer records per-class Dice (dice_c1, ...)"
        if final["dice"] < CONVERGED or min(per_class.values()) < CLASS_FLOOR:
            failures.append(f"seed {seed}: dice {final['dice']:.4f} {per_class}")
    assert not failures, f"{name} recipe did not converge in every seed: " + "; ".join(failures)
