"""PDE-motivated residual blocks of Ruthotto & Haber (arXiv:1804.04272, J. Math. Imaging Vision 2020).

Every block is built from the *symmetric layer*

    F_sym(Y) = -Kᵀ σ(N(K Y)),

with ``K`` a 3×3 convolution (``c -> c`` channels, zero padding 1, no bias), ``Kᵀ`` its adjoint (the
transposed convolution with the same weights), ``σ = ReLU`` and ``N`` a normalisation (see
:data:`NORMALIZATIONS`).  Each time step owns its own ``K`` and ``N``, so a step costs
``9·c² + 2·c`` parameters with the default per-pixel normalisation.

Time stepping (``δt = dt``, ``j = 0 .. steps-1``):

- parabolic (forward Euler of ``∂_t Y = F(Y)``):  ``Y_{j+1} = Y_j + δt F_j(Y_j)``.
  With ``N`` monotone (identity or per-channel affine with scale ``s >= 0``) a step is
  non-expansive when ``δt · max σ' · max|s| · ‖K‖² <= 2`` (Theorem 1; ``max σ' = 1`` for ReLU).
- Hamiltonian (Verlet on channel halves ``[Y, Z]``, two kernels on ``c/2`` channels each):
  ``Y_{j+1} = Y_j + δt F¹_j(Z_j)``, then ``Z_{j+1} = Z_j - δt F²_j(Y_{j+1})``; exactly reversible
  (:meth:`HamiltonianBlock.inverse`).  A step costs ``2·(9·(c/2)² + 2·(c/2))`` parameters.
- second order (leapfrog of ``∂_tt Y = F(Y)``):
  ``Y_{j+1} = 2 Y_j - Y_{j-1} + δt² F_j(Y_j)`` with ``Y_{-1} = Y_0``; linear stability for weights
  constant in time needs ``δt² λ_max(KᵀDK) <= 4`` (Theorem 2).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ielcore._params import lookup
from ielcore.errors import SpecError

PIXEL_NORM_EPS = 1e-3

#: Valid values of the ``normalization`` parameter:
#: ``"pixel"`` (the paper's): ``N(y)_c = s_c · y_c / sqrt(Σ_c' y_c'² + ε) + b_c`` per pixel, ``ε = 1e-3``;
#: ``"affine"``: ``N(y)_c = s_c · y_c + b_c`` (monotone for ``s >= 0``: Theorem 1's setting with a bias);
#: ``"none"``: ``N(y) = y`` (no parameters).
NORMALIZATIONS = ("pixel", "affine", "none")


def check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    """Return ``value`` if it is an ``int`` in ``[low, high]``, else raise :class:`SpecError` naming it."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        valid = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
        raise SpecError(f"{name} must be {valid}, but got {name}={value!r}; set it to {valid}", path=name)
    return value


def check_positive_float(name: str, value: object) -> float:
    """Return ``float(value)`` if it is a finite number > 0, else raise :class:`SpecError` naming it."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise SpecError(
            f"{name} must be a finite number > 0, but got {name}={value!r}; use e.g. {name}=0.1", path=name
        )
    return float(value)


def check_normalization(value: object) -> str:
    """Return ``value`` if it is one of :data:`NORMALIZATIONS`, else raise :class:`SpecError` listing them."""
    if value not in NORMALIZATIONS:
        raise SpecError(
            f"unknown normalization {value!r}; valid normalizations are: {', '.join(NORMALIZATIONS)}",
            path="normalization",
        )
    return str(value)


class ChannelNorm(nn.Module):
    """The normalisation ``N`` of a symmetric layer, one of :data:`NORMALIZATIONS` (``2·c`` parameters, or 0)."""

    def __init__(self, channels: int, kind: str = "pixel", eps: float = PIXEL_NORM_EPS) -> None:
        super().__init__()
        self.kind = check_normalization(kind)
        self.eps = eps
        if kind == "none":
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        else:
            self.weight = nn.Parameter(torch.ones(channels))
            self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, y: Tensor) -> Tensor:  # (B, C, H, W) -> (B, C, H, W)
        if self.kind == "none":
            return y
        if self.kind == "pixel":
            y = y * torch.rsqrt(y.pow(2).sum(dim=1, keepdim=True) + self.eps)
        return y * self.weight[:, None, None] + self.bias[:, None, None]


class SymmetricLayer(nn.Module):
    """``F_sym(Y) = -Kᵀ σ(N(K Y))``: 3×3 conv ``K`` without bias, its adjoint ``Kᵀ``, ReLU, :class:`ChannelNorm`."""

    def __init__(self, channels: int, normalization: str = "pixel") -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False)
        self.norm = ChannelNorm(channels, normalization)

    def forward(self, y: Tensor) -> Tensor:
        k = self.conv.weight
        return -F.conv_transpose2d(torch.relu(self.norm(F.conv2d(y, k, padding=1))), k, padding=1)


def conv_operator_norm(weight: Tensor, height: int, width: int, *, iters: int = 500, seed: int = 0) -> float:
    """``‖K‖₂`` of the zero-padded 3×3 convolution ``K`` (weight ``(c, c, 3, 3)``) on an ``height×width`` grid.

    Power iteration on ``KᵀK`` from a seeded random start, ``v <- KᵀK v / ‖KᵀK v‖``, with the Rayleigh
    quotient ``‖K v‖²`` (for unit ``v``) as the estimate of ``‖K‖²``: it approaches ``‖K‖²`` from below
    with error ``O((λ₂/λ₁)^(2·iters))``.
    """
    w = weight.detach()
    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(1, w.shape[1], height, width, generator=gen, dtype=w.dtype).to(w.device)
    v = v / v.norm()
    rayleigh = 0.0
    with torch.no_grad():
        for _ in range(iters):
            kv = F.conv2d(v, w, padding=1)
            rayleigh = float(kv.pow(2).sum())
            u = F.conv_transpose2d(kv, w, padding=1)
            u_norm = u.norm()
            if u_norm == 0:
                return 0.0
            v = u / u_norm
    return math.sqrt(rayleigh)


class _PDEBlock(nn.Module):
    """``steps`` time steps of size ``dt`` of a PDE whose right-hand side is a :class:`SymmetricLayer` per step."""

    def __init__(
        self, channels: int, *, steps: int = 1, dt: float = 0.1, normalization: str = "pixel"
    ) -> None:
        super().__init__()
        self.channels = check_int("channels", channels, 1)
        self.steps = check_int("steps", steps, 1)
        self.dt = check_positive_float("dt", dt)
        self.normalization = check_normalization(normalization)


class ParabolicBlock(_PDEBlock):
    """Forward Euler of ``∂_t Y = F_sym(Y)``: ``Y <- Y + δt F_sym,j(Y)`` for ``j = 0 .. steps-1``."""

    def __init__(
        self, channels: int, *, steps: int = 1, dt: float = 0.1, normalization: str = "pixel"
    ) -> None:
        super().__init__(channels, steps=steps, dt=dt, normalization=normalization)
        self.layers = nn.ModuleList(SymmetricLayer(channels, normalization) for _ in range(steps))

    def forward(self, y: Tensor) -> Tensor:
        for layer in self.layers:
            y = y + self.dt * layer(y)
        return y


class HamiltonianBlock(_PDEBlock):
    """Verlet on channel halves ``[Y, Z]``: ``Y <- Y + δt F¹(Z)``, then ``Z <- Z - δt F²(Y)``; ``channels`` even."""

    def __init__(
        self, channels: int, *, steps: int = 1, dt: float = 0.1, normalization: str = "pixel"
    ) -> None:
        super().__init__(channels, steps=steps, dt=dt, normalization=normalization)
        if channels % 2:
            raise SpecError(
                f"a Hamiltonian block splits its channels in halves, but got channels={channels}; use an even number",
                path="channels",
            )
        half = channels // 2
        self.layers_y = nn.ModuleList(SymmetricLayer(half, normalization) for _ in range(steps))
        self.layers_z = nn.ModuleList(SymmetricLayer(half, normalization) for _ in range(steps))

    def forward(self, x: Tensor) -> Tensor:
        y, z = x.chunk(2, dim=1)
        for layer_y, layer_z in zip(self.layers_y, self.layers_z):
            y = y + self.dt * layer_y(z)
            z = z - self.dt * layer_z(y)
        return torch.cat([y, z], dim=1)

    def inverse(self, x: Tensor) -> Tensor:
        """Exact inverse of :meth:`forward`: ``Z <- Z + δt F²(Y)``, then ``Y <- Y - δt F¹(Z)``, steps reversed."""
        y, z = x.chunk(2, dim=1)
        for layer_y, layer_z in zip(reversed(self.layers_y), reversed(self.layers_z)):
            z = z + self.dt * layer_z(y)
            y = y - self.dt * layer_y(z)
        return torch.cat([y, z], dim=1)


class SecondOrderBlock(_PDEBlock):
    """Leapfrog of ``∂_tt Y = F_sym(Y)``: ``Y_{j+1} = 2 Y_j - Y_{j-1} + δt² F_sym,j(Y_j)``, ``Y_{-1} = Y_0``."""

    def __init__(
        self, channels: int, *, steps: int = 1, dt: float = 0.1, normalization: str = "pixel"
    ) -> None:
        super().__init__(channels, steps=steps, dt=dt, normalization=normalization)
        self.layers = nn.ModuleList(SymmetricLayer(channels, normalization) for _ in range(steps))

    def forward(self, y: Tensor) -> Tensor:
        y_prev = y
        for layer in self.layers:
            y, y_prev = 2 * y - y_prev + self.dt**2 * layer(y), y
        return y


BLOCK_TYPES: dict[str, type[_PDEBlock]] = {
    "parabolic": ParabolicBlock,
    "hamiltonian": HamiltonianBlock,
    "second_order": SecondOrderBlock,
}


def build_block(
    kind: str, channels: int, *, steps: int = 1, dt: float = 0.1, normalization: str = "pixel"
) -> _PDEBlock:
    """Build one block from :data:`BLOCK_TYPES` (unknown ``kind`` raises, listing the valid kinds)."""
    cls = lookup(BLOCK_TYPES, "PDE block", kind)
    return cls(channels, steps=steps, dt=dt, normalization=normalization)
