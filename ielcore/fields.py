"""Small field checkers shared by the trial configuration and the study specification.

Each checker returns the checked value or raises :class:`~ielcore.errors.SpecError` with the field
``path``, naming the bad value and what is valid.  :func:`check_plain` bounds a loaded document (number
of values, nesting) and keeps it JSON-compatible; :func:`same_value` is the equality used to compare
factor values (booleans apart from numbers).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ielcore.errors import SpecError

MAX_NODES = 100_000
MAX_DEPTH = 64


def join(prefix: str, key: object) -> str:
    """``prefix.key`` (or ``key`` at the top level)."""
    return f"{prefix}.{key}" if prefix else str(key)


def check_int(value: Any, path: str, low: int | None = None, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"expected an integer but got {value!r}", path=path)
    too_low, too_high = low is not None and value < low, high is not None and value > high
    if too_low or too_high:
        bound = f">= {low}" if too_low else f"<= {high}"
        valid = f" (valid: {low}..{high})" if low is not None and high is not None else ""
        raise SpecError(f"must be {bound}{valid} but got {value}", path=path)
    return value


def check_float(
    value: Any, path: str, low: float | None = None, *, low_open: bool = False, hint: str = ""
) -> float:
    """A finite number (``int`` or ``float``, not ``bool``) ``>= low`` (``> low`` with ``low_open``)."""
    note = f" ({hint})" if hint else ""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpecError(f"expected a number{note} but got {value!r}", path=path)
    value = float(value)
    if not math.isfinite(value):
        raise SpecError(f"must be finite but got {value}{note}", path=path)
    if low is not None and (value <= low if low_open else value < low):
        raise SpecError(f"must be {'>' if low_open else '>='} {low} but got {value}{note}", path=path)
    return value


def check_choice(value: Any, path: str, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise SpecError(f"unknown value {value!r}; valid values are: {', '.join(choices)}", path=path)
    return value


def check_bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise SpecError(f"expected true or false but got {value!r}", path=path)
    return value


def check_mapping(value: Any, path: str, *, required: bool = False) -> dict[str, Any]:
    """A mapping with string keys (``None`` is an empty mapping unless ``required``)."""
    if value is None and not required:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(f"expected a mapping (key: value pairs) but got {value!r}", path=path or None)
    for key in value:
        if not isinstance(key, str):
            raise SpecError(f"keys must be strings but got {key!r}; quote it", path=join(path, key))
    return dict(value)


def check_keys(
    m: Mapping[str, Any], path: str, allowed: tuple[str, ...], required: tuple[str, ...] = ()
) -> None:
    for key in m:
        if key not in allowed:
            raise SpecError(
                f"unknown key {key!r}; valid keys are: {', '.join(allowed)}", path=join(path, key)
            )
    for key in required:
        if key not in m:
            raise SpecError(f"missing required key {key!r}", path=join(path, key))


def check_plain(value: Any, path: str = "", *, _state: list[int] | None = None, _depth: int = 0) -> None:
    """Every key a string (or an integer, e.g. a mask-value mapping), every value JSON-compatible.

    Values are null, booleans, integers (``|n| <= 2**63``), finite floats, strings, lists and mappings;
    at most :data:`MAX_NODES` values (YAML aliases counted at every use) and :data:`MAX_DEPTH` levels.
    """
    state = [0] if _state is None else _state
    state[0] += 1
    if state[0] > MAX_NODES or _depth > MAX_DEPTH:
        raise SpecError(
            f"the document is too large or too deeply nested (over {MAX_NODES} values, YAML aliases "
            f"counted at every use, or {MAX_DEPTH} levels); simplify it",
            path=path or None,
        )
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str | int) or isinstance(key, bool):
                raise SpecError(f"keys must be strings but got {key!r}; quote it", path=join(path, key))
            check_plain(item, join(path, key), _state=state, _depth=_depth + 1)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            check_plain(item, f"{path}[{i}]", _state=state, _depth=_depth + 1)
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**63:
        raise SpecError(f"integer {value} is too large (limit 2**63)", path=path or None)
    elif isinstance(value, float) and not math.isfinite(value):
        raise SpecError(f"non-finite number {value!r}; give a finite number", path=path or None)
    elif value is not None and not isinstance(value, bool | int | float | str):
        raise SpecError(
            f"unsupported value {value!r} of type {type(value).__name__}; use plain YAML values",
            path=path or None,
        )


def same_value(a: Any, b: Any) -> bool:
    """Equality that keeps booleans apart from numbers (``True != 1``) but lets ``0 == 0.0``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    return bool(type(a) is type(b) or (_is_num(a) and _is_num(b))) and a == b


def _is_num(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


__all__ = [
    "MAX_DEPTH",
    "MAX_NODES",
    "check_bool",
    "check_choice",
    "check_float",
    "check_int",
    "check_keys",
    "check_mapping",
    "check_plain",
    "join",
    "same_value",
]
