"""What a training run works on and hands back: its data split, its per-epoch reporter, its result.

These types have no dependency on the trainer, so the trainer (:mod:`ielcore.train`), the fused trainer,
the no-op trial and the artifact writer all share them without importing each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import torch

from ielcore.states import RunStatus


class Reporter(Protocol):
    """Receives per-epoch metrics; returning False asks the trainer to stop (pruning, timeout)."""

    def report(self, epoch: int, metrics: Mapping[str, float]) -> bool: ...


@dataclass
class TrialData:
    """A run's dataset and its train/validation split."""

    images: torch.Tensor  # (N, Cin, H, W)
    clean: torch.Tensor  # (N, H, W) clean labels
    train_idx: list[int]
    val_idx: list[int]
    num_classes: int


@dataclass(frozen=True)
class TrialResult:
    """What one run produced: a frozen snapshot that crosses process and storage boundaries."""

    status: RunStatus
    config: dict[str, Any]
    trial_hash: str
    final_metrics: dict[str, float]
    best_metrics: dict[str, float]
    history: list[dict[str, float]]
    epochs_run: int
    device: str
    timings: dict[str, float]
    artifacts: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    failed_epoch: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["status"] = str(self.status)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrialResult:
        fields = dict(d)
        fields["status"] = RunStatus(fields["status"])
        return cls(**fields)
