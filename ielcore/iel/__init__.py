"""Inverse evolution layers: a registry of PDE types and a builder.

``build_iel("heat", dt=0.1, steps=20)`` returns an :class:`IEL` (see :mod:`.base` for the contract).
Adding a PDE type: one module with an :class:`IEL` subclass, and one line in :data:`IEL_TYPES`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ielcore._params import lookup, resolve_params
from ielcore.iel.base import IEL, ExplicitIEL
from ielcore.iel.convex import ConvexIEL, Pockets, detect_pockets
from ielcore.iel.heat import HeatIEL
from ielcore.iel.mcf import MeanCurvatureIEL
from ielcore.iel.none import IdentityIEL
from ielcore.iel.perona_malik import PeronaMalikIEL
from ielcore.iel.tv import TVIEL

IEL_TYPES: dict[str, type[IEL]] = {
    "none": IdentityIEL,
    "heat": HeatIEL,
    "convex": ConvexIEL,
    "tv": TVIEL,
    "mcf": MeanCurvatureIEL,
    "perona_malik": PeronaMalikIEL,
}


def resolve_iel_params(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` of IEL type ``name`` checked against its signature, with every default filled in."""
    cls = lookup(IEL_TYPES, "IEL type", name)
    return resolve_params(cls, params, kind=f"IEL type {name!r}")


def build_iel(name: str, **params: Any) -> IEL:
    """Build IEL type ``name``; unknown names/parameters and out-of-range values raise SpecError."""
    cls = lookup(IEL_TYPES, "IEL type", name)
    return cls(**resolve_iel_params(name, params))


__all__ = [
    "IEL",
    "IEL_TYPES",
    "TVIEL",
    "ConvexIEL",
    "ExplicitIEL",
    "HeatIEL",
    "IdentityIEL",
    "MeanCurvatureIEL",
    "PeronaMalikIEL",
    "Pockets",
    "build_iel",
    "detect_pockets",
    "resolve_iel_params",
]
