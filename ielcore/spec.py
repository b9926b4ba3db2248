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
    noop:      {sleep_s: 0.0, fail_at_epoch: null, diverge_at_epoch: null}

Component sections (``data``, ``noise``, ``model``, ``iel``, ``loss``) carry a ``type`` and that type's
own parameters; they are checked against the component's signature, so unknown keys are errors and the
resolved configuration lists every parameter with its default.  That resolved form is what is hashed
(:func:`config_hash`) to give a trial its identity.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ielcore.errors import IELError, SpecError, StabilityError

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("constant", "cosine", "step", "plateau")
DEVICES = ("auto", "cpu", "cuda")
KINDS = ("train", "noop")

_TOP_DEFAULTS: dict[str, Any] = {
    "kind": "train",
    "seed": 0,
    "device": "auto",
    "amp": False,
    "epochs": 5,
    "batch_size": 4,
}
_SECTION_DEFAULTS: dict[str, dict[str, Any]] = {
    "data": {"type": "cells", "val_fraction": 0.25, "seed": None},
    "noise": {"type": "none", "rate": 0.0},
    "model": {"type": "unet", "width": 16, "depth": 3},
    "iel": {"type": "none"},
    "loss": {"type": "ce"},
    "label_smoothing": {"steps": 0, "dt": 0.1},
    "optimizer": {"type": "adam", "lr": 1e-3, "weight_decay": 0.0, "momentum": 0.9},
    "schedule": {"type": "constant", "step_size": 10, "gamma": 0.5, "patience": 3, "factor": 0.5, "min_lr": 0.0},
    "artifacts": {"checkpoint": True, "prediction_grid": True},
    "noop": {"sleep_s": 0.0, "fail_at_epoch": None, "diverge_at_epoch": None},
}
# Keys of a component section consumed by the trainer itself, not passed to the component's builder.
_OWN_KEYS = {"data": ("type", "val_fraction", "seed"), "noise": ("type", "rate")}
_COMPONENT_SECTIONS = ("data", "noise", "model", "iel", "loss")


def _frozen(value: Any) -> Any:
    """Deep copy into plain JSON-like containers (dicts stay dicts; tuples become lists)."""
    return json.loads(json.dumps(value))


def _check_int(value: Any, path: str, low: int | None = None, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"expected an integer but got {value!r}", path=path)
    if low is not None and value < low:
        raise SpecError(f"must be >= {low} but got {value}", path=path)
    if high is not None and value > high:
        raise SpecError(f"must be <= {high} but got {value}", path=path)
    return value


def _check_float(value: Any, path: str, low: float | None = None, *, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(f"expected a number but got {value!r}", path=path)
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise SpecError(f"must be finite but got {value}", path=path)
    if low is not None and (value <= low if low_open else value < low):
        raise SpecError(f"must be {'>' if low_open else '>='} {low} but got {value}", path=path)
    return value


def _check_choice(value: Any, path: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise SpecError(f"unknown value {value!r}; valid values are: {', '.join(choices)}", path=path)
    return str(value)


def _check_bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise SpecError(f"expected true or false but got {value!r}", path=path)
    return value


def _section(raw: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = raw.get(name, {})
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise SpecError(f"expected a mapping but got {type(value).__name__} {value!r}", path=name)
    return dict(value)


def _resolve_component(
    section: str, values: dict[str, Any], resolver: Callable[[str, Mapping[str, Any]], dict[str, Any]]
) -> dict[str, Any]:
    own = {k: values[k] for k in _OWN_KEYS.get(section, ("type",)) if k in values}
    params = {k: v for k, v in values.items() if k not in own}
    try:
        resolved = resolver(str(own["type"]), params)
    except SpecError as e:
        raise e.located(path_prefix=section) from None
    return {**own, **resolved}


def _resolvers() -> dict[str, Callable[[str, Mapping[str, Any]], dict[str, Any]]]:
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
        known = set(_TOP_DEFAULTS) | set(_SECTION_DEFAULTS)
        unknown = sorted(str(k) for k in raw if k not in known)
        if unknown:
            raise SpecError(
                f"unknown key {unknown[0]!r}; valid keys are: {', '.join(sorted(known))}", path=unknown[0]
            )
        top = {**_TOP_DEFAULTS, **{k: raw[k] for k in _TOP_DEFAULTS if k in raw}}
        kind = _check_choice(top["kind"], "kind", KINDS)
        seed = _check_int(top["seed"], "seed", 0, 2**31 - 1)
        device = _check_choice(top["device"], "device", DEVICES)
        amp = _check_bool(top["amp"], "amp")
        epochs = _check_int(top["epochs"], "epochs", 1, 100_000)
        batch_size = _check_int(top["batch_size"], "batch_size", 1, 1_000_000)

        sections: dict[str, dict[str, Any]] = {}
        for name, defaults in _SECTION_DEFAULTS.items():
            given = _section(raw, name)
            merged = {**defaults, **given} if name not in ("data", "noise", "model", "iel", "loss") else None
            if merged is None:
                # Component sections: defaults of another type must not leak in when the type changes.
                base = dict(defaults) if given.get("type", defaults["type"]) == defaults["type"] else {
                    k: v for k, v in defaults.items() if k in _OWN_KEYS.get(name, ("type",))
                }
                merged = {**base, **given}
            else:
                bad = sorted(set(given) - set(defaults))
                if bad:
                    raise SpecError(
                        f"unknown key {bad[0]!r}; valid keys are: {', '.join(sorted(defaults))}",
                        path=f"{name}.{bad[0]}",
                    )
            sections[name] = merged

        if kind == "train":
            resolvers = _resolvers()
            for name, resolver in resolvers.items():
                sections[name] = _resolve_component(name, sections[name], resolver)
        data = sections["data"]
        _check_float(data.get("val_fraction"), "data.val_fraction", 0.0, low_open=True)
        if data["val_fraction"] >= 1:
            raise SpecError(f"must be < 1 but got {data['val_fraction']}", path="data.val_fraction")
        if data.get("seed") is not None:
            _check_int(data["seed"], "data.seed", 0)
        rate = _check_float(sections["noise"].get("rate"), "noise.rate", 0.0)
        if rate > 1:
            raise SpecError(f"a noise rate is a probability in [0, 1] but got {rate}", path="noise.rate")
        ls = sections["label_smoothing"]
        _check_int(ls["steps"], "label_smoothing.steps", 0, 100_000)
        _check_float(ls["dt"], "label_smoothing.dt", 0.0, low_open=True)
        if ls["steps"] > 0 and ls["dt"] > 1.0:
            raise StabilityError(
                f"forward heat smoothing of the labels is unstable with dt={ls['dt']}: the explicit scheme with "
                "the 5-point Laplacian / 4 is stable only for dt <= 1; lower label_smoothing.dt (and raise "
                "label_smoothing.steps to keep the same smoothing time)",
                path="label_smoothing.dt",
            )
        opt = sections["optimizer"]
        _check_choice(opt["type"], "optimizer.type", OPTIMIZERS)
        _check_float(opt["lr"], "optimizer.lr", 0.0, low_open=True)
        _check_float(opt["weight_decay"], "optimizer.weight_decay", 0.0)
        _check_float(opt["momentum"], "optimizer.momentum", 0.0)
        sch = sections["schedule"]
        _check_choice(sch["type"], "schedule.type", SCHEDULES)
        _check_int(sch["step_size"], "schedule.step_size", 1)
        _check_int(sch["patience"], "schedule.patience", 0)
        for key in ("gamma", "factor"):
            _check_float(sch[key], f"schedule.{key}", 0.0, low_open=True)
        _check_float(sch["min_lr"], "schedule.min_lr", 0.0)
        for key in ("checkpoint", "prediction_grid"):
            _check_bool(sections["artifacts"][key], f"artifacts.{key}")
        noop = sections["noop"]
        _check_float(noop["sleep_s"], "noop.sleep_s", 0.0)
        for key in ("fail_at_epoch", "diverge_at_epoch"):
            if noop[key] is not None:
                _check_int(noop[key], f"noop.{key}", 1)
        return cls(kind=kind, seed=seed, device=device, amp=amp, epochs=epochs, batch_size=batch_size,
                   **{k: _frozen(v) for k, v in sections.items()})

    def to_dict(self) -> dict[str, Any]:
        """The resolved configuration as a plain nested dict (a deep copy)."""
        out: dict[str, Any] = {k: getattr(self, k) for k in _TOP_DEFAULTS}
        for name in _SECTION_DEFAULTS:
            out[name] = copy.deepcopy(dict(getattr(self, name)))
        return out

    def replace(self, overrides: Mapping[str, Any]) -> TrialConfig:
        """A new configuration with dotted-path overrides applied (``{"iel.steps": 5}``) and re-validated."""
        return TrialConfig.from_dict(apply_overrides(self.to_dict(), overrides))

    @property
    def hash(self) -> str:
        return config_hash(self.to_dict())


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
        if last == "type" and len(parts) == 2 and parts[0] in _COMPONENT_SECTIONS and node.get("type") != value:
            keep = _OWN_KEYS.get(parts[0], ("type",))
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
    ``rate: 0.0``) have the same identity.
    """
    return hashlib.sha256(canonical_json(_integral_floats_as_ints(config)).encode()).hexdigest()


def load_config_file(path: str) -> dict[str, Any]:
    """Read a YAML trial configuration safely (no Python object tags)."""
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except FileNotFoundError as e:
        raise SpecError(f"file not found: {path}; check the path") from e
    except UnicodeDecodeError as e:
        raise SpecError(f"{path} is not UTF-8 text ({e.reason}); save it as UTF-8") from e
    except yaml.YAMLError as e:
        raise SpecError(f"{path} is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a trial configuration must be a YAML mapping, got {type(data).__name__}")
    return data


__all__ = ["TrialConfig", "apply_overrides", "config_hash", "canonical_json", "load_config_file", "IELError"]


def section_accepts(section: str, type_name: str, key: str) -> bool:
    """Whether ``key`` is meaningful in component ``section`` of type ``type_name``.

    ``section_accepts("iel", "none", "steps")`` is False: a factor ``iel.steps`` does not apply to the
    identity IEL, so an ablation grid collapses those cells into one.
    """
    from ielcore._params import signature_params

    own = _OWN_KEYS.get(section, ("type",))
    if key in own:
        return True
    registries = _registries()
    if section not in registries:
        return key in _SECTION_DEFAULTS.get(section, {})
    factory = registries[section].get(type_name)
    if factory is None:
        return False
    return key in signature_params(factory)


def _registries() -> dict[str, Mapping[str, Any]]:
    from ielcore.data import DATASET_TYPES
    from ielcore.iel import IEL_TYPES
    from ielcore.losses import LOSS_TYPES
    from ielcore.models import MODEL_TYPES
    from ielcore.noise import NOISE_TYPES

    return {"data": DATASET_TYPES, "noise": NOISE_TYPES, "model": MODEL_TYPES, "iel": IEL_TYPES, "loss": LOSS_TYPES}
