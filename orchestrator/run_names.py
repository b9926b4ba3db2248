"""Short, readable MLflow run names: ``heat dt0.05 N10 · noise 0.4 · seed 3``; ``heat_mild · noise 0.4``.

A cell's factors are grouped by section (the first part of the path).  A section with a ``type`` shows the
type first, then its other factors as ``<short name><value>`` (``steps`` is ``N``); a section without one
shows its name, and a single factor's bare value (``noise 0.4``).  Named arms (the ``arm`` factor) show the
arm's name.  Full keys stay in the runs' tags (``iel.cell``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

SEP = " · "
_SHORT = {"steps": "N", "rate": "", "type": ""}
_ARM_FACTOR = "arm"


def _value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def cell_label(factors: Mapping[str, Any]) -> str:
    """The short name of a cell (``base`` when it has no factors)."""
    sections: dict[str, dict[str, Any]] = {}
    for path, value in factors.items():
        section, _, leaf = path.partition(".")
        sections.setdefault(section, {})[leaf] = value
    parts: list[str] = []
    for section, leaves in sections.items():
        if section == _ARM_FACTOR and "" in leaves:
            parts.append(_value(leaves[""]))
            continue
        words: list[str] = []
        if "type" in leaves:
            words.append(_value(leaves["type"]))
        elif len(leaves) == 1:
            parts.append(f"{section} {_value(next(iter(leaves.values())))}")
            continue
        else:
            words.append(section)
        for leaf, value in leaves.items():
            if leaf == "type":
                continue
            short = _SHORT.get(leaf, leaf.rsplit(".", 1)[-1])
            words.append(f"{short}{_value(value)}")
        parts.append(" ".join(words))
    return SEP.join(parts) or "base"


def trial_label(factors: Mapping[str, Any], seed: int, search_index: int | None = None) -> str:
    """``<cell label> · seed 3`` (`` · #k`` for the k-th search trial)."""
    tail = f"{SEP}seed {seed}" + (f"{SEP}#{search_index}" if search_index is not None else "")
    return cell_label(factors) + tail
