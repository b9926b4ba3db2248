"""The convex-shape IEL: the concave-pocket detector's figures (research notes §1.2) and the layer."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ielcore.errors import SpecError, StabilityError
from ielcore.iel import ConvexIEL, build_iel, detect_pockets
from ielcore.iel.convex import box_count

N = 128


def disc(cy: float, cx: float, r: float) -> torch.Tensor:
    y, x = torch.meshgrid(torch.arange(N), torch.arange(N), indexing="ij")
    return (y - cy) ** 2 + (x - cx) ** 2 <= r**2


PLAIN = disc(64, 64, 40)
NOTCHED = PLAIN & ~disc(64, 104, 15)


def logits_of(foreground: torch.Tensor, scale: float = 4.0) -> torch.Tensor:
    """3-class logits (1, 3, H, W) whose argmax is 1 on ``foreground`` and 0 elsewhere."""
    f = foreground.double()
    return torch.stack([scale * (1 - f), scale * f, torch.zeros_like(f)])[None]


@pytest.mark.parametrize(("radii", "background", "foreground"), [((10,), 38, 133), ((5, 10, 15), 62, 149)])
def test_notched_disc_figures(radii: tuple[int, ...], background: int, foreground: int) -> None:
    assert int(PLAIN.sum()) == 5025
    plain = detect_pockets(PLAIN, radii, threshold=0.5, dilation=3)
    assert int(plain.background.sum()) == 0 and int(plain.foreground.sum()) == 0
    pockets = detect_pockets(NOTCHED, radii, threshold=0.5, dilation=3)
    assert int(pockets.background.sum()) == background
    assert int(pockets.foreground.sum()) == foreground
    assert not (pockets.background & NOTCHED).any() and (pockets.foreground <= NOTCHED).all()
    assert int(pockets.region.sum()) == background + foreground


def test_pockets_lie_in_the_notch_and_batch_dims_are_kept() -> None:
    batch = torch.stack([PLAIN, NOTCHED])[:, None]  # (2, 1, H, W)
    pockets = detect_pockets(batch, (10,))
    assert pockets.background.shape == batch.shape
    assert pockets.region[0].sum() == 0
    ys, xs = torch.nonzero(pockets.background[1, 0], as_tuple=True)
    assert ((ys - 64) ** 2 + (xs - 104) ** 2 <= 15**2).all()  # only inside the removed notch


def test_box_count_equals_zero_padded_convolution() -> None:
    mask = torch.rand(2, 23, 19, generator=torch.Generator().manual_seed(0)) > 0.6
    for r in (1, 4, 12):
        ones = torch.ones(1, 1, 2 * r + 1, 2 * r + 1, dtype=torch.float64)
        ref = F.conv2d(mask[:, None].double(), ones, padding=r)[:, 0]
        assert torch.equal(box_count(mask, r).double(), ref)


def test_straight_edge_flags_nothing() -> None:
    half = torch.zeros(N, N, dtype=torch.bool)
    half[:, : N // 2] = True
    assert int(detect_pockets(half, (5, 10, 15)).region.sum()) == 0


def test_layer_leaves_convex_shapes_alone() -> None:
    z = logits_of(PLAIN)
    assert torch.equal(build_iel("convex")(z), z)


def test_layer_deepens_the_pocket() -> None:
    z = logits_of(NOTCHED)
    layer = build_iel("convex", radii=(10,))
    out = layer(z)
    changed = (out != z).any(1)[0]
    assert torch.equal(out[:, [0, 2]], z[:, [0, 2]])  # only the target channel moves
    assert (out[:, 1] <= z[:, 1]).all()  # and only downwards
    first = detect_pockets(NOTCHED, (10,)).region
    assert (changed >= first).all() and changed.any()
    foreground_after = out.argmax(1)[0] != 0
    assert int(foreground_after.sum()) < int(NOTCHED.sum())  # the pocket grew into the shape
    assert (foreground_after <= NOTCHED).all()


def test_one_step_matches_the_formula() -> None:
    """``z1 <- z1 - dt * M * sqrt(|∇φ|² + eps)``, ``φ = z1 - z0``, central differences (weight 1/2)."""
    noise = torch.randn(1, 3, N, N, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    z = logits_of(NOTCHED) + 0.1 * noise.clamp(-3, 3)  # margin 4 > 0.6: same argmax as the clean shape
    layer = ConvexIEL(dt=0.3, steps=1, radii=(10,))
    region = detect_pockets(z.argmax(1) != 0, (10,)).region[0]
    assert torch.equal(region, detect_pockets(NOTCHED, (10,)).region)
    gy, gx = torch.gradient(z[0, 1] - z[0, 0])  # central in the interior, where the notch is
    expected = z[0, 1] - 0.3 * region.double() * torch.sqrt(gx**2 + gy**2 + 1e-6)
    torch.testing.assert_close(layer(z)[0, 1], expected, rtol=1e-12, atol=1e-12)


def test_rhs_is_the_convexifying_motion_and_forward_fills_the_pocket() -> None:
    layer = ConvexIEL(radii=(10,))
    z = logits_of(NOTCHED)
    p = layer.rhs(z)
    region = detect_pockets(NOTCHED, (10,)).region
    assert (p[0, 1] > 0).equal(region) and (p[:, [0, 2]] == 0).all()
    filled = layer.evolve_forward(z, steps=20, dt=0.5)
    assert int((filled.argmax(1)[0] != 0).sum()) > int(NOTCHED.sum())
    with pytest.raises(StabilityError) as err:
        layer.evolve_forward(z, dt=2.0)
    assert err.value.path == "dt"


def test_gradient_reaches_target_and_background_channels() -> None:
    z = logits_of(NOTCHED).requires_grad_()
    build_iel("convex")(z)[:, 1].sum().backward()
    assert z.grad is not None
    assert z.grad[:, 1].abs().sum() > 0 and z.grad[:, 0].abs().sum() > 0 and (z.grad[:, 2] == 0).all()


def test_gain_is_displacement_based() -> None:
    assert build_iel("convex").worst_case_gain() == pytest.approx(3.0)
    assert build_iel("convex", dt=0.5, steps=10).worst_case_gain() == pytest.approx(6.0)
    with pytest.raises(StabilityError):
        build_iel("convex", dt=1.0, steps=200, max_gain=100)


@pytest.mark.parametrize(
    ("params", "path"),
    [({"radii": []}, "radii"), ({"radii": [0]}, "radii"), ({"threshold": 0}, "threshold"),
     ({"threshold": 1.5}, "threshold"), ({"dilation": -1}, "dilation"), ({"target_class": 0}, "target_class"),
     ({"eps": 0}, "eps"), ({"steps": 0}, "steps"), ({"padding": "zeros"}, "padding")],
)  # fmt: skip
def test_bad_parameters_name_the_field(params: dict[str, object], path: str) -> None:
    with pytest.raises(SpecError) as err:
        build_iel("convex", **params)
    assert err.value.path == path


def test_too_few_channels() -> None:
    with pytest.raises(SpecError) as err:
        build_iel("convex", target_class=3)(torch.zeros(1, 3, 8, 8))
    assert err.value.path == "target_class"
