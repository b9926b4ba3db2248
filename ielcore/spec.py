"""The trial configuration: a frozen, typed, strictly validated description of one training run.

A configuration is written as a nested mapping (YAML or dict)::

    kind: train            # or "noop": a built-in trial with no data and no model (measures the platform)
    seed: 0                # fixes data, noise, initialisation and data order
    device: auto           # auto | cpu | cuda
    amp: false             # CUDA autocast (bf16) for the network; IELs always run in fp32
    epochs: 5
    batch_size: 4
    data:      {type: cells, val_fraction: 0.25, num_images: 64, size: 64}
    noise:     {type: block, rate: 0.2, block: 2}
    model:     {type: unet, width: 16, depth: 3}
    iel:       {type: heat, dt: 0.1, steps: 20}
    loss:      {type: ce}
    label_smoothing: {steps: 0, dt: 0.1}        # heat-smoothing of the noisy labels (a baseline)
    optimizer: {type: adam, lr: 1.0e-3, weight_decay: 0.0, momentum: 0.9}
    schedule:  {type: constant}                 # constant | cosine | step | plateau
    artifacts: {checkpoint: true, prediction_grid: true}
    noop:      {sleep_s: 0.0, fail_at_epoch: null, diverge_at_epoch: null, effect: 0.0, noise_sd: 0.0}

Component sections (``data``, ``noise``, ``model``, ``iel``, ``loss``) carry a ``type`` and that type's
own parameters; they are checked against the component's signature, so unknown keys are errors and the
resolved configuration lists every parameter with its default.  That resolved form, less the sections
that cannot change the trained model (``artifacts``), is what is hashed (:func:`config_hash`) to give a
trial its identity; a study's plan adds a ``folder`` dataset's file fingerprint (``data.fingerprint``).
The schema itself (keys, sections, defaults, registries) is :mod:`ielcore.schema`.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ielcore import schema
from ielcore.errors import IELError, SpecError, StabilityError
from ielcore.fields import check_bool, check_choice, check_float, check_int
from ielcore.schema import (
    COMPONENT_KINDS,
    DEVICES,
    IDENTITY_EXCLUDED,
    KINDS,
    OPTIMIZERS,
    SCHEDULES,
    SECTION_DEFAULTS,
    TOP_DEFAULTS,
    own_keys,
    section_accepts,
)


def _frozen(value: Any) -> Any:
    """Deep copy into plain JSON-like containers (dicts stay dicts; tuples become lists)."""
    return json.loads(json.dumps(value))


def _section(raw: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = raw.get(name, {})
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise SpecError(f"expected a mapping but got {type(value).__name__} {value!r}", path=name)
    return dict(value)


def _merge_section(name: str, given: dict[str, Any]) -> dict[str, Any]:
    """``given`` over the section's defaults; a component's defaults of another type do not leak in."""
    defaults = SECTION_DEFAULTS[name]
    if name in COMPONENT_KINDS:
        same_type = given.get("type", defaults["type"]) == defaults["type"]
        base = dict(defaults) if same_type else {k: v for k, v in defaults.items() if k in own_keys(name)}
        return {**base, **given}
    bad = sorted(set(given) - set(defaults))
    if bad:
        raise SpecError(
            f"unknown key {bad[0]!r}; valid keys are: {', '.join(sorted(defaults))}", path=f"{name}.{bad[0]}"
        )
    return {**defaults, **given}


def _resolve_component(
    section: str, values: dict[str, Any], resolver: Callable[[str, Mapping[str, Any]], dict[str, Any]]
) -> dict[str, Any]:
    own = {k: values[k] for k in own_keys(section) if k in values}
    params = {k: v for k, v in values.items() if k not in own}
    try:
        resolved = resolver(str(own["type"]), params)
    except SpecError as e:
        raise e.located(path_prefix=section) from None
    return {**own, **resolved}


def _check_top(raw: Mapping[str, Any]) -> dict[str, Any]:
    known = set(TOP_DEFAULTS) | set(SECTION_DEFAULTS)
    unknown = sorted(str(k) for k in raw if k not in known)
    if unknown:
        raise SpecError(
            f"unknown key {unknown[0]!r}; valid keys are: {', '.join(sorted(known))}", path=unknown[0]
        )
    top = {**TOP_DEFAULTS, **{k: raw[k] for k in TOP_DEFAULTS if k in raw}}
    return {
        "kind": check_choice(top["kind"], "kind", KINDS),
        "seed": check_int(top["seed"], "seed", 0, 2**31 - 1),
        "device": check_choice(top["device"], "device", DEVICES),
        "amp": check_bool(top["amp"], "amp"),
        "epochs": check_int(top["epochs"], "epochs", 1, 100_000),
        "batch_size": check_int(top["batch_size"], "batch_size", 1, 1_000_000),
    }


def _check_data_noise(data: Mapping[str, Any], noise: Mapping[str, Any]) -> None:
    fraction = check_float(data.get("val_fraction"), "data.val_fraction", 0.0, low_open=True)
    if fraction >= 1:
        raise SpecError(f"must be < 1 but got {fraction}", path="data.val_fraction")
    if data.get("seed") is not None:
        check_int(data["seed"], "data.seed", 0)
    rate = check_float(noise.get("rate"), "noise.rate", 0.0)
    if rate > 1:
        raise SpecError(f"a noise rate is a probability in [0, 1] but got {rate}", path="noise.rate")


def _check_label_smoothing(ls: Mapping[str, Any]) -> None:
    check_int(ls["steps"], "label_smoothing.steps", 0, 100_000)
    check_float(ls["dt"], "label_smoothing.dt", 0.0, low_open=True)
    if ls["steps"] > 0 and ls["dt"] > 1.0:
        raise StabilityError(
            f"forward heat smoothing of the labels is unstable with dt={ls['dt']}: the explicit scheme with "
            "the 5-point Laplacian / 4 is stable only for dt <= 1; lower label_smoothing.dt (and raise "
            "label_smoothing.steps to keep the same smoothing time)",
            path="label_smoothing.dt",
        )


def _check_training(opt: Mapping[str, Any], sch: Mapping[str, Any]) -> None:
    check_choice(opt["type"], "optimizer.type", OPTIMIZERS)
    check_float(opt["lr"], "optimizer.lr", 0.0, low_open=True)
    check_float(opt["weight_decay"], "optimizer.weight_decay", 0.0)
    check_float(opt["momentum"], "optimizer.momentum", 0.0)
    check_choice(sch["type"], "schedule.type", SCHEDULES)
    check_int(sch["step_size"], "schedule.step_size", 1)
    check_int(sch["patience"], "schedule.patience", 0)
    for key in ("gamma", "factor"):
        check_float(sch[key], f"schedule.{key}", 0.0, low_open=True)
    check_float(sch["min_lr"], "schedule.min_lr", 0.0)


def _check_other(artifacts: Mapping[str, Any], noop: Mapping[str, Any]) -> None:
    for key in ("checkpoint", "prediction_grid"):
        check_bool(artifacts[key], f"artifacts.{key}")
    check_float(noop["sleep_s"], "noop.sleep_s", 0.0)
    check_float(noop["effect"], "noop.effect")
    check_float(noop["noise_sd"], "noop.noise_sd", 0.0)
    for key in ("fail_at_epoch", "diverge_at_epoch"):
        if noop[key] is not None:
            check_int(noop[key], f"noop.{key}", 1)


@dataclass(frozen=True)
class TrialConfig:
    """A validated, fully resolved trial configuration (see the module docstring for the layout).

    Build it with :meth:`from_dict`; :meth:`to_dict` gives the resolved nested mapping (every default
    filled in), which round-trips: ``TrialConfig.from_dict(c.to_dict()) == c``.
    """

    kind: str
    seed: int
    device: str
    amp: bool
    epochs: int
    batch_size: int
    data: Mapping[str, Any]
    noise: Mapping[str, Any]
    model: Mapping[str, Any]
    iel: Mapping[str, Any]
    loss: Mapping[str, Any]
    label_smoothing: Mapping[str, Any]
    optimizer: Mapping[str, Any]
    schedule: Mapping[str, Any]
    artifacts: Mapping[str, Any]
    noop: Mapping[str, Any]

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], *, source: str | None = None) -> TrialConfig:
        """Validate ``raw`` strictly and resolve every default. Raises :class:`SpecError` with the field path."""
        try:
            return cls._from_dict(raw)
        except SpecError as e:
            raise e.located(source=source) if source else e from None

    @classmethod
    def _from_dict(cls, raw: Mapping[str, Any]) -> TrialConfig:
        if not isinstance(raw, Mapping):
            raise SpecError(f"a trial configuration must be a mapping, got {type(raw).__name__}")
        top = _check_top(raw)
        sections = {name: _merge_section(name, _section(raw, name)) for name in SECTION_DEFAULTS}
        if top["kind"] == "train":
            for name, resolver in schema.resolvers().items():
                sections[name] = _resolve_component(name, sections[name], resolver)
        _check_data_noise(sections["data"], sections["noise"])
        _check_label_smoothing(sections["label_smoothing"])
        _check_training(sections["optimizer"], sections["schedule"])
        _check_other(sections["artifacts"], sections["noop"])
        return cls(**top, **{k: _frozen(v) for k, v in sections.items()})

    def to_dict(self) -> dict[str, Any]:
        """The resolved configuration as a plain nested dict (a deep copy)."""
        out: dict[str, Any] = {k: getattr(self, k) for k in TOP_DEFAULTS}
        for name in SECTION_DEFAULTS:
            out[name] = copy.deepcopy(dict(getattr(self, name)))
        return out

    def replace(self, overrides: Mapping[str, Any]) -> TrialConfig:
        """A new configuration with dotted-path overrides applied (``{"iel.steps": 5}``) and re-validated."""
        return TrialConfig.from_dict(apply_overrides(self.to_dict(), overrides))

    @property
    def hash(self) -> str:
        """The configuration's content hash (:func:`config_hash`)."""
        return config_hash(self.to_dict())

    @property
    def identity(self) -> str:
        """The trial's identity: the configuration and the code that trains it
        (:func:`ielcore.codeprint.trial_identity`); what the platform stores as ``trial_hash``."""
        from ielcore.codeprint import trial_identity

        return trial_identity(self.to_dict())


def apply_overrides(config: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Return a deep copy of ``config`` with dotted-path overrides set (creating sections as needed).

    Setting ``<section>.type`` to a different type drops that section's other keys, so the new type's
    defaults apply instead of the old type's parameters.
    """
    out = copy.deepcopy(dict(config))
    # Type changes first, so a simultaneous "iel.type: tv" and "iel.steps: 5" keeps the step count.
    ordered = sorted(overrides.items(), key=lambda kv: (not str(kv[0]).endswith(".type"), str(kv[0])))
    for path, value in ordered:
        parts = str(path).split(".")
        node: dict[str, Any] = out
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = {}
                node[part] = child
            if not isinstance(child, dict):
                raise SpecError(
                    f"cannot set {path!r}: {'.'.join(parts[: i + 1])!r} is not a section", path=str(path)
                )
            node = child
        last = parts[-1]
        # Only component sections have per-type parameters; optimizer/schedule keys are shared by all types.
        if last == "type" and len(parts) == 2 and parts[0] in COMPONENT_KINDS and node.get("type") != value:
            keep = own_keys(parts[0])
            for key in [k for k in node if k not in keep]:
                del node[key]
        node[last] = copy.deepcopy(value)
    return out


def canonical_json(value: Any) -> str:
    """Deterministic JSON (sorted keys, no whitespace, floats as repr) used for hashing."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _integral_floats_as_ints(value: Any) -> Any:
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, str | int | None):
        return value
    if isinstance(value, dict | Mapping):
        return {k: _integral_floats_as_ints(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_integral_floats_as_ints(v) for v in value]
    return value


def config_hash(config: Mapping[str, Any]) -> str:
    """Content address of a resolved trial configuration (SHA-256 of its canonical JSON).

    Integral floats hash as integers, so configurations that compare equal (``rate: 0`` and
    ``rate: 0.0``) have the same identity.  Sections that cannot change the trained model
    (:data:`ielcore.schema.IDENTITY_EXCLUDED`: ``artifacts``) are left out.
    """
    kept = {k: v for k, v in config.items() if k not in IDENTITY_EXCLUDED}
    return hashlib.sha256(canonical_json(_integral_floats_as_ints(kept)).encode()).hexdigest()


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML trial configuration with the limits of every YAML file (:func:`ielcore.yamlio.load_yaml_file`)."""
    from ielcore.yamlio import load_yaml_file

    data: dict[str, Any] = load_yaml_file(path, what="trial configuration")
    return data


__all__ = [
    "IELError",
    "TrialConfig",
    "apply_overrides",
    "canonical_json",
    "config_hash",
    "load_config_file",
    "section_accepts",
]
