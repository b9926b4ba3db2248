"""Named arms: a factor whose levels are whole configuration sections, each with a name.

::

    arms:
      plain: {}
      heat_mild: {iel: {type: heat, dt: 0.05, steps: 10}}
      heat_authors: {iel: {type: heat, dt: 0.1, steps: 20}}
    factors: {noise.rate: [0.0, 0.2]}
    baseline: plain                      # or {arm: plain, ...} like any other baseline

Each arm is deep-merged into ``base`` (setting ``<section>.type`` to another type drops that section's
other keys, as a factor does).  The arms are the study's first factor, named :data:`ARM_FACTOR`
(``arm``), with the arm names as its values: cell keys read ``arm=heat_mild,noise.rate=0.2``, and
``exclude`` and ``baseline`` name arms as ``{arm: heat_mild}``.  An arm and a factor (or a searched
parameter) may not set the same configuration path.  Arm names are 1-64 characters from
``A-Z a-z 0-9 _ -``, starting with a letter or ``_`` (no dots, so ``--set arms.NAME.iel.dt=0.1`` is
unambiguous).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ielcore.errors import SpecError
from ielcore.fields import check_mapping
from ielcore.spec import TrialConfig, apply_overrides

ARM_FACTOR = "arm"
"""The name of the arms' factor in cell keys, ``exclude``/``baseline`` rules and the results database."""
ARM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")

Arms = tuple[tuple[str, Mapping[str, Any]], ...]
"""``((name, {dotted config path: value}), ...)`` in the order the document lists them."""


def flatten_section(section: Mapping[str, Any]) -> dict[str, Any]:
    """``{iel: {type: heat, dt: 0.1}, epochs: 3}`` -> ``{"iel.type": "heat", "iel.dt": 0.1, "epochs": 3}``.

    Configuration paths have at most two levels (``section.key``), so values below a key stay whole.
    """
    out: dict[str, Any] = {}
    for key, value in section.items():
        if isinstance(value, Mapping):
            for sub, item in value.items():
                out[f"{key}.{sub}"] = item
        else:
            out[str(key)] = value
    return out


def parse_arms(raw: Any, base: Mapping[str, Any]) -> Arms:
    """Check the ``arms:`` mapping (names, and each arm merged into ``base`` is a valid configuration)."""
    if raw is None:
        return ()
    m = check_mapping(raw, "arms", required=True)
    if len(m) < 2:
        raise SpecError(
            f"give at least two arms to compare (got {len(m)}), e.g. "
            "{plain: {}, heat: {iel: {type: heat, dt: 0.1, steps: 10}}}",
            path="arms",
        )
    arms = []
    for name, section in m.items():
        where = f"arms.{name}"
        if not ARM_NAME.fullmatch(name):
            raise SpecError(
                f"invalid arm name {name!r}; use 1-64 characters from A-Z a-z 0-9 _ -, starting with a "
                "letter or _ (no dots or spaces)",
                path=where,
            )
        section = check_mapping(section, where, required=True)
        for key, value in section.items():
            if isinstance(value, Mapping):
                check_mapping(value, f"{where}.{key}")
        flat = flatten_section(section)
        if "seed" in flat:
            raise SpecError(
                "the seed is varied by 'seeds:' (replicates), not by an arm; remove it here",
                path=f"{where}.seed",
            )
        try:
            TrialConfig.from_dict(apply_overrides(base, flat))
        except SpecError as e:
            raise e.located(path_prefix=where) from None
        arms.append((name, flat))
    return tuple(arms)


def check_arm_conflicts(arms: Arms, origins: Mapping[str, str], searched: tuple[str, ...]) -> None:
    """An arm and a factor (``origins``: path -> where it is set) or a searched parameter set one path."""
    if ARM_FACTOR in origins and arms:
        raise SpecError(
            f"{ARM_FACTOR!r} is the factor of the named arms; remove it from {origins[ARM_FACTOR]} and "
            "list the arms under 'arms:'",
            path=f"{origins[ARM_FACTOR]}.{ARM_FACTOR}",
        )
    for name, flat in arms:
        for path in flat:
            if path in origins:
                raise SpecError(
                    f"arm {name!r} sets {path!r}, which is also a factor ({origins[path]}.{path}); a path is set "
                    "by the arms or by a factor, not both: move the values into every arm, or drop the "
                    "path from the arm",
                    path=f"arms.{name}.{path}",
                )
            if path in searched:
                raise SpecError(
                    f"arm {name!r} sets {path!r}, which is also searched (search.params.{path}); a path is "
                    "either set by the arms or searched: remove one",
                    path=f"arms.{name}.{path}",
                )


def parse_baseline_arm(raw: Any, arms: Arms) -> Any:
    """``baseline: plain`` (a bare arm name) means ``{arm: plain}``; any other value is returned as is."""
    if not isinstance(raw, str):
        return raw
    names = [n for n, _ in arms]
    if not arms:
        raise SpecError(
            f"baseline {raw!r} names an arm, but the study has no 'arms:'; give the baseline as "
            "factor: value pairs, e.g. {iel.type: none}, or add named arms",
            path="baseline",
        )
    if raw not in names:
        raise SpecError(f"{raw!r} is not an arm; the arms are: {', '.join(names)}", path="baseline")
    return {ARM_FACTOR: raw}


__all__ = [
    "ARM_FACTOR",
    "ARM_NAME",
    "Arms",
    "check_arm_conflicts",
    "flatten_section",
    "parse_arms",
    "parse_baseline_arm",
]
