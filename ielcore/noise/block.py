"""Block label noise: the authors' model (``block`` cells of ``s x s`` pixels flipped together)."""

from __future__ import annotations

import torch

from ielcore.noise.base import LabelNoise, block_keep_mask, check_positive_int


def block_flip(
    label: torch.Tensor, block: int, rate: float, num_classes: int, gen: torch.Generator
) -> torch.Tensor:
    """``noisy = keep ? y : r`` with ``keep ~ Bernoulli(1 - rate)`` and ``r ~ U{0..C-1}`` per block cell."""
    keep, u = block_keep_mask((label.shape[0], label.shape[1]), block, 1.0 - rate, gen)
    replacement = (u * num_classes).long().clamp_(max=num_classes - 1)
    return torch.where(keep, label, replacement)


class BlockNoise(LabelNoise):
    """Block noise of Liu et al. (IEL paper, WBC / DSB2018 experiments).

    For a label ``y`` (``H x W``) and block size ``s``: on a grid of ``s x s`` cells draw a keep mask
    ``k ~ Bernoulli(1 - rate)`` and a replacement label ``r ~ Uniform{0, ..., C-1}`` per cell (``r`` may
    equal the true class), upsample both by nearest neighbour and set ``y' = k ? y : r``.

    Expected fraction of changed pixels: ``rate * (C - 1) / C`` (WBC, ``C=3``, ``rate=0.1``: 6.7 %).

    When ``H`` or ``W`` is not divisible by ``s`` the grid has ``ceil(H/s) x ceil(W/s)`` cells and the
    last row/column of cells is cut at the border, so every pixel is noised with the same probability.

    Unlike the authors' code (keep mask fixed by seed 0 for every image, replacements redrawn every
    epoch) the noise here is a pure function of ``(label, index, rate, seed)``, static across epochs unless
    ``resample_each_epoch=True``.
    """

    name = "block"

    def __init__(
        self,
        *,
        rate: float,
        num_classes: int,
        seed: int,
        resample_each_epoch: bool = False,
        block: int = 2,
    ) -> None:
        super().__init__(
            rate=rate, num_classes=num_classes, seed=seed, resample_each_epoch=resample_each_epoch
        )
        self.block = check_positive_int(
            block, "block", "use the block edge in pixels, e.g. 2 (WBC) or 3 (DSB)"
        )

    def _corrupt(self, label: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return block_flip(label, self.block, self.rate, self.num_classes, gen)
