"""The schema of a trial configuration, in one place: its keys, sections, defaults and component registries.

:mod:`ielcore.spec` validates one configuration against it; a study (``orchestrator``) uses
:func:`check_path` and :func:`check_type_values` to check the configuration paths its factors and
search parameters name, and :func:`section_accepts` to drop a factor that does not apply to a cell's
component type.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from ielcore.errors import SpecError

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("constant", "cosine", "step", "plateau")
DEVICES = ("auto", "cpu", "cuda")
KINDS = ("train", "noop")

TOP_DEFAULTS: dict[str, Any] = {
    "kind": "train",
    "seed": 0,
    "device": "auto",
    "amp": False,
    "epochs": 5,
    "batch_size": 4,
}
COMPONENT_KINDS: dict[str, str] = {
    "data": "dataset",
    "noise": "noise model",
    "model": "model",
    "iel": "IEL type",
    "loss": "loss",
}
"""The component sections (each has a ``type`` from a registry) and what their types are called."""
SECTION_DEFAULTS: dict[str, dict[str, Any]] = {
    "data": {"type": "cells", "val_fraction": 0.25, "seed": None},
    "noise": {"type": "none", "rate": 0.0},
    "model": {"type": "unet", "width": 16, "depth": 3},
    "iel": {"type": "none"},
    "loss": {"type": "ce"},
    "label_smoothing": {"steps": 0, "dt": 0.1},
    "optimizer": {"type": "adam", "lr": 1e-3, "weight_decay": 0.0, "momentum": 0.9},
    "schedule": {
        "type": "constant",
        "step_size": 10,
        "gamma": 0.5,
        "patience": 3,
        "factor": 0.5,
        "min_lr": 0.0,
    },
    "artifacts": {"checkpoint": True, "prediction_grid": True},
    "noop": {"sleep_s": 0.0, "fail_at_epoch": None, "diverge_at_epoch": None, "effect": 0.0, "noise_sd": 0.0},
}
IDENTITY_EXCLUDED = ("artifacts",)
"""Sections that cannot change the trained model, so they are not part of a trial's identity (hash)."""
OWN_KEYS: dict[str, tuple[str, ...]] = {"data": ("type", "val_fraction", "seed"), "noise": ("type", "rate")}
"""Keys of a component section consumed by the trainer itself, not passed to the component's builder."""


def own_keys(section: str) -> tuple[str, ...]:
    return OWN_KEYS.get(section, ("type",))


def registries() -> dict[str, Mapping[str, Any]]:
    """``{section: {type name: factory}}`` of every component section."""
    from ielcore.data import DATASET_TYPES
    from ielcore.iel import IEL_TYPES
    from ielcore.losses import LOSS_TYPES
    from ielcore.models import MODEL_TYPES
    from ielcore.noise import NOISE_TYPES

    return {
        "data": DATASET_TYPES,
        "noise": NOISE_TYPES,
        "model": MODEL_TYPES,
        "iel": IEL_TYPES,
        "loss": LOSS_TYPES,
    }


def resolvers() -> dict[str, Callable[[str, Mapping[str, Any]], dict[str, Any]]]:
    """``{section: resolve(type name, params) -> params with defaults}`` of every component section."""
    from ielcore.data import resolve_dataset_params
    from ielcore.iel import resolve_iel_params
    from ielcore.losses import resolve_loss_params
    from ielcore.models import resolve_model_params
    from ielcore.noise import resolve_noise_params

    return {
        "data": resolve_dataset_params,
        "noise": resolve_noise_params,
        "model": resolve_model_params,
        "iel": resolve_iel_params,
        "loss": resolve_loss_params,
    }


def section_accepts(section: str, type_name: str, key: str) -> bool:
    """Whether ``key`` is meaningful in component ``section`` of type ``type_name``.

    ``section_accepts("iel", "none", "steps")`` is False: a factor ``iel.steps`` does not apply to the
    identity IEL, so an ablation grid collapses those cells into one.
    """
    from ielcore._params import signature_params

    if key in own_keys(section):
        return True
    regs = registries()
    if section not in regs:
        return key in SECTION_DEFAULTS.get(section, {})
    factory = regs[section].get(type_name)
    if factory is None:
        return False
    return key in signature_params(factory)


@functools.cache
def _default_config() -> dict[str, Any]:
    from ielcore.spec import TrialConfig

    return TrialConfig.from_dict({}).to_dict()


def default_config() -> dict[str, Any]:
    """The resolved configuration of ``{}`` (a copy)."""
    import copy

    return copy.deepcopy(_default_config())


def _type_keys(section: str, type_name: str) -> set[str]:
    from ielcore._params import signature_params

    candidates = {"type", *_default_config()[section], *signature_params(registries()[section][type_name])}
    return {k for k in candidates if section_accepts(section, type_name, k)}


def check_type_values(path: str, values: tuple[Any, ...], where: str) -> None:
    """For a path ``<component section>.type``: every value is a registered type name."""
    section, _, key = path.partition(".")
    if key != "type" or section not in COMPONENT_KINDS:
        return
    registry, kind = registries()[section], COMPONENT_KINDS[section]
    for value in values:
        if not isinstance(value, str) or value not in registry:
            raise SpecError(
                f"unknown {kind} {value!r}; valid {kind}s are: {', '.join(sorted(registry))}", path=where
            )


def check_path(path: str, where: str, types: Mapping[str, set[str]]) -> None:
    """``path`` names a key of the configuration; a component key must apply to one of ``types[section]``.

    Raises :class:`SpecError` at ``where`` (the place in the document that names the path).
    """
    defaults = _default_config()
    sections = [k for k, v in defaults.items() if isinstance(v, dict)]
    scalars = [k for k, v in defaults.items() if not isinstance(v, dict)]
    parts = path.split(".")
    if path == "seed":
        raise SpecError(
            "the seed is varied by 'seeds:' (replicates), not by a factor; list the seeds there", path=where
        )
    if len(parts) == 1 and path in scalars:
        return
    if len(parts) == 1 and path in sections:
        arm = "heat: {iel: {type: heat, dt: 0.1}}" if path == "iel" else f"other: {{{path}: {{...}}}}"
        raise SpecError(
            f"{path!r} is a section, and a factor's values are single settings: name one of its keys "
            f"(e.g. {path}.type), vary several keys together with a zip group, or give whole sections "
            f"as named arms, e.g. 'arms: {{plain: {{}}, {arm}}}' with 'baseline: plain'",
            path=where,
        )
    if len(parts) != 2 or parts[0] not in sections:
        raise SpecError(
            f"unknown configuration path {path!r}; a path is one of {', '.join(scalars)} or "
            f"'section.key' with a section among {', '.join(sections)}",
            path=where,
        )
    section, key = parts
    if section not in COMPONENT_KINDS:
        if key not in defaults[section]:
            raise SpecError(
                f"unknown key {key!r} in {section!r}; valid keys are: {', '.join(defaults[section])}",
                path=where,
            )
        return
    if key == "type" or any(section_accepts(section, t, key) for t in types[section]):
        return
    valid = sorted(set().union(*(_type_keys(section, t) for t in types[section])))
    names = ", ".join(sorted(types[section]))
    raise SpecError(
        f"{key!r} is not a parameter of {COMPONENT_KINDS[section]} {names}; valid keys are: {', '.join(valid)}",
        path=where,
    )


__all__ = [
    "COMPONENT_KINDS",
    "DEVICES",
    "IDENTITY_EXCLUDED",
    "KINDS",
    "OPTIMIZERS",
    "OWN_KEYS",
    "SCHEDULES",
    "SECTION_DEFAULTS",
    "TOP_DEFAULTS",
    "check_path",
    "check_type_values",
    "default_config",
    "registries",
    "resolvers",
    "section_accepts",
]
