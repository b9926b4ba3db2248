"""Boundary label noise: random dilation / erosion of each region's outline."""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from ielcore.noise.base import LabelNoise, check_positive_int, check_probability

EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


class BoundaryNoise(LabelNoise):
    """Annotators drawing outlines a few pixels too large or too small.

    For each foreground class ``k = 1..C-1`` and each connected component (8-connectivity) of
    ``{y == k}``: with probability ``rate`` the component is perturbed, otherwise left alone.  A perturbed
    component is dilated with probability ``dilate_prob`` (else eroded) by a radius
    ``r ~ Uniform{1, ..., max_px}`` with a Euclidean disk:

    - dilation: pixels of a *lower* class (``< k``) within distance ``r`` of the component become ``k``
      (a background pixel belongs to its nearest class-``k`` component);
    - erosion: component pixels within distance ``r`` of a lower-class pixel take the label of that
      nearest lower-class pixel.

    Class order is painting order (class ``k`` lies on top of classes ``< k``): a nucleus (2) may grow into
    cytoplasm (1) or background (0), a cell outline (1) only into background.  Classes are processed in
    increasing order; since a class only exchanges pixels with lower classes, the set ``{y < k}`` is
    unchanged when class ``k`` is processed.  Hence every changed pixel lies within ``max_px`` of a pixel
    with a different original label.  ``rate`` is a per-component probability, not a pixel fraction.
    """

    name = "boundary"

    def __init__(
        self,
        *,
        rate: float,
        num_classes: int,
        seed: int,
        resample_each_epoch: bool = False,
        max_px: int = 2,
        dilate_prob: float = 0.5,
    ) -> None:
        super().__init__(
            rate=rate, num_classes=num_classes, seed=seed, resample_each_epoch=resample_each_epoch
        )
        self.max_px = check_positive_int(max_px, "max_px", "use the largest outline error in pixels, e.g. 2")
        self.dilate_prob = check_probability(dilate_prob, "dilate_prob")

    def _corrupt(self, label: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        y = label.numpy()
        out = y.copy()
        for k in range(1, self.num_classes):
            comp, n = ndimage.label(y == k, structure=EIGHT_CONNECTED)
            if n == 0:
                continue
            perturb = (torch.rand(n, generator=gen) < self.rate).numpy()
            dilate = (torch.rand(n, generator=gen) < self.dilate_prob).numpy()
            radius = torch.randint(1, self.max_px + 1, (n,), generator=gen).numpy().astype(np.float64)
            lower = out < k
            if not lower.any() or not perturb.any():
                continue
            # radius per component id (index 0 = no component): 0 disables, -1 keeps distance <= r false
            r_ero = np.concatenate([[-1.0], np.where(perturb & ~dilate, radius, -1.0)])
            r_dil = np.concatenate([[-1.0], np.where(perturb & dilate, radius, -1.0)])
            new = out.copy()
            if (r_ero > 0).any():
                d_low, (ii, jj) = ndimage.distance_transform_edt(~lower, return_indices=True)
                ero = (comp > 0) & (d_low <= r_ero[comp])
                new[ero] = out[ii[ero], jj[ero]]
            if (r_dil > 0).any():
                d_k, (ii, jj) = ndimage.distance_transform_edt(comp == 0, return_indices=True)
                owner = comp[ii, jj]
                dil = lower & (d_k <= r_dil[owner])
                new[dil] = k
            out = new
        return torch.from_numpy(out)
