"""Pixel-wise label noise (block noise with ``s = 1``; the authors' DRIVE setting)."""

from __future__ import annotations

import torch

from ielcore.noise.base import LabelNoise
from ielcore.noise.block import block_flip


class PixelNoise(LabelNoise):
    """Independent per-pixel flips.

    Each pixel keeps its label with probability ``1 - rate``; otherwise it gets a label drawn uniformly
    from all ``C`` classes (possibly the true one).  Expected changed fraction ``rate * (C - 1) / C``.
    Equivalent in distribution to :class:`~ielcore.noise.block.BlockNoise` with ``block=1``.
    """

    name = "pixel"

    def _corrupt(self, label: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return block_flip(label, 1, self.rate, self.num_classes, gen)
