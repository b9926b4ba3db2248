"""The identity IEL (the "no IEL" arm of an ablation)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ielcore.iel.base import IEL


class IdentityIEL(IEL):
    """No evolution: ``forward(z)`` returns ``z`` itself.  ``P(u) = 0``; gain 1; takes no parameters."""

    gain_formula = "1"

    def __init__(self) -> None:
        super().__init__()

    @property
    def max_stable_dt(self) -> float:
        return math.inf

    def forward(self, z: Tensor) -> Tensor:
        return z

    def rhs(self, u: Tensor) -> Tensor:
        return torch.zeros_like(u)

    def evolve_inverse(self, u: Tensor) -> Tensor:
        return u

    def evolve_forward(self, u: Tensor, steps: int | None = None, dt: float | None = None) -> Tensor:
        return u

    def worst_case_gain(self) -> float:
        return 1.0
