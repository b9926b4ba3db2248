"""The heat IEL against exact answers: the explicit formula, Fourier symbols, adjoint backward, memory."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ielcore.errors import SpecError, StabilityError
from ielcore.iel import HeatIEL, build_iel
from ielcore.iel._stencils import PADDINGS, laplacian_adjoint, pad1, pad1_adjoint

KERNEL = [[0.0, 0.25, 0.0], [0.25, -1.0, 0.25], [0.0, 0.25, 0.0]]
TORCH_MODE = {"zeros": "constant", "replicate": "replicate", "reflect": "reflect", "circular": "circular"}


def plain_heat(z: torch.Tensor, dt: float, steps: int, padding: str) -> torch.Tensor:
    """The explicit formula, written independently: depthwise conv2d of the padded field, ``steps`` times."""
    c = z.shape[1]
    k = torch.tensor(KERNEL, dtype=z.dtype).reshape(1, 1, 3, 3).repeat(c, 1, 1, 1)
    for _ in range(steps):
        z = z - dt * F.conv2d(F.pad(z, (1, 1, 1, 1), mode=TORCH_MODE[padding]), k, groups=c)
    return z


def count_saved(module: torch.nn.Module, z: torch.Tensor) -> tuple[int, int]:
    """(number, bytes) of tensors saved for backward while running ``module(z)``; then runs backward."""
    count, nbytes = [0], [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        count[0] += 1
        nbytes[0] += t.numel() * t.element_size()
        return t

    x = z.clone().requires_grad_()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = module(x)
    y.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    return count[0], nbytes[0]


def test_zero_padding_equals_the_authors_operator_bit_for_bit() -> None:
    z = torch.randn(2, 3, 20, 17, generator=torch.Generator().manual_seed(0))
    k = torch.tensor(KERNEL).reshape(1, 1, 3, 3).repeat(3, 1, 1, 1)
    ref = z.clone()
    for _ in range(20):
        ref = ref - 0.1 * F.conv2d(ref, k, padding=1, groups=3)
    assert torch.equal(build_iel("heat", dt=0.1, steps=20)(z), ref)


@pytest.mark.parametrize("padding", PADDINGS)
def test_equals_explicit_formula(padding: str) -> None:
    z = torch.randn(2, 3, 11, 13, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    out = HeatIEL(dt=0.2, steps=10, padding=padding)(z)
    torch.testing.assert_close(out, plain_heat(z, 0.2, 10, padding), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("w1", "w2"), [(1, 2), (3, 0), (8, 8), (5, 7)])
def test_fourier_mode_grows_by_the_symbol(w1: int, w2: int) -> None:
    n, dt, steps = 16, 0.15, 12
    om1, om2 = 2 * math.pi * w1 / n, 2 * math.pi * w2 / n
    i = torch.arange(n, dtype=torch.float64)
    mode = torch.cos(om1 * i[:, None] + om2 * i[None, :])[None, None]
    lam = (math.cos(om1) + math.cos(om2)) / 2 - 1
    out = HeatIEL(dt=dt, steps=steps, padding="circular")(mode)
    expected = (1 - dt * lam) ** steps
    growth = ((out * mode).sum() / (mode * mode).sum()).item()
    assert growth == pytest.approx(expected, rel=1e-5)
    torch.testing.assert_close(out, expected * mode, rtol=0, atol=1e-12 * expected)  # still a pure mode
    if (w1, w2) == (8, 8):  # the checkerboard attains the worst-case gain exactly
        gain = out.abs().max().item()
        assert gain == pytest.approx(HeatIEL(dt=dt, steps=steps).worst_case_gain(), rel=1e-12)


@pytest.mark.parametrize("padding", ["circular", "replicate", "reflect"])
def test_constant_mode_is_unchanged(padding: str) -> None:
    z = torch.full((1, 2, 9, 10), 3.25, dtype=torch.float64)
    torch.testing.assert_close(HeatIEL(dt=0.3, steps=15, padding=padding)(z), z, rtol=0, atol=1e-12)


def test_zero_padding_damps_constant_at_border_only() -> None:
    out = HeatIEL(dt=0.1, steps=1)(torch.ones(1, 1, 5, 5))
    assert out[0, 0, 2, 2].item() == 1.0  # interior: constant unchanged
    assert out[0, 0, 0, 2].item() == pytest.approx(1.025)  # one zero ghost: 1 - 0.1 * (-1/4)


@pytest.mark.parametrize("padding", PADDINGS)
def test_pad_adjoint_is_the_vjp_of_padding(padding: str) -> None:
    gen = torch.Generator().manual_seed(2)
    u = torch.randn(2, 6, 7, dtype=torch.float64, generator=gen)
    g = torch.randn(2, 8, 9, dtype=torch.float64, generator=gen)
    lhs = (pad1(u, padding) * g).sum()
    rhs = (u * pad1_adjoint(g, padding)).sum()
    assert lhs.item() == pytest.approx(rhs.item(), rel=1e-12)


@pytest.mark.parametrize("padding", PADDINGS)
def test_laplacian_adjoint_identity(padding: str) -> None:
    gen = torch.Generator().manual_seed(3)
    u, g = torch.randn(2, 1, 6, 5, 7, dtype=torch.float64, generator=gen)
    lhs = (HeatIEL(padding=padding).rhs(u) * g).sum()
    assert lhs.item() == pytest.approx((u * laplacian_adjoint(g, padding)).sum().item(), rel=1e-12)


@pytest.mark.parametrize("padding", PADDINGS)
def test_adjoint_backward_equals_autograd_of_plain_form(padding: str) -> None:
    gen = torch.Generator().manual_seed(4)
    z = torch.randn(2, 3, 10, 9, dtype=torch.float64, generator=gen)
    weight = torch.randn(2, 3, 10, 9, dtype=torch.float64, generator=gen)
    x1, x2 = z.clone().requires_grad_(), z.clone().requires_grad_()
    (HeatIEL(dt=0.1, steps=7, padding=padding)(x1) * weight).sum().backward()
    (plain_heat(x2, 0.1, 7, padding) * weight).sum().backward()
    assert x1.grad is not None and x2.grad is not None
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("padding", PADDINGS)
def test_gradcheck(padding: str) -> None:
    z = torch.randn(1, 2, 5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    layer = HeatIEL(dt=0.2, steps=3, padding=padding)
    assert torch.autograd.gradcheck(layer, (z.requires_grad_(),))
    if padding == "reflect":  # the one non-self-adjoint case; the backward is itself differentiable
        assert torch.autograd.gradgradcheck(layer, (z,))


def test_backward_saves_no_tensors() -> None:
    """Heat's custom Function stores nothing for backward, for any number of steps."""
    z = torch.randn(2, 3, 16, 16)
    assert count_saved(HeatIEL(steps=5), z) == (0, 0)
    assert count_saved(HeatIEL(steps=50, dt=0.05), z) == (0, 0)
    # Restricting to some channels saves only the channel index (a constant, independent of steps).
    assert count_saved(HeatIEL(steps=5, classes=[1]), z) == count_saved(
        HeatIEL(steps=50, dt=0.05, classes=[1]), z
    )


def test_classes_act_only_on_selected_channels() -> None:
    z = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    out = HeatIEL(classes=[0, 2])(z)
    assert torch.equal(out[:, 1], z[:, 1])
    torch.testing.assert_close(out[:, [0, 2]], HeatIEL()(z[:, [0, 2]]))
    with pytest.raises(SpecError) as err:
        HeatIEL(classes=[3])(z)
    assert err.value.path == "classes"


def test_gain_guard() -> None:
    with pytest.raises(StabilityError) as err:
        build_iel("heat", dt=0.5, steps=50)
    assert err.value.path == "max_gain"
    assert "1.126e+15" in str(err.value)  # (1 + 2 * 0.5)^50 = 2^50
    assert "fewer steps" in str(err.value) and "max_gain" in str(err.value)
    assert build_iel("heat", dt=0.5, steps=50, max_gain=1e16).worst_case_gain() == 2.0**50
    assert build_iel("heat", dt=0.1, steps=30).worst_case_gain() == pytest.approx(237.376, rel=1e-5)


def test_forward_smoothing_and_its_stability_limit() -> None:
    z = torch.randn(1, 1, 12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    layer = HeatIEL(dt=0.1, steps=4, padding="circular")
    smooth = layer.evolve_forward(z, steps=30, dt=1.0)  # dt = 1 is the limit: still stable
    assert smooth.abs().max() <= z.abs().max()
    ref = z
    for _ in range(30):
        ref = ref + 1.0 * layer.rhs(ref)
    torch.testing.assert_close(smooth, ref)
    with pytest.raises(StabilityError) as err:
        layer.evolve_forward(z, dt=1.5)
    assert err.value.path == "dt" and "1.5" in str(err.value) and "dt <= 1" in str(err.value)


@pytest.mark.parametrize(
    ("params", "path"),
    [({"dt": 0}, "dt"), ({"dt": -0.1}, "dt"), ({"steps": 0}, "steps"), ({"steps": 2.5}, "steps"),
     ({"padding": "mirror"}, "padding"), ({"classes": []}, "classes"), ({"classes": [1, 1]}, "classes"),
     ({"max_gain": 0.5}, "max_gain"), ({"dt": float("nan")}, "dt")],
)  # fmt: skip
def test_bad_parameters_name_the_field(params: dict[str, object], path: str) -> None:
    with pytest.raises(SpecError) as err:
        build_iel("heat", **params)
    assert err.value.path == path
