"""The curve-motion (convex-shape) IEL of Liu et al. and its concave-pocket detector."""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ielcore.errors import SpecError
from ielcore.iel._stencils import central_derivatives, pad1
from ielcore.iel.base import DEFAULT_MAX_GAIN, IEL, check_max_gain, check_positive, check_steps


class Pockets(NamedTuple):
    """Pixels flagged by :func:`detect_pockets` (bool tensors shaped like the foreground)."""

    background: Tensor  # background pixels inside a concave pocket
    foreground: Tensor  # foreground pixels within ``dilation`` px (Chebyshev) of a flagged background pixel

    @property
    def region(self) -> Tensor:
        """The region the convex IEL moves: ``background | foreground``."""
        return self.background | self.foreground


def box_count(mask: Tensor, r: int) -> Tensor:
    """Number of ``True`` pixels in the ``(2r+1)²`` window around each pixel, zero padded (integral image).

    ``mask``: bool ``(N, H, W)``; returns int64 ``(N, H, W)``.
    """
    counts = F.pad(mask.to(torch.int64), (r + 1, r, r + 1, r)).cumsum(-1).cumsum(-2)  # (N, H+2r+1, W+2r+1)
    k = 2 * r + 1
    return counts[..., k:, k:] - counts[..., :-k, k:] - counts[..., k:, :-k] + counts[..., :-k, :-k]


def detect_pockets(
    foreground: Tensor, radii: Sequence[int] = (5, 10, 15), threshold: float = 0.5, dilation: int = 3
) -> Pockets:
    """Flag the concave pockets of a foreground mask (bool ``(..., H, W)``).

    A background pixel is flagged when, for some ``r`` in ``radii``, at least ``threshold`` of its
    ``(2r+1)²`` window (zero padded) is foreground.  Beside a straight edge the share is ``r / (2r+1) < 1/2``
    (210/441 = 0.476 for r = 10), so convex shapes flag nothing.  The flagged pixels are
    dilated by ``dilation`` px (a ``(2 dilation + 1)²`` square); the foreground part of that dilation is
    the second field of the result.
    """
    fg = foreground.reshape(-1, *foreground.shape[-2:]).bool()  # (N, H, W)
    hit = torch.zeros_like(fg)
    for r in radii:
        area = (2 * r + 1) ** 2
        hit |= box_count(fg, r).to(torch.float64) >= threshold * area
    background = hit & ~fg
    grown = F.max_pool2d(background[:, None].float(), 2 * dilation + 1, stride=1, padding=dilation)[:, 0] > 0
    pockets = Pockets(background, grown & fg)
    return Pockets(*(p.reshape(foreground.shape) for p in pockets))


class ConvexIEL(IEL):
    """Inverse curve motion inside concave pockets, deepening them so the loss penalises non-convex shapes.

    Setting: class ``background_class`` is the background; the foreground is ``F = {argmax z != background}``;
    only channel ``target_class`` is changed.  Each of the ``steps`` steps:

    1. ``F`` from the current logits (no gradient);
    2. pockets = :func:`detect_pockets` ``(F, radii, threshold, dilation)``; the region mask ``M``
       accumulates (union) over the steps;
    3. with the margin ``φ = z_target - z_background``:
       ``z_target <- z_target - dt * M * sqrt(|∇φ|² + eps)``.

    PDE: inside ``M`` this is the level-set motion ``φ_t = -|∇φ|``, moving the boundary inward at unit
    speed (about ``steps * dt`` px in total).  :meth:`rhs` is the reverse, convexifying motion
    ``P(u)_target = M(u) sqrt(|∇φ|² + eps)`` (zero in other channels; ``M`` from ``u`` alone).

    Stencil: central differences with weight 1/2 (grid spacing 1 px, the authors'), replicate padding.

    Forward stability: CFL for unit speed on a 1 px grid, ``dt <= 1``.

    Gain: not a multiplicative amplifier: each step moves the boundary by at most ``dt`` px, and
    ``worst_case_gain() = 1 + steps * dt`` (the total displacement in px, plus one) -- 3 at the defaults.

    ``radii=(5, 10, 15)`` is the intended union; the authors' code effectively used ``(10,)``.
    """

    gain_formula = "1 + steps*dt"

    def __init__(
        self,
        *,
        dt: float = 0.1,
        steps: int = 20,
        target_class: int = 1,
        background_class: int = 0,
        radii: Sequence[int] = (5, 10, 15),
        threshold: float = 0.5,
        dilation: int = 3,
        eps: float = 1e-6,
        max_gain: float = DEFAULT_MAX_GAIN,
    ) -> None:
        super().__init__()
        self.dt = check_positive(dt, "dt")
        self.steps = check_steps(steps)
        self.target_class = _check_index(target_class, "target_class")
        self.background_class = _check_index(background_class, "background_class")
        if self.target_class == self.background_class:
            raise SpecError(
                f"target_class and background_class must differ, but both are {target_class}",
                path="target_class",
            )
        self.radii = _check_radii(radii)
        if not isinstance(threshold, int | float) or isinstance(threshold, bool) or not 0 < threshold <= 1:
            raise SpecError(f"threshold must be in (0, 1], but got threshold={threshold!r}", path="threshold")
        self.threshold = float(threshold)
        self.dilation = _check_index(dilation, "dilation")
        self.eps = check_positive(eps, "eps")
        self.max_gain = check_max_gain(max_gain)
        self.check_gain()

    @property
    def max_stable_dt(self) -> float:
        return 1.0

    def worst_case_gain(self) -> float:
        return 1.0 + self.steps * self.dt

    def foreground(self, u: Tensor) -> Tensor:
        """``F = {argmax u != background_class}``, bool ``(B, 1, H, W)``."""
        return (u.detach().argmax(dim=1, keepdim=True) != self.background_class).bool()

    def region(self, u: Tensor) -> Tensor:
        """The pocket region ``M(u)`` as a 0/1 tensor ``(B, 1, H, W)`` in ``u``'s dtype."""
        pockets = detect_pockets(self.foreground(u), self.radii, self.threshold, self.dilation)
        return pockets.region.to(u.dtype)

    def speed(self, u: Tensor) -> Tensor:
        """``sqrt(|∇φ|² + eps)`` for ``φ = u_target - u_background`` (central differences, replicate)."""
        self._check_channels(u)
        phi = (
            u[:, self.target_class : self.target_class + 1]
            - u[:, self.background_class : self.background_class + 1]
        )
        ux, uy, _, _, _ = central_derivatives(pad1(phi, "replicate"))
        return torch.sqrt(ux * ux + uy * uy + self.eps)

    def rhs(self, u: Tensor) -> Tensor:
        move = self.region(u) * self.speed(u)  # (B, 1, H, W)
        return torch.cat(
            [move if c == self.target_class else torch.zeros_like(move) for c in range(u.shape[1])], 1
        )

    def evolve_inverse(self, u: Tensor) -> Tensor:
        self._check_channels(u)
        channels = list(u.unbind(1))
        t = self.target_class
        region = torch.zeros_like(u[:, :1])
        for _ in range(self.steps):
            region = torch.maximum(region, self.region(u))
            channels[t] = channels[t] - self.dt * (region * self.speed(u))[:, 0]
            u = torch.stack(channels, 1)
        return u

    def _check_channels(self, u: Tensor) -> None:
        top = max(self.target_class, self.background_class)
        if u.shape[1] <= top:
            raise SpecError(
                f"the convex IEL needs channels target_class={self.target_class} and "
                f"background_class={self.background_class}, but the logits have {u.shape[1]} channels",
                path="target_class",
            )

    def extra_repr(self) -> str:
        return (
            f"dt={self.dt:g}, steps={self.steps}, target_class={self.target_class}, radii={self.radii}, "
            f"threshold={self.threshold:g}, dilation={self.dilation}"
        )


def _check_index(value: Any, name: str) -> int:
    if not isinstance(value, Integral) or isinstance(value, bool) or int(value) < 0:
        raise SpecError(f"{name} must be an integer >= 0, but got {name}={value!r}", path=name)
    return int(value)


def _check_radii(value: Any) -> tuple[int, ...]:
    items = (value,) if isinstance(value, Integral) else value
    if (
        isinstance(items, str | bytes)
        or not isinstance(items, Sequence)
        or not items
        or any(not isinstance(r, Integral) or isinstance(r, bool) or int(r) < 1 for r in items)
    ):
        raise SpecError(
            f"radii must be a non-empty list of window radii >= 1 (e.g. [5, 10, 15]), but got radii={value!r}",
            path="radii",
        )
    return tuple(int(r) for r in items)
