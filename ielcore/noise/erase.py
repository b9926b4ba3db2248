"""One-sided erasure: whole objects (or blocks) of foreground missed by the annotator."""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from ielcore.errors import SpecError
from ielcore.noise.base import LabelNoise, block_keep_mask, check_positive_int

EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)
ERASE_MODES = ("component", "block")


class EraseNoise(LabelNoise):
    """One-sided noise: foreground becomes background, never the reverse.

    - ``mode="component"``: each connected component (8-connectivity) of the foreground ``{y != 0}`` is
      set to background with probability ``rate`` (a missed cell, nucleus included).
    - ``mode="block"``: each ``block x block`` cell (grid as in block noise) is set to background with
      probability ``rate`` -- the authors' block noise on a 0/255 mask, where every replacement became
      background.  Expected erased fraction of the foreground: ``rate``.

    No pixel is ever changed to a foreground class.
    """

    name = "erase"

    def __init__(
        self,
        *,
        rate: float,
        num_classes: int,
        seed: int,
        resample_each_epoch: bool = False,
        mode: str = "component",
        block: int = 2,
    ) -> None:
        super().__init__(
            rate=rate, num_classes=num_classes, seed=seed, resample_each_epoch=resample_each_epoch
        )
        if mode not in ERASE_MODES:
            raise SpecError(
                f"unknown erase mode {mode!r}; valid modes are: {', '.join(ERASE_MODES)}", path="mode"
            )
        self.mode = mode
        self.block = check_positive_int(block, "block", "use the block edge in pixels, e.g. 2")

    def _corrupt(self, label: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if self.mode == "block":
            keep, _ = block_keep_mask((label.shape[0], label.shape[1]), self.block, 1.0 - self.rate, gen)
            return torch.where(keep, label, torch.zeros_like(label))
        comp, n = ndimage.label(label.numpy() != 0, structure=EIGHT_CONNECTED)
        if n == 0:
            return label.clone()
        erased = np.concatenate([[False], (torch.rand(n, generator=gen) < self.rate).numpy()])
        out = label.clone()
        out[torch.from_numpy(erased[comp])] = 0
        return out
