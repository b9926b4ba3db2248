"""Training losses on logits ``z`` (``[B, C, H, W]``) and labels ``y`` (``[B, H, W]``).

- ``ce``: mean cross-entropy ``CE(z, y)``.
- ``ce_dice``: ``CE(z, y) + dice_weight * (1 - SoftDice(softmax(z), y))``, soft Dice over the foreground
  classes ``1..C-1`` (the authors' DRIVE setting).
- ``smooth``: ``CE(z, y) + lam * mean(|grad z|^2)`` -- the authors' gradient-smoothing baseline.

With an IEL the loss is applied to the IEL's output instead of ``z``; nothing here knows about IELs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ielcore._params import lookup, resolve_params
from ielcore.errors import SpecError

PADDINGS = ("zero", "replicate")


def _check_weight(value: object, path: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
        raise SpecError(f"{path} must be a finite number >= 0, but got {path}={value!r}", path=path)
    return float(value)


class SegLoss(nn.Module):
    """Base: checks ``logits [B, C, H, W]`` against ``target [B, H, W]`` and ``num_classes``."""

    def __init__(self, *, num_classes: int) -> None:
        super().__init__()
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
            raise SpecError(
                f"num_classes must be an integer >= 2, but got {num_classes!r}", path="num_classes"
            )
        self.num_classes = num_classes

    def _check(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        if logits.ndim != 4 or logits.shape[1] != self.num_classes or target.shape != logits[:, 0].shape:
            raise SpecError(
                f"expected logits [B, {self.num_classes}, H, W] and target [B, H, W], "
                f"got {tuple(logits.shape)} and {tuple(target.shape)}",
                path="logits",
            )


class CrossEntropyLoss(SegLoss):
    """``CE(z, y) = mean over pixels of -log softmax(z)_y``."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self._check(logits, target)
        return F.cross_entropy(logits, target)


def soft_dice(probs: torch.Tensor, target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Mean soft Dice over foreground classes ``k >= 1``, pooled over the batch.

    ``D_k = (2 sum_{b,i} p_k y_k + eps) / (sum p_k + sum y_k + eps)`` with ``y_k`` the one-hot labels.
    """
    onehot = F.one_hot(target, probs.shape[1]).permute(0, 3, 1, 2).to(probs.dtype)  # (B, C, H, W)
    p, y = probs[:, 1:], onehot[:, 1:]
    inter = (p * y).sum(dim=(0, 2, 3))
    sets = p.sum(dim=(0, 2, 3)) + y.sum(dim=(0, 2, 3))
    return ((2.0 * inter + eps) / (sets + eps)).mean()


class CEDiceLoss(SegLoss):
    """``CE(z, y) + dice_weight * (1 - D)`` with ``D`` the foreground soft Dice of ``softmax(z)``."""

    def __init__(self, *, num_classes: int, dice_weight: float = 1.0) -> None:
        super().__init__(num_classes=num_classes)
        self.dice_weight = _check_weight(dice_weight, "dice_weight")

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self._check(logits, target)
        dice = soft_dice(torch.softmax(logits, dim=1), target)
        return F.cross_entropy(logits, target) + self.dice_weight * (1.0 - dice)


class SmoothingLoss(SegLoss):
    """Gradient-smoothing baseline: ``CE(z, y) + lam * mean_{b,c,i,j}(|D_x z|^2 + |D_y z|^2)``.

    Backward differences ``D_x z[i, j] = z[i, j] - z[i, j-1]``, ``D_y z[i, j] = z[i, j] - z[i-1, j]``.
    ``padding="zero"`` (the authors') sets ``z[i, -1] = z[-1, j] = 0``, so the first row and column
    also penalise ``z^2``; ``"replicate"`` makes those differences zero.
    """

    def __init__(self, *, num_classes: int, lam: float = 2.0, padding: str = "zero") -> None:
        super().__init__(num_classes=num_classes)
        self.lam = _check_weight(lam, "lam")
        if padding not in PADDINGS:
            raise SpecError(
                f"unknown padding {padding!r}; valid paddings are: {', '.join(PADDINGS)}", path="padding"
            )
        self.padding = padding

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self._check(logits, target)
        h, w = logits.shape[-2:]
        mode = "constant" if self.padding == "zero" else "replicate"
        left = F.pad(logits, (1, 0, 0, 0), mode=mode)[..., :, :w]
        up = F.pad(logits, (0, 0, 1, 0), mode=mode)[..., :h, :]
        penalty = ((logits - left) ** 2 + (logits - up) ** 2).mean()
        return F.cross_entropy(logits, target) + self.lam * penalty


LOSS_TYPES: dict[str, type[SegLoss]] = {
    "ce": CrossEntropyLoss,
    "ce_dice": CEDiceLoss,
    "smooth": SmoothingLoss,
}


def resolve_loss_params(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` of loss ``name`` checked against its signature, with defaults filled in (no ``num_classes``)."""
    cls = lookup(LOSS_TYPES, "loss", name)
    return resolve_params(cls, params, kind=f"loss {name!r}", skip=("num_classes",))


def build_loss(name: str, num_classes: int, **params: Any) -> SegLoss:
    """Build loss ``name``: a module called as ``loss(logits [B, C, H, W], target [B, H, W]) -> scalar``."""
    cls = lookup(LOSS_TYPES, "loss", name)
    return cls(num_classes=num_classes, **resolve_loss_params(name, params))
