"""Padding and finite-difference stencils shared by the IEL operators.

Every function acts on ``(..., H, W)`` tensors, each leading index (batch, channel) independently.

Grid spacing.  The heat IEL's kernel ``L = [[0, 1/4, 0], [1/4, -1, 1/4], [0, 1/4, 0]]`` is the 5-point
Laplacian with grid spacing ``h = 2`` px.  The nonlinear PDE types use the same ``h = GRID_SPACING = 2``,
so their small-gradient limits are heat's ``L`` and one ``(dt, steps)`` means the same amount of
evolution for every type.  (In pixel units, time ``t`` of these operators is ``t / 4`` px^2 of diffusion.)

Padding (one ghost pixel each side) names:
    ``zeros``     ghost = 0 (Dirichlet; the authors' choice),
    ``replicate`` ghost = nearest border pixel (Neumann, first order),
    ``reflect``   ghost = mirror without repeating the border (``u[-1] = u[1]``),
    ``circular``  periodic.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

PADDINGS: tuple[str, ...] = ("zeros", "replicate", "reflect", "circular")
GRID_SPACING: float = 2.0

_TORCH_MODE = {"zeros": "constant", "replicate": "replicate", "reflect": "reflect", "circular": "circular"}
# Linear operators built from these paddings and a symmetric stencil are self-adjoint, except for
# ``reflect`` (the border pixel gets its neighbour twice, the neighbour gets the border pixel once).
SELF_ADJOINT_PADDINGS = frozenset({"zeros", "replicate", "circular"})


def _as_4d(u: Tensor) -> tuple[Tensor, torch.Size]:
    return u.reshape(-1, 1, *u.shape[-2:]), u.shape  # (N, 1, H, W)


def pad1(u: Tensor, padding: str) -> Tensor:
    """``u`` with one ghost pixel on each side of the last two dimensions: ``(..., H+2, W+2)``."""
    x, shape = _as_4d(u)
    out = F.pad(x, (1, 1, 1, 1), mode=_TORCH_MODE[padding])
    return out.reshape(*shape[:-2], shape[-2] + 2, shape[-1] + 2)


def _fold(g: Tensor, dim: int, padding: str) -> Tensor:
    """Adjoint of one-ghost padding along ``dim``: add each ghost's value onto the pixel it copies."""
    n = g.shape[dim] - 2
    inner = g.narrow(dim, 1, n)
    if padding == "zeros":
        return inner
    targets = {"replicate": (0, n - 1), "reflect": (1, n - 2), "circular": (n - 1, 0)}[padding]
    ghosts = torch.cat([g.narrow(dim, 0, 1), g.narrow(dim, n + 1, 1)], dim=dim)
    index = torch.tensor(targets, device=g.device)
    return inner.index_add(dim, index, ghosts)


def pad1_adjoint(g: Tensor, padding: str) -> Tensor:
    """Adjoint of :func:`pad1`: ``(..., H+2, W+2) -> (..., H, W)``; ``<pad1(u), g> = <u, pad1_adjoint(g)>``."""
    return _fold(_fold(g, -2, padding), -1, padding)


_HEAT_KERNEL = ((0.0, 0.25, 0.0), (0.25, -1.0, 0.25), (0.0, 0.25, 0.0))


def heat_kernel(like: Tensor) -> Tensor:
    """The kernel ``L`` (shape ``(1, 1, 3, 3)``) in ``like``'s dtype and device."""
    return like.new_tensor(_HEAT_KERNEL).reshape(1, 1, 3, 3)


def _depthwise_heat(x: Tensor, zero_pad: int) -> Tensor:
    c = x.shape[1]
    return F.conv2d(x, heat_kernel(x).expand(c, 1, 3, 3), padding=zero_pad, groups=c)


def laplacian(u: Tensor, padding: str) -> Tensor:
    """``L * u``: the scaled 5-point Laplacian ``(u_N + u_S + u_E + u_W - 4u) / 4`` (``= Δu`` for ``h = 2``).

    A depthwise convolution; for ``zeros`` exactly the authors' ``conv2d(u, L, padding=1, groups=C)``.
    """
    x = u if u.ndim == 4 else u.reshape(-1, 1, *u.shape[-2:])  # (N, C, H, W)
    y = _depthwise_heat(x, 1) if padding == "zeros" else _depthwise_heat(pad1(x, padding), 0)
    return y.reshape(u.shape)


def laplacian_adjoint(g: Tensor, padding: str) -> Tensor:
    """``L^T g`` for the padded operator of :func:`laplacian` (equal to it except for ``reflect``)."""
    if padding in SELF_ADJOINT_PADDINGS:
        return laplacian(g, padding)
    x = g if g.ndim == 4 else g.reshape(-1, 1, *g.shape[-2:])
    # Adjoint of a valid correlation with a symmetric kernel: full correlation, (H+2, W+2).
    return pad1_adjoint(_depthwise_heat(x, 2), padding).reshape(g.shape)


def forward_differences(up: Tensor) -> tuple[Tensor, Tensor]:
    """Forward differences of a padded field ``up`` ``(..., H+2, W+2)`` at cells ``[0, H] x [0, W]``.

    ``gx[a, b] = up[a, b+1] - up[a, b]``, ``gy[a, b] = up[a+1, b] - up[a, b]``; both ``(..., H+1, W+1)``.
    """
    base = up[..., :-1, :-1]
    return up[..., :-1, 1:] - base, up[..., 1:, :-1] - base


def backward_divergence(px: Tensor, py: Tensor) -> Tensor:
    """Backward-difference divergence of a cell field from :func:`forward_differences`: ``(..., H, W)``.

    ``div[i, j] = px[a, b] - px[a, b-1] + py[a, b] - py[a-1, b]`` with ``(a, b) = (i+1, j+1)``.
    """
    return px[..., 1:, 1:] - px[..., 1:, :-1] + py[..., 1:, 1:] - py[..., :-1, 1:]


def edge_differences(up: Tensor) -> tuple[Tensor, Tensor]:
    """Differences across the edges of every pixel of a padded field ``up`` ``(..., H+2, W+2)``.

    ``ex[i, k] = u[i, k] - u[i, k-1]`` for the ``W+1`` vertical edges of row ``i`` (ghosts included),
    ``ey[k, j] = u[k, j] - u[k-1, j]`` for the ``H+1`` horizontal edges: ``(..., H, W+1)``, ``(..., H+1, W)``.
    """
    return up[..., 1:-1, 1:] - up[..., 1:-1, :-1], up[..., 1:, 1:-1] - up[..., :-1, 1:-1]


def edge_divergence(fx: Tensor, fy: Tensor) -> Tensor:
    """Sum of the edge fluxes of :func:`edge_differences` into each pixel: ``(..., H, W)``."""
    return fx[..., 1:] - fx[..., :-1] + fy[..., 1:, :] - fy[..., :-1, :]


def central_derivatives(up: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Central differences (grid spacing 1) of a padded field ``up`` ``(..., H+2, W+2)``, each ``(..., H, W)``.

    ``ux = (E - W)/2``, ``uy = (S - N)/2``, ``uxx = E - 2C + W``, ``uyy = S - 2C + N``,
    ``uxy = (SE - SW - NE + NW)/4``  (x along columns, y along rows).
    """
    c = up[..., 1:-1, 1:-1]
    e, w = up[..., 1:-1, 2:], up[..., 1:-1, :-2]
    n, s = up[..., :-2, 1:-1], up[..., 2:, 1:-1]
    ne, nw = up[..., :-2, 2:], up[..., :-2, :-2]
    se, sw = up[..., 2:, 2:], up[..., 2:, :-2]
    return (e - w) / 2, (s - n) / 2, e - 2 * c + w, s - 2 * c + n, (se - sw - ne + nw) / 4
