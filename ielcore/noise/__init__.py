"""Label-noise models: a registry and a builder.

``build_noise("block", rate=0.1, num_classes=3, seed=0, block=2)`` returns a :class:`LabelNoise`;
``noise(label, index, epoch)`` is a pure, seeded function of its arguments (see :mod:`.base`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ielcore._params import lookup, resolve_params
from ielcore.noise.base import LabelNoise, NoNoise, noise_seed
from ielcore.noise.block import BlockNoise
from ielcore.noise.boundary import BoundaryNoise
from ielcore.noise.erase import EraseNoise
from ielcore.noise.pixel import PixelNoise

NOISE_TYPES: dict[str, type[LabelNoise]] = {
    "none": NoNoise,
    "block": BlockNoise,
    "pixel": PixelNoise,
    "boundary": BoundaryNoise,
    "erase": EraseNoise,
}

_BUILD_ARGS = ("rate", "num_classes", "seed")


def resolve_noise_params(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` of noise model ``name`` checked against its signature, with every default filled in.

    ``rate``, ``num_classes`` and ``seed`` are arguments of :func:`build_noise`, not parameters.
    """
    cls = lookup(NOISE_TYPES, "noise model", name)
    return resolve_params(cls, params, kind=f"noise model {name!r}", skip=_BUILD_ARGS)


def build_noise(name: str, rate: float, num_classes: int, seed: int, **params: Any) -> LabelNoise:
    """Build noise model ``name``; unknown names/parameters and out-of-range values raise SpecError."""
    cls = lookup(NOISE_TYPES, "noise model", name)
    resolved = resolve_noise_params(name, params)
    return cls(rate=rate, num_classes=num_classes, seed=seed, **resolved)


__all__ = [
    "NOISE_TYPES",
    "BlockNoise",
    "BoundaryNoise",
    "EraseNoise",
    "LabelNoise",
    "NoNoise",
    "PixelNoise",
    "build_noise",
    "noise_seed",
    "resolve_noise_params",
]
