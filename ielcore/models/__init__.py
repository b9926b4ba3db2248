"""Segmentation models: a registry of networks ``(B, in_channels, H, W) -> (B, num_classes, H, W)`` logits.

Every model is a class ``Model(in_channels, num_classes, *, **params)`` whose keyword parameters (with
defaults) are its configuration.  All of them accept any ``H×W`` (the U-Net pads to a multiple of
``2**depth`` internally and crops the logits back; the PDE-CNNs work at full resolution).

- ``"unet"``: :class:`~ielcore.models.unet.UNet` (``width=64, depth=4``: the IEL authors' 31.03 M network).
- ``"parabolic"``, ``"hamiltonian"``, ``"second_order"``: PDE-CNNs of Ruthotto & Haber
  (:mod:`ielcore.models.pdecnn`; ``width=16, units=2, steps_per_unit=3, dt=0.1, normalization="pixel"``).

Adding a model = one module + one line in :data:`MODEL_TYPES`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from ielcore._params import lookup, resolve_params
from ielcore.models.pdecnn import (
    HamiltonianNet,
    ParabolicNet,
    PDEClassifier,
    SecondOrderNet,
    paper_classifier,
)
from ielcore.models.unet import UNet

MODEL_TYPES: dict[str, type[nn.Module]] = {
    "unet": UNet,
    "parabolic": ParabolicNet,
    "hamiltonian": HamiltonianNet,
    "second_order": SecondOrderNet,
}

_POSITIONAL = ("in_channels", "num_classes")


def resolve_model_params(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` with every default filled in (for hashing); unknown names or parameters raise :class:`SpecError`."""
    cls = lookup(MODEL_TYPES, "model", name)
    return resolve_params(cls, params, kind=f"model {name!r}", skip=_POSITIONAL)


def build_model(name: str, in_channels: int, num_classes: int, **params: Any) -> nn.Module:
    """Build model ``name`` of :data:`MODEL_TYPES`, mapping ``(B, in_channels, H, W)`` to ``(B, num_classes, H, W)``."""
    cls = lookup(MODEL_TYPES, "model", name)
    resolved = resolve_params(cls, params, kind=f"model {name!r}", skip=_POSITIONAL)
    return cls(in_channels, num_classes, **resolved)


__all__ = [
    "MODEL_TYPES",
    "HamiltonianNet",
    "PDEClassifier",
    "ParabolicNet",
    "SecondOrderNet",
    "UNet",
    "build_model",
    "paper_classifier",
    "resolve_model_params",
]
