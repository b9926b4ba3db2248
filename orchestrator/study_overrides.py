"""``iel submit STUDY --set KEY=VALUE``: change a study document without copying the file (as Hydra).

``VALUE`` is read as YAML by the study files' strict loader (:func:`ielcore.yamlio.parse_yaml_text`):
``2``, ``0.1``, ``heat``, ``null``, ``[0.0, 0.2]``, ``{adaptive: {start: 3, max: 40}}``.  ``KEY`` is a
dotted path into the document whose first segment is a top-level key (``base``, ``arms``, ``factors``,
``seeds``, ``search``, ...).  What follows depends on that key:

- ``factors.<path>``: the rest is ONE key, the factor's configuration path:
  ``factors.noise.rate=[0.0,0.2]`` sets the factor ``noise.rate``;
- ``search.params.<path>``: the rest is one key, the searched path (``search.params.optimizer.lr=
  {type: float, low: 1e-4, high: 1e-2}``), except that a last segment ``type``, ``low``, ``high``,
  ``log``, ``step`` or ``choices`` after a parameter the document already has sets that field
  (``search.params.optimizer.lr.high=0.1``);
- ``arms.<name>``: the next segment is one arm name (arm names have no dots), the rest nested in it
  (``arms.heat_mild.iel.dt=0.02``);
- anything else (``base.iel.dt``, ``seeds.adaptive.max``, ``decide.margin``, ``resources.gpus``) is
  nested: each segment a key of a mapping, created when missing.

Lists (``zip``, ``exclude``, ``seeds: [..]``) are set whole (``--set 'exclude=[{iel.type: none}]'``).
Overrides apply in order (a later one wins) before the document is validated; the study records them
(:attr:`orchestrator.study.StudySpec.overrides`), its plan shows them, and they are part of its version.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from ielcore.errors import SpecError

MAX_OVERRIDE_CHARS = 10_000
PARAM_FIELDS = ("type", "low", "high", "log", "step", "choices")
_ONE_KEY = ("factors",)


def _top_keys() -> tuple[str, ...]:
    from orchestrator.study import _TOP_KEYS

    return _TOP_KEYS


def split_override(override: str) -> tuple[list[str], Any]:
    """``"base.epochs=2"`` -> ``(["base", "epochs"], 2)`` with the value parsed as YAML (not yet placed)."""
    from ielcore.yamlio import parse_yaml_text

    if not isinstance(override, str) or "=" not in override:
        raise SpecError(
            f"malformed override {override!r}: write KEY=VALUE with a dotted KEY, e.g. --set base.epochs=2 "
            "or --set 'factors.noise.rate=[0.0, 0.2]'",
            path="--set",
        )
    if len(override) > MAX_OVERRIDE_CHARS:
        raise SpecError(
            f"the override {override[:40]!r}... is over {MAX_OVERRIDE_CHARS} characters; put long values in "
            "the study file",
            path="--set",
        )
    key, _, text = override.partition("=")
    key = key.strip()
    parts = key.split(".")
    if not key or any(not p.strip() or p != p.strip() for p in parts):
        raise SpecError(
            f"malformed key {key!r} in override {override!r}: a key is dotted names without spaces, e.g. "
            "base.epochs or factors.noise.rate",
            path="--set",
        )
    if not text.strip():
        raise SpecError(
            f"override {override!r} has no value; write a value after '=' (null to clear a setting)",
            path="--set",
        )
    try:
        value = parse_yaml_text(text)
    except SpecError as e:
        raise SpecError(
            f"the value of override {override!r} is not valid YAML: {e.message}", path="--set"
        ) from None
    return parts, value


def apply_overrides(doc: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A deep copy of the study document ``doc`` with ``overrides`` (``KEY=VALUE`` strings) applied in order.

    Raises :class:`SpecError` (field ``--set``) naming the override and the fix: a missing ``=``, an
    unknown top-level key, or a path through a value that is not a mapping.
    """
    out = copy.deepcopy(dict(doc))
    for override in overrides:
        parts, value = split_override(override)
        top = parts[0]
        if top not in _top_keys():
            raise SpecError(
                f"override {override!r}: unknown top-level key {top!r}; a key starts with one of: "
                f"{', '.join(_top_keys())} (e.g. base.epochs=2)",
                path="--set",
            )
        _set(out, _keys(out, parts), value, override)
    return out


def _keys(doc: Mapping[str, Any], parts: list[str]) -> list[str]:
    """The mapping keys an override's dotted path names (see the module docstring)."""
    top, rest = parts[0], parts[1:]
    if top in _ONE_KEY and rest:
        return [top, ".".join(rest)]
    if top == "search" and len(rest) >= 2 and rest[0] == "params":
        path = ".".join(rest[1:])
        params = doc.get("search", {}).get("params") if isinstance(doc.get("search"), Mapping) else None
        head = ".".join(rest[1:-1])
        if rest[-1] in PARAM_FIELDS and head and isinstance(params, Mapping) and head in params:
            return ["search", "params", head, rest[-1]]
        return ["search", "params", path]
    return parts


def _set(doc: dict[str, Any], keys: list[str], value: Any, override: str) -> None:
    node: dict[str, Any] = doc
    for i, key in enumerate(keys[:-1]):
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            where = ".".join(keys[: i + 1])
            raise SpecError(
                f"override {override!r}: {where!r} is {child!r}, not a mapping, so it has no key "
                f"{keys[i + 1]!r}; set {where!r} whole instead, e.g. --set '{where}=...'",
                path="--set",
            )
        node = child
    node[keys[-1]] = value


__all__ = ["MAX_OVERRIDE_CHARS", "PARAM_FIELDS", "apply_overrides", "split_override"]
