"""The inverse mean-curvature-motion IEL."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from ielcore.iel._stencils import GRID_SPACING, central_derivatives, pad1
from ielcore.iel.base import DEFAULT_MAX_GAIN, ExplicitIEL, check_positive


class MeanCurvatureIEL(ExplicitIEL):
    """Inverse mean-curvature motion: ``z <- z - dt * |∇z|_ε div(∇z / |∇z|_ε)``, ``|g|_ε = sqrt(|g|² + eps)``.

    PDE (forward): ``u_t = P(u) = |∇u| div(∇u / |∇u|)``, regularised by ``eps``; every level set moves
    along its normal with speed equal to its curvature (a circle of radius ``r`` obeys ``r² = r0² - 2t``).
    Expanded: ``P = (u_y² u_xx - 2 u_x u_y u_xy + u_x² u_yy + eps (u_xx + u_yy)) / (u_x² + u_y² + eps)``,
    i.e. ``trace(A ∇²u)`` with ``A = I - ∇u ∇uᵀ / (|∇u|² + eps)`` (eigenvalues in ``(0, 1]``); where
    ``|∇u|² << eps`` it is heat diffusion.

    Stencil: central differences with grid spacing ``h = 2`` (see :mod:`._stencils`):
    ``u_x = (E - W)/(2h)``, ``u_xx = (E - 2C + W)/h²``, ``u_xy = (SE - SW - NE + NW)/(4h²)``; ghost pixels
    (corners included) from ``padding``.  In pixel units a circle obeys ``r² = r0² - t/2``.

    Linearisation (frozen coefficients ``A``): the symbol of ``trace(A ∇²)`` with this stencil lies in
    ``[-8/h², 0] = [-2, 0]`` whatever ``eps`` and ``∇u``, as for heat.

    Forward stability (frozen coefficients): ``dt <= 1``.

    Worst-case gain: ``(1 + 2 dt)^steps`` (frozen-coefficient bound, independent of ``eps``; the variation
    of ``A`` with ``∇u`` is not bounded globally and is ignored); 38.3 at the defaults.
    """

    gain_formula = "(1 + 2*dt)^steps"

    def __init__(
        self,
        *,
        dt: float = 0.1,
        steps: int = 20,
        eps: float = 0.1,
        padding: str = "zeros",
        classes: Sequence[int] | None = None,
        max_gain: float = DEFAULT_MAX_GAIN,
        checkpoint: bool = False,
    ) -> None:
        super().__init__(
            dt=dt, steps=steps, padding=padding, classes=classes, max_gain=max_gain, checkpoint=checkpoint
        )
        self.eps = check_positive(eps, "eps")
        self.check_gain()

    @property
    def max_stable_dt(self) -> float:
        return 1.0

    def step_gain(self) -> float:
        return 1.0 + 2.0 * self.dt

    def rhs(self, u: Tensor) -> Tensor:
        h = GRID_SPACING
        ux, uy, uxx, uyy, uxy = central_derivatives(pad1(u, self.padding))
        ux, uy, uxx, uyy, uxy = ux / h, uy / h, uxx / h**2, uyy / h**2, uxy / h**2
        ux2, uy2 = ux * ux, uy * uy
        num = uy2 * uxx - 2 * ux * uy * uxy + ux2 * uyy + self.eps * (uxx + uyy)
        return num / (ux2 + uy2 + self.eps)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, eps={self.eps:g}"
