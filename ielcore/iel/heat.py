"""The heat-diffusion IEL (Liu et al., the paper's main layer)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ielcore.iel._stencils import laplacian, laplacian_adjoint
from ielcore.iel.base import DEFAULT_MAX_GAIN, ExplicitIEL


class _InverseHeat(torch.autograd.Function):
    """``A z`` with ``A = (I - dt L)^steps``; backward applies ``A^T = (I - dt L^T)^steps`` (nothing saved)."""

    @staticmethod
    def forward(ctx: Any, u: Tensor, dt: float, steps: int, padding: str) -> Tensor:
        ctx.dt, ctx.steps, ctx.padding = dt, steps, padding
        for _ in range(steps):
            u = u - dt * laplacian(u, padding)
        return u

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None, None]:
        with torch.autocast(device_type=grad.device.type, enabled=False):
            for _ in range(ctx.steps):
                grad = grad - ctx.dt * laplacian_adjoint(grad, ctx.padding)
        return grad, None, None, None


class HeatIEL(ExplicitIEL):
    """Inverse heat diffusion: ``z <- z - dt * (L * z)``, ``steps`` times, every selected channel alone.

    PDE (forward, smoothing): ``u_t = P(u) = L u`` with the 5-point Laplacian scaled by 1/4,
    ``L = [[0, 1/4, 0], [1/4, -1, 1/4], [0, 1/4, 0]]`` (a depthwise convolution; grid spacing ``h = 2``).
    With ``padding="zeros"`` the layer equals the authors' ``conv2d(z, L, padding=1, groups=C)`` loop.

    Spectrum (periodic): ``L`` has symbol ``λ(ω) = (cos ω1 + cos ω2)/2 - 1 ∈ [-2, 0]``; one inverse step
    multiplies mode ``ω`` by ``1 - dt λ(ω) ∈ [1, 1 + 2 dt]``; the constant mode is unchanged.

    Forward stability: the explicit smoothing step ``u + dt L u`` is stable iff ``dt <= 1``.

    Worst-case gain: ``(1 + 2 dt)^steps`` (the checkerboard mode; exact for ``circular``, an upper bound
    for the other paddings).  Defaults dt=0.1, steps=20 (WBC) give 38.3.

    Memory: the layer is linear, so backward applies the adjoint ``(I - dt L^T)^steps`` to the incoming
    gradient and stores no per-step tensors (``L`` is self-adjoint except with ``reflect`` padding, whose
    adjoint is computed exactly).
    """

    gain_formula = "(1 + 2*dt)^steps"

    def __init__(
        self,
        *,
        dt: float = 0.1,
        steps: int = 20,
        padding: str = "zeros",
        classes: Sequence[int] | None = None,
        max_gain: float = DEFAULT_MAX_GAIN,
    ) -> None:
        super().__init__(dt=dt, steps=steps, padding=padding, classes=classes, max_gain=max_gain)
        self.check_gain()

    @property
    def max_stable_dt(self) -> float:
        return 1.0

    def step_gain(self) -> float:
        return 1.0 + 2.0 * self.dt

    def rhs(self, u: Tensor) -> Tensor:
        return laplacian(u, self.padding)

    def evolve_inverse(self, u: Tensor) -> Tensor:
        out: Tensor = _InverseHeat.apply(u, self.dt, self.steps, self.padding)
        return out
