"""The label-noise contract and the helpers every noise model shares.

A noise model corrupts one clean label map ``y`` (``LongTensor[H, W]``, classes ``0..C-1``, class 0 the
background) into a noisy one.  It is a *pure function* of ``(label, index, rate, seed, params)`` -- and of
``epoch`` only when ``resample_each_epoch=True`` -- so a noisy training set is reproducible from its
configuration alone, whatever the data-loader order, worker count or process.

Randomness comes from a private :class:`torch.Generator` seeded by :func:`noise_seed`, a hash of
``(model name, seed, index[, epoch])``; the global RNG is never touched.
"""

from __future__ import annotations

import hashlib
import math
from abc import ABC, abstractmethod
from typing import ClassVar

import torch

from ielcore.errors import SpecError


def noise_seed(name: str, seed: int, index: int, epoch: int | None = None) -> int:
    """A 63-bit integer seed from ``(name, seed, index[, epoch])`` (BLAKE2b; stable across processes)."""
    key = f"{name}|{seed}|{index}" + ("" if epoch is None else f"|{epoch}")
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


class LabelNoise(ABC):
    """Base class of label-noise models.

    Contract:

    - ``noise(label, index, epoch=0)`` returns a new ``LongTensor[H, W]`` on ``label``'s device; the input
      is never modified.  Values stay in ``0..num_classes-1``.
    - The output depends only on ``(label, index, rate, seed, params)``, plus ``epoch`` when
      ``resample_each_epoch`` is true.  Different ``index`` values give independent noise.
    - ``rate == 0`` is the identity (an equal tensor is returned).
    - ``rate`` outside ``[0, 1]`` raises :class:`SpecError` with ``path="rate"``.

    Subclasses implement :meth:`_corrupt` (called only for ``rate > 0``) and declare their own keyword
    parameters with defaults; ``resample_each_epoch`` is common to all.
    """

    name: ClassVar[str] = ""

    def __init__(
        self, *, rate: float, num_classes: int, seed: int, resample_each_epoch: bool = False
    ) -> None:
        if not isinstance(rate, int | float) or isinstance(rate, bool) or not 0.0 <= float(rate) <= 1.0:
            raise SpecError(
                f"noise rate must be a number in [0, 1], but got rate={rate!r}; use e.g. 0.1 for 10 % noise",
                path="rate",
            )
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
            raise SpecError(
                f"num_classes must be an integer >= 2 (background + at least one class), "
                f"but got num_classes={num_classes!r}",
                path="num_classes",
            )
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise SpecError(f"seed must be an integer, but got seed={seed!r}", path="seed")
        self.rate = float(rate)
        self.num_classes = num_classes
        self.seed = seed
        self.resample_each_epoch = bool(resample_each_epoch)

    def generator(self, index: int, epoch: int = 0) -> torch.Generator:
        """The private CPU generator for sample ``index`` (and ``epoch`` when resampling each epoch)."""
        ep = epoch if self.resample_each_epoch else None
        return torch.Generator().manual_seed(noise_seed(self.name, self.seed, index, ep))

    def __call__(self, label: torch.Tensor, index: int, epoch: int = 0) -> torch.Tensor:
        if label.ndim != 2 or label.dtype != torch.long:
            raise SpecError(
                f"label noise expects a LongTensor[H, W], but got dtype={label.dtype} shape={tuple(label.shape)}",
                path="label",
            )
        if self.rate == 0.0 or label.numel() == 0:
            return label.clone()
        lo, hi = int(label.min()), int(label.max())
        if lo < 0 or hi >= self.num_classes:
            raise SpecError(
                f"label values span [{lo}, {hi}] but num_classes={self.num_classes}; "
                f"labels must be in 0..{self.num_classes - 1} (map the mask values to classes first)",
                path="num_classes",
            )
        out = self._corrupt(label.cpu(), self.generator(index, epoch))
        return out.to(label.device)

    @abstractmethod
    def _corrupt(self, label: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Return the noisy copy of the CPU ``label`` (``rate > 0``), drawing only from ``gen``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rate={self.rate}, num_classes={self.num_classes}, seed={self.seed})"


def check_positive_int(value: object, path: str, hint: str) -> int:
    """Return ``value`` if it is an integer >= 1, else raise :class:`SpecError` at ``path``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise SpecError(f"{path} must be an integer >= 1, but got {path}={value!r}; {hint}", path=path)
    return value


def check_probability(value: object, path: str) -> float:
    """Return ``value`` as a float if it lies in [0, 1], else raise :class:`SpecError` at ``path``."""
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or math.isnan(value)
        or not 0.0 <= value <= 1.0
    ):
        raise SpecError(f"{path} must be a probability in [0, 1], but got {path}={value!r}", path=path)
    return float(value)


def block_keep_mask(
    shape: tuple[int, int], block: int, keep: float, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-cell Bernoulli draws on a block grid, upsampled to ``shape`` by nearest neighbour.

    The grid has ``ceil(H/s) x ceil(W/s)`` cells of ``s x s`` pixels, cut to ``H x W``: where ``H`` is
    divisible by ``s`` this is the authors' ``floor(H/s) x floor(W/s)`` grid; otherwise the last, partial
    row/column of cells is noised like every other cell (instead of leaving a clean strip or stretching
    cells), so every pixel has the same probability of being noised.

    Returns ``(keep_mask BoolTensor[H, W], uniform Tensor[H, W])`` where the second is one ``U[0, 1)``
    draw per cell, used by callers for the replacement label.
    """
    h, w = shape
    gh, gw = -(-h // block), -(-w // block)
    keep_cells = torch.rand((gh, gw), generator=gen) < keep
    u_cells = torch.rand((gh, gw), generator=gen)
    up = lambda t: t.repeat_interleave(block, 0).repeat_interleave(block, 1)[:h, :w]  # noqa: E731
    return up(keep_cells), up(u_cells)


class NoNoise(LabelNoise):
    """Clean labels: the identity for every ``rate`` (kept so "no noise" is one more registry entry)."""

    name = "none"

    def _corrupt(self, label: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return label.clone()
