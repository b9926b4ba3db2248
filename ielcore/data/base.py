"""The dataset contract (:class:`SegData`), the train/validation split, and procedural-image helpers."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ielcore.errors import SpecError


@dataclass(frozen=True, eq=False)
class SegData:
    """A whole segmentation dataset held in memory.

    ``images``: ``FloatTensor[N, Cin, H, W]`` with values in ``[0, 1]``; ``masks``: ``LongTensor[N, H, W]``
    with classes ``0..num_classes-1`` (class 0 the background); ``class_names``: one name per class.
    Optional: ``instances``, ``LongTensor[N, H, W]`` object ids (0 = no object, each object one id within
    its sample) for per-object measures; ``regions``, one ordinal per sample (the image strip a tile
    was cut from, left to right) -- when given, :func:`split_dataset` splits by region instead of at
    random, so validation pixels never neighbour training pixels across a split.
    Frozen; equality is identity (tensors have no single truth value), compare fields with ``torch.equal``.
    """

    images: torch.Tensor
    masks: torch.Tensor
    num_classes: int
    class_names: tuple[str, ...]
    instances: torch.Tensor | None = None
    regions: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or not self.images.is_floating_point():
            raise SpecError(
                f"images must be a float tensor [N, C, H, W], got {self.images.dtype} {tuple(self.images.shape)}",
                path="images",
            )
        if self.masks.ndim != 3 or self.masks.dtype != torch.long:
            raise SpecError(
                f"masks must be a LongTensor [N, H, W], got {self.masks.dtype} {tuple(self.masks.shape)}",
                path="masks",
            )
        n, _, h, w = self.images.shape
        if tuple(self.masks.shape) != (n, h, w):
            raise SpecError(
                f"masks shape {tuple(self.masks.shape)} does not match images shape {tuple(self.images.shape)}",
                path="masks",
            )
        if self.instances is not None and (
            self.instances.dtype != torch.long or self.instances.shape != self.masks.shape
        ):
            raise SpecError(
                f"instances must be a LongTensor of the masks' shape {tuple(self.masks.shape)}, "
                f"got {self.instances.dtype} {tuple(self.instances.shape)}",
                path="instances",
            )
        if self.regions is not None and (len(self.regions) != n or min(self.regions, default=0) < 0):
            raise SpecError(
                f"regions must give one non-negative ordinal per sample ({n}), got {len(self.regions)}",
                path="regions",
            )
        if len(self.class_names) != self.num_classes:
            raise SpecError(
                f"{len(self.class_names)} class names for num_classes={self.num_classes}", path="class_names"
            )

    @property
    def in_channels(self) -> int:
        """Number of image channels ``Cin``."""
        return int(self.images.shape[1])

    def __len__(self) -> int:
        return int(self.images.shape[0])


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Split ``range(n)`` into sorted, disjoint ``(train, val)`` index lists covering it.

    ``round(n * val_fraction)`` samples go to validation, clamped to ``[1, n - 1]`` when ``n >= 2`` (so
    both parts are non-empty); ``n == 1`` gives ``([0], [])``.  The permutation is drawn from a private
    generator seeded with ``seed``: same ``(n, val_fraction, seed)`` -> same split.
    """
    if not isinstance(n, int) or n < 0:
        raise SpecError(f"n must be a non-negative integer, but got n={n!r}", path="n")
    if not isinstance(val_fraction, int | float) or not 0.0 < val_fraction < 1.0:
        raise SpecError(
            f"val_fraction must lie in (0, 1), but got val_fraction={val_fraction!r}; e.g. 0.2",
            path="val_fraction",
        )
    if n < 2:
        return list(range(n)), []
    n_val = min(max(round(n * val_fraction), 1), n - 1)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(perm[n_val:]), sorted(perm[:n_val])


def split_dataset(data: SegData, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """The ``(train, val)`` split of ``data``: by region when it has ``regions``, else :func:`split_indices`.

    By region: of the ``R`` distinct regions (sorted), the last ``round(R * val_fraction)``, clamped to
    ``[1, R - 1]``, are the validation samples (e.g. the right-hand strips of an image); ``seed`` is
    unused.  Both lists are sorted and non-empty when ``R >= 2``.
    """
    if data.regions is None:
        return split_indices(len(data), val_fraction, seed)
    split_indices(2, val_fraction, seed)  # the same check of val_fraction
    distinct = sorted(set(data.regions))
    if len(distinct) < 2:
        raise SpecError(
            f"a split by region needs at least 2 regions, but the data have {len(distinct)}",
            path="regions",
        )
    n_val = min(max(round(len(distinct) * val_fraction), 1), len(distinct) - 1)
    first_val = distinct[-n_val]
    train = [i for i, r in enumerate(data.regions) if r < first_val]
    val = [i for i, r in enumerate(data.regions) if r >= first_val]
    return train, val


# --- helpers for the procedural datasets -------------------------------------------------------------


def grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates ``(yy, xx)``, each ``[size, size]``, in pixels."""
    r = torch.arange(size, dtype=torch.float32)
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    return yy, xx


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``x`` (``[N, C, H, W]``), replicate padding, radius ``ceil(3 sigma)``.

    Written as a weighted sum of shifted views (faster on CPU than a depthwise convolution).
    """
    if sigma <= 0:
        return x
    radius = min(max(1, math.ceil(3 * sigma)), x.shape[-1] - 1, x.shape[-2] - 1)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    k: list[float] = (kernel / kernel.sum()).tolist()
    h, w = x.shape[-2:]
    xp = F.pad(x, (radius, radius, 0, 0), mode="replicate")
    out = k[0] * xp[..., :, :w]
    for i in range(1, 2 * radius + 1):
        out = out + k[i] * xp[..., :, i : i + w]
    yp = F.pad(out, (0, 0, radius, radius), mode="replicate")
    out = k[0] * yp[..., :h, :]
    for i in range(1, 2 * radius + 1):
        out = out + k[i] * yp[..., i : i + h, :]
    return out


def smooth_field(n: int, channels: int, size: int, cell: int, gen: torch.Generator) -> torch.Tensor:
    """Smooth random field ``[n, channels, size, size]``, zero mean, unit-ish std, feature size ``cell`` px.

    Standard normal values on a coarse ``(size/cell + 2)^2`` lattice, bilinearly upsampled and cropped.
    """
    g = max(2, size // max(cell, 1) + 2)
    coarse = torch.randn((n, channels, g, g), generator=gen)
    up = F.interpolate(coarse, size=(size + 2 * cell, size + 2 * cell), mode="bilinear", align_corners=False)
    return up[..., cell : cell + size, cell : cell + size]


def uniform(gen: torch.Generator, shape: tuple[int, ...], lo: float, hi: float) -> torch.Tensor:
    """``U[lo, hi)`` samples of ``shape`` from ``gen``."""
    return lo + (hi - lo) * torch.rand(shape, generator=gen)


def check_range(value: object, path: str, lo: float, hi: float, hint: str = "") -> float:
    """Return ``value`` as a float if ``lo <= value <= hi``, else raise :class:`SpecError` at ``path``."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not lo <= value <= hi:
        raise SpecError(
            f"{path} must be a number in [{lo}, {hi}], but got {path}={value!r}"
            + (f"; {hint}" if hint else ""),
            path=path,
        )
    return float(value)


def check_int(value: object, path: str, lo: int, hi: int | None = None) -> int:
    """Return ``value`` if it is an integer in ``[lo, hi]``, else raise :class:`SpecError` at ``path``."""
    ok = (
        isinstance(value, int) and not isinstance(value, bool) and value >= lo and (hi is None or value <= hi)
    )
    if not ok:
        bound = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise SpecError(f"{path} must be an integer {bound}, but got {path}={value!r}", path=path)
    return int(value)  # type: ignore[call-overload]
