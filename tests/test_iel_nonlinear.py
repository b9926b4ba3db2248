"""The nonlinear PDE types (tv, mcf, perona_malik) against exact answers and their memory behaviour.

All use grid spacing h = 2 px (like heat's L = Δ/4), so in pixel units their time is t/4 of diffusion.
"""

from __future__ import annotations

import math

import pytest
import torch

from ielcore.errors import StabilityError
from ielcore.iel import TVIEL, HeatIEL, MeanCurvatureIEL, PeronaMalikIEL, build_iel
from ielcore.iel._stencils import PADDINGS

NONLINEAR = ("tv", "mcf", "perona_malik")


def rand(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(*shape, dtype=dtype, generator=torch.Generator().manual_seed(seed))


def shift(u: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``u[i + dy, j + dx]`` with periodic borders."""
    return torch.roll(u, shifts=(-dy, -dx), dims=(-2, -1))


def count_saved(module: torch.nn.Module, z: torch.Tensor) -> tuple[int, int]:
    """(number, bytes) of tensors saved for backward while running ``module(z)``."""
    count, nbytes = [0], [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        count[0] += 1
        nbytes[0] += t.numel() * t.element_size()
        return t

    x = z.clone().requires_grad_()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = module(x)
    y.square().sum().backward()
    return count[0], nbytes[0]


# --- stencils against independent periodic formulas -------------------------------------------------


def test_tv_rhs_formula() -> None:
    u, eps = rand(2, 3, 9, 8), 0.3
    gx, gy = (shift(u, 0, 1) - u) / 2, (shift(u, 1, 0) - u) / 2
    norm = torch.sqrt(gx**2 + gy**2 + eps)
    px, py = gx / norm, gy / norm
    expected = (px - shift(px, 0, -1) + py - shift(py, -1, 0)) / 2
    torch.testing.assert_close(TVIEL(eps=eps, padding="circular").rhs(u), expected, rtol=1e-12, atol=1e-12)


def test_perona_malik_rhs_formula() -> None:
    u, k = rand(2, 3, 9, 8, seed=1), 0.7
    expected = torch.zeros_like(u)
    for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
        d = (shift(u, dy, dx) - u) / 2
        expected += d / (1 + (d / k) ** 2) / 2
    torch.testing.assert_close(
        PeronaMalikIEL(K=k, padding="circular").rhs(u), expected, rtol=1e-12, atol=1e-12
    )


def test_mcf_rhs_formula() -> None:
    u, eps = rand(2, 3, 9, 8, seed=2), 0.05
    ux, uy = (shift(u, 0, 1) - shift(u, 0, -1)) / 4, (shift(u, 1, 0) - shift(u, -1, 0)) / 4
    uxx, uyy = (shift(u, 0, 1) - 2 * u + shift(u, 0, -1)) / 4, (shift(u, 1, 0) - 2 * u + shift(u, -1, 0)) / 4
    uxy = (shift(u, 1, 1) - shift(u, 1, -1) - shift(u, -1, 1) + shift(u, -1, -1)) / 16
    grad2 = ux**2 + uy**2 + eps
    # |∇u|_ε div(∇u/|∇u|_ε) = Δu - ∇uᵀ(∇²u)∇u / |∇u|_ε²
    expected = uxx + uyy - (ux**2 * uxx + 2 * ux * uy * uxy + uy**2 * uyy) / grad2
    got = MeanCurvatureIEL(eps=eps, padding="circular").rhs(u)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize(
    ("name", "params"), [("tv", {"eps": 1.0}), ("perona_malik", {"K": 1e7}), ("mcf", {"eps": 1e12})]
)
def test_small_gradient_limit_is_heat(name: str, params: dict[str, float], padding: str) -> None:
    u = 1e-5 * rand(1, 2, 7, 9, seed=3)
    layer = build_iel(name, padding=padding, **params)
    heat = HeatIEL(padding=padding)
    torch.testing.assert_close(layer.rhs(u), heat.rhs(u), rtol=1e-8, atol=1e-18)


@pytest.mark.parametrize("padding", ["circular", "replicate"])
@pytest.mark.parametrize("name", ["tv", "perona_malik"])
def test_divergence_form_conserves_mass(name: str, padding: str) -> None:
    u = 3 * rand(2, 2, 10, 11, seed=4)
    total = build_iel(name, padding=padding).rhs(u).sum(dim=(-2, -1))
    torch.testing.assert_close(total, torch.zeros_like(total), rtol=0, atol=1e-12)


# --- gain bounds ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("padding", ["zeros", "circular"])
@pytest.mark.parametrize(("name", "params"), [("tv", {"eps": 0.25}), ("perona_malik", {"K": 0.5})])
def test_worst_case_gain_is_a_lipschitz_bound(name: str, params: dict[str, float], padding: str) -> None:
    layer = build_iel(name, dt=0.2, steps=6, padding=padding, **params)
    gain = layer.worst_case_gain()
    for seed in range(4):
        u, v = 4 * rand(1, 2, 12, 12, seed=seed), 4 * rand(1, 2, 12, 12, seed=seed + 10)
        v = u + 10.0 ** (-seed) * v
        ratio = (layer(u) - layer(v)).norm() / (u - v).norm()
        assert 1.0 <= ratio.item() <= gain * (1 + 1e-9)


def test_tv_gain_is_attained_by_a_tiny_checkerboard() -> None:
    eps, dt, steps = 0.25, 0.1, 10
    i = torch.arange(8)
    board = 1e-7 * (-1.0) ** (i[:, None] + i[None, :]).double()[None, None]
    layer = TVIEL(eps=eps, dt=dt, steps=steps, padding="circular")
    growth = (layer(board).norm() / board.norm()).item()
    assert growth == pytest.approx((1 + 2 * dt / math.sqrt(eps)) ** steps, rel=1e-6)
    assert growth == pytest.approx(layer.worst_case_gain(), rel=1e-6)


def test_gain_guard_and_forward_limit() -> None:
    with pytest.raises(StabilityError) as err:
        build_iel("tv", eps=1e-4)  # (1 + 0.2/0.01)^20 = 21^20
    assert "(1 + 2*dt/sqrt(eps))^steps" in str(err.value) and "2.782e+26" in str(err.value)
    assert TVIEL(eps=0.25).max_stable_dt == 0.5
    u = rand(1, 1, 6, 6)
    TVIEL(eps=0.25).evolve_forward(u, steps=2, dt=0.5)
    for layer, bad in ((TVIEL(eps=0.25), 0.6), (MeanCurvatureIEL(), 1.5), (PeronaMalikIEL(), 1.01)):
        with pytest.raises(StabilityError) as err:
            layer.evolve_forward(u, dt=bad)
        assert err.value.path == "dt" and f"dt <= {layer.max_stable_dt:g}" in str(err.value)


# --- forward evolutions ----------------------------------------------------------------------------------


@pytest.mark.parametrize("t", [100.0, 200.0, 400.0])
def test_forward_mcf_shrinks_a_circle(t: float) -> None:
    """A circle under mean-curvature motion obeys r² = r0² - 2t in the operator's units (h = 2 px), i.e.
    r² = r0² - t/2 with r in pixels.  The radius is measured from the area of {u > 0}; tolerance 0.15 px."""
    n, r0, dt = 96, 20.0, 1.0
    y, x = torch.meshgrid(
        torch.arange(n, dtype=torch.float64), torch.arange(n, dtype=torch.float64), indexing="ij"
    )
    u = (r0 - torch.sqrt((y - 47.5) ** 2 + (x - 47.5) ** 2))[None, None]  # signed distance, > 0 inside
    layer = MeanCurvatureIEL(eps=1e-6, padding="replicate", dt=dt, steps=1)
    out = layer.evolve_forward(u, steps=int(t / dt))
    radius = math.sqrt((out > 0).sum().item() / math.pi)
    assert radius == pytest.approx(math.sqrt(r0**2 - t / 2), abs=0.15)


def test_forward_tv_flow_decreases_its_energy() -> None:
    eps = 0.5
    layer = TVIEL(eps=eps, padding="circular")
    u = 2 * rand(1, 1, 16, 16, seed=5)

    def energy(v: torch.Tensor) -> float:
        gx, gy = (shift(v, 0, 1) - v) / 2, (shift(v, 1, 0) - v) / 2
        return torch.sqrt(gx**2 + gy**2 + eps).sum().item()

    values = [energy(u)]
    for _ in range(10):
        u = layer.evolve_forward(u, steps=1, dt=layer.max_stable_dt)
        values.append(energy(u))
    assert all(b < a for a, b in zip(values, values[1:]))


# --- autograd and memory -----------------------------------------------------------------------------------


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("name", NONLINEAR)
def test_gradcheck(name: str, padding: str) -> None:
    z = rand(1, 1, 4, 5, seed=6).requires_grad_()
    assert torch.autograd.gradcheck(build_iel(name, dt=0.2, steps=2, padding=padding), (z,))


@pytest.mark.parametrize("name", NONLINEAR)
def test_checkpoint_gives_the_same_values_and_gradients(name: str) -> None:
    z = rand(2, 3, 10, 10, seed=7)
    grads = []
    for checkpoint in (False, True):
        x = z.clone().requires_grad_()
        out = build_iel(name, steps=6, checkpoint=checkpoint)(x)
        (out * torch.cos(z)).sum().backward()
        grads.append((out.detach(), x.grad))
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=0)


@pytest.mark.parametrize("name", NONLINEAR)
def test_checkpoint_saves_only_the_step_inputs(name: str) -> None:
    """With checkpoint=True exactly one tensor, the step's input (one logits-sized float32 tensor), is saved
    per step: ``count == steps`` and ``bytes == steps * input bytes``.  Without checkpointing the count is
    linear in ``steps`` with at least 3 tensors per step."""
    z = torch.randn(2, 3, 16, 16)
    per_input = z.numel() * z.element_size()
    for steps in (5, 50):
        layer = build_iel(name, steps=steps, dt=0.01, checkpoint=True)
        assert count_saved(layer, z) == (steps, steps * per_input)
    plain5 = count_saved(build_iel(name, steps=5, dt=0.01), z)[0]
    plain50 = count_saved(build_iel(name, steps=50, dt=0.01), z)[0]
    assert plain50 == 10 * plain5 and plain5 >= 3 * 5
