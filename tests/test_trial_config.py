"""ielcore.spec: round trips over every registered component, strictness, overrides, hash identity."""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping
from typing import Any

import pytest

from ielcore.data import DATASET_TYPES
from ielcore.errors import SpecError, StabilityError, UnknownNameError
from ielcore.iel import IEL_TYPES
from ielcore.losses import LOSS_TYPES
from ielcore.models import MODEL_TYPES
from ielcore.noise import NOISE_TYPES
from ielcore.spec import TrialConfig, apply_overrides, canonical_json, config_hash, section_accepts

QUICK = {
    "data": {"type": "cells", "num_images": 16, "size": 32},
    "model": {"type": "unet", "width": 8, "depth": 2},
    "epochs": 2,
    "batch_size": 4,
}
REGISTRIES: dict[str, Mapping[str, Any]] = {
    "data": DATASET_TYPES,
    "noise": NOISE_TYPES,
    "model": MODEL_TYPES,
    "iel": IEL_TYPES,
    "loss": LOSS_TYPES,
}
COMPONENTS = [(s, t) for s, reg in REGISTRIES.items() for t in reg]


def _component(section: str, type_name: str) -> dict[str, Any]:
    return (
        {"type": type_name, "root": "some/folder"}
        if (section, type_name) == ("data", "folder")
        else {"type": type_name}
    )


@pytest.mark.parametrize(("section", "type_name"), COMPONENTS, ids=[f"{s}-{t}" for s, t in COMPONENTS])
def test_round_trip_for_every_registered_component(section: str, type_name: str) -> None:
    config = TrialConfig.from_dict({**QUICK, section: _component(section, type_name)})
    resolved = config.to_dict()
    again = TrialConfig.from_dict(resolved)
    assert again == config and again.to_dict() == resolved and again.hash == config.hash
    assert resolved[section]["type"] == type_name
    # every parameter of the component is listed with its default, so the hash covers it
    from ielcore._params import signature_params

    listed = set(resolved[section])
    assert {
        k for k in signature_params(REGISTRIES[section][type_name]) if section_accepts(section, type_name, k)
    } <= (listed | {"seed", "rate", "num_classes", "in_channels"})


def test_to_dict_is_a_deep_copy_and_lists_every_section() -> None:
    config = TrialConfig.from_dict(QUICK)
    d = config.to_dict()
    d["data"]["num_images"] = 999
    d["optimizer"]["lr"] = 1.0
    assert config.data["num_images"] == 16 and config.optimizer["lr"] == 1e-3
    assert list(d) == [
        "kind",
        "seed",
        "device",
        "amp",
        "epochs",
        "batch_size",
        "data",
        "noise",
        "model",
        "iel",
        "loss",
        "label_smoothing",
        "optimizer",
        "schedule",
        "artifacts",
        "noop",
    ]
    assert d["iel"] == {"type": "none"} and d["noise"]["rate"] == 0.0 and d["data"]["val_fraction"] == 0.25


STRICT_CASES: list[tuple[dict[str, Any], str, type[SpecError], str]] = [
    ({"epoch": 2}, "epoch", SpecError, "valid keys are"),
    ({"optimizer": {"lrate": 0.1}}, "optimizer.lrate", SpecError, "valid keys are"),
    ({"iel": {"type": "heat", "stepz": 3}}, "iel.stepz", SpecError, "valid parameters are"),
    ({"iel": {"type": "none", "steps": 3}}, "iel.steps", SpecError, "unknown parameter 'steps'"),
    ({"iel": {"type": "heet"}}, "iel.type", UnknownNameError, "valid IEL types are"),
    ({"model": {"type": "resnet"}}, "model.type", UnknownNameError, "unet"),
    ({"data": {"type": "folder"}}, "data.root", SpecError, "missing required parameter 'root'"),
    ({"iel": 5}, "iel", SpecError, "expected a mapping"),
    ({"epochs": "2"}, "epochs", SpecError, "expected an integer"),
    ({"epochs": 0}, "epochs", SpecError, ">= 1"),
    ({"batch_size": True}, "batch_size", SpecError, "expected an integer"),
    ({"seed": -1}, "seed", SpecError, ">= 0"),
    ({"amp": "yes"}, "amp", SpecError, "true or false"),
    ({"device": "tpu"}, "device", SpecError, "auto, cpu, cuda"),
    ({"kind": "eval"}, "kind", SpecError, "train, noop"),
    ({"data": {"val_fraction": 1.0}}, "data.val_fraction", SpecError, "< 1"),
    ({"noise": {"type": "block", "rate": 1.2}}, "noise.rate", SpecError, "[0, 1]"),
    ({"noise": {"type": "block", "rate": float("nan")}}, "noise.rate", SpecError, "finite"),
    ({"label_smoothing": {"steps": 5, "dt": 1.5}}, "label_smoothing.dt", StabilityError, "dt <= 1"),
    ({"optimizer": {"type": "adagrad"}}, "optimizer.type", SpecError, "adam, adamw, sgd, rmsprop"),
    ({"optimizer": {"lr": 0}}, "optimizer.lr", SpecError, "> 0.0"),
    ({"schedule": {"type": "cosine", "gamma": -1}}, "schedule.gamma", SpecError, "> 0.0"),
    ({"noop": {"fail_at_epoch": 0}}, "noop.fail_at_epoch", SpecError, ">= 1"),
]


@pytest.mark.parametrize(("raw", "path", "kind", "text"), STRICT_CASES, ids=[c[1] for c in STRICT_CASES])
def test_strict_validation_names_the_path(
    raw: dict[str, Any], path: str, kind: type[SpecError], text: str
) -> None:
    with pytest.raises(kind) as info:
        TrialConfig.from_dict(raw, source="cfg.yaml")
    assert info.value.path == path and info.value.source == "cfg.yaml"
    assert text in info.value.message


def test_changing_a_component_type_drops_the_old_types_parameters() -> None:
    base = {"iel": {"type": "heat", "dt": 0.2, "steps": 5, "padding": "replicate"}}
    assert apply_overrides(base, {"iel.type": "none"}) == {"iel": {"type": "none"}}
    assert TrialConfig.from_dict(apply_overrides(base, {"iel.type": "none"})).iel == {"type": "none"}
    # type first, then the other overrides: a simultaneous step count survives the type change
    moved = apply_overrides(base, {"iel.steps": 7, "iel.type": "tv"})
    assert moved == {"iel": {"type": "tv", "steps": 7}}
    # setting the same type keeps the parameters
    assert apply_overrides(base, {"iel.type": "heat"}) == base
    # own keys of a section survive: the noise rate is not a parameter of the noise type
    assert apply_overrides(
        {"noise": {"type": "block", "rate": 0.2, "block": 3}}, {"noise.type": "pixel"}
    ) == {"noise": {"type": "pixel", "rate": 0.2}}


def test_changing_optimizer_or_schedule_type_keeps_shared_keys() -> None:
    base = {"optimizer": {"type": "adam", "lr": 0.01}, "schedule": {"type": "step", "step_size": 3}}
    out = apply_overrides(base, {"optimizer.type": "sgd", "schedule.type": "plateau"})
    assert out == {"optimizer": {"type": "sgd", "lr": 0.01}, "schedule": {"type": "plateau", "step_size": 3}}


def test_apply_overrides_copies_creates_sections_and_rejects_non_sections() -> None:
    base = {"epochs": 2, "iel": {"type": "heat"}}
    frozen = copy.deepcopy(base)
    out = apply_overrides(base, {"iel.dt": 0.2, "optimizer.lr": 0.5, "seed": 3})
    assert base == frozen
    assert out == {"epochs": 2, "seed": 3, "iel": {"type": "heat", "dt": 0.2}, "optimizer": {"lr": 0.5}}
    with pytest.raises(SpecError, match="is not a section") as info:
        apply_overrides(base, {"epochs.x": 1})
    assert info.value.path == "epochs.x"


def test_replace_revalidates() -> None:
    config = TrialConfig.from_dict({"iel": {"type": "heat"}})
    assert config.replace({"iel.steps": 5}).iel["steps"] == 5
    with pytest.raises(SpecError):
        config.replace({"iel.steps": 5, "epochs": 0})


def test_canonical_json_and_hash_are_pinned() -> None:
    value = {"b": [1.5, "x", None, True], "a": {"d": 2, "c": 0.1}}
    text = '{"a":{"c":0.1,"d":2},"b":[1.5,"x",null,true]}'
    assert canonical_json(value) == text
    assert config_hash(value) == hashlib.sha256(text.encode()).hexdigest()
    assert config_hash(value) == "84d06d9b4f5ecb8a7e0f62d26f287610409a097a594c818bb1b8491425b0477b"
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


def test_hash_ignores_key_order_and_int_float_spelling() -> None:
    a = TrialConfig.from_dict(
        {"iel": {"type": "heat", "dt": 0.2, "steps": 5}, "epochs": 2, "noise": {"rate": 0}}
    )
    b = TrialConfig.from_dict(
        {"noise": {"rate": 0.0}, "epochs": 2, "iel": {"steps": 5, "dt": 0.2, "type": "heat"}}
    )
    assert a == b and a.hash == b.hash and len(a.hash) == 64 and int(a.hash, 16) >= 0


CHANGES: list[dict[str, Any]] = [
    {"seed": 1},
    {"epochs": 3},
    {"batch_size": 2},
    {"amp": True},
    {"device": "cpu"},
    {"noise.rate": 0.1},
    {"noise.type": "block"},
    {"iel.type": "heat"},
    {"model.width": 9},
    {"model.depth": 3},
    {"data.num_images": 17},
    {"data.val_fraction": 0.5},
    {"data.seed": 3},
    {"optimizer.lr": 0.01},
    {"optimizer.type": "sgd"},
    {"schedule.type": "cosine"},
    {"label_smoothing.steps": 1},
    {"loss.type": "ce_dice"},
    {"kind": "noop"},
]


def test_hash_is_sensitive_to_every_setting() -> None:
    base = TrialConfig.from_dict(QUICK)
    hashes = {base.hash} | {base.replace(change).hash for change in CHANGES}
    assert len(hashes) == len(CHANGES) + 1


def test_settings_that_cannot_change_the_model_are_not_part_of_the_hash() -> None:
    base = TrialConfig.from_dict(QUICK)
    quiet = base.replace({"artifacts.checkpoint": False, "artifacts.prediction_grid": False})
    assert quiet != base and quiet.hash == base.hash
    assert config_hash(base.to_dict()) == config_hash(
        {k: v for k, v in base.to_dict().items() if k != "artifacts"}
    )


def test_section_accepts() -> None:
    assert section_accepts("iel", "heat", "steps") and not section_accepts("iel", "none", "steps")
    assert section_accepts("noise", "none", "rate") and section_accepts("data", "cells", "val_fraction")
    assert section_accepts("noise", "block", "block") and not section_accepts("noise", "pixel", "block")
    assert section_accepts("optimizer", "sgd", "momentum") and not section_accepts("optimizer", "sgd", "nope")
    assert not section_accepts("iel", "no-such-type", "steps")
