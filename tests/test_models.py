"""Segmentation model registry: contract over every registered model, U-Net and PDE-CNN parameter counts."""

from __future__ import annotations

import inspect

import pytest
import torch

from ielcore.errors import SpecError, UnknownNameError
from ielcore.models import MODEL_TYPES, build_model, resolve_model_params
from ielcore.models.unet import UNet

# A small, fast configuration of every registered model (a new model must add one here).
SMALL = {
    "unet": {"width": 4, "depth": 2},
    "parabolic": {"width": 4, "units": 2, "steps_per_unit": 2},
    "hamiltonian": {"width": 4, "units": 2, "steps_per_unit": 2},
    "second_order": {"width": 4, "units": 2, "steps_per_unit": 2},
}


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_every_model_has_a_small_config() -> None:
    assert set(SMALL) == set(MODEL_TYPES) == {"unet", "parabolic", "hamiltonian", "second_order"}


@pytest.mark.parametrize("name", sorted(MODEL_TYPES))
@pytest.mark.parametrize("size", [(32, 32), (19, 23), (8, 40)])
def test_output_shape_any_size(name: str, size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    model = build_model(name, 3, 5, **SMALL[name])
    x = torch.randn(2, 3, *size)
    out = model(x)
    assert out.shape == (2, 5, *size)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(MODEL_TYPES))
def test_gradients_reach_every_parameter(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, 1, 2, **SMALL[name])
    x = torch.randn(2, 1, 16, 16)
    target = torch.randint(0, 2, (2, 16, 16))
    loss = torch.nn.functional.cross_entropy(model(x), target)
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is not None for g in grads.values()), [n for n, g in grads.items() if g is None]
    assert all(torch.isfinite(g).all() for g in grads.values() if g is not None)
    assert sum(float(g.abs().sum()) for g in grads.values() if g is not None) > 0
    x.requires_grad_(True)
    model.zero_grad()
    model(x).sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


@pytest.mark.parametrize("name", sorted(MODEL_TYPES))
def test_deterministic_given_seed(name: str) -> None:
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))

    def run(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        return build_model(name, 3, 2, **SMALL[name])(x)

    a, b, c = run(0), run(0), run(1)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("name", sorted(MODEL_TYPES))
def test_eval_mode_single_image(name: str) -> None:
    model = build_model(name, 3, 2, **SMALL[name]).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 20, 12)).shape == (1, 2, 20, 12)


@pytest.mark.parametrize("name", sorted(MODEL_TYPES))
def test_resolve_fills_every_default(name: str) -> None:
    resolved = resolve_model_params(name, {"width": 6})
    sig = inspect.signature(MODEL_TYPES[name].__init__).parameters
    expected = {k: p.default for k, p in sig.items() if k not in ("self", "in_channels", "num_classes")}
    assert resolved == {**expected, "width": 6}
    torch.manual_seed(0)
    a = build_model(name, 3, 2, width=6)
    torch.manual_seed(0)
    b = build_model(name, 3, 2, **resolved)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_unknown_model_lists_valid_names() -> None:
    with pytest.raises(UnknownNameError, match="hamiltonian, parabolic, second_order, unet"):
        build_model("resnet", 3, 2)
    with pytest.raises(UnknownNameError):
        resolve_model_params("resnet", {})


@pytest.mark.parametrize("name", sorted(MODEL_TYPES))
def test_unknown_parameter_is_named(name: str) -> None:
    with pytest.raises(SpecError) as err:
        build_model(name, 3, 2, widht=8)
    assert err.value.path == "widht" and "width" in str(err.value)


@pytest.mark.parametrize(
    ("name", "params", "path"),
    [
        ("unet", {"width": 0}, "width"),
        ("unet", {"depth": 9}, "depth"),
        ("unet", {"depth": 2.0}, "depth"),
        ("parabolic", {"dt": 0.0}, "dt"),
        ("parabolic", {"dt": float("nan")}, "dt"),
        ("second_order", {"units": 0}, "units"),
        ("second_order", {"steps_per_unit": 0}, "steps_per_unit"),
        ("hamiltonian", {"width": 7}, "width"),
        ("parabolic", {"normalization": "batch"}, "normalization"),
        ("parabolic", {"width": True}, "width"),
    ],
)
def test_bad_values_raise_spec_error(name: str, params: dict[str, object], path: str) -> None:
    with pytest.raises(SpecError) as err:
        build_model(name, 3, 2, **params)
    assert err.value.path == path
    assert repr(params[path]) in str(err.value)


def test_authors_unet_has_31_03_million_parameters() -> None:
    model = build_model("unet", 3, 3, width=64, depth=4)
    assert n_params(model) == 31_025_987
    assert round(n_params(model) / 1e6, 2) == 31.03


def unet_count(c_in: int, n: int, w: int, d: int) -> int:
    """Closed form: double convs 9·c_out·(c_in + c_out), up-convs 4·c·c/2 + c/2, head w·n + n."""
    total = 9 * w * (c_in + w) + w * n + n
    for k in range(d):
        c = w * 2 ** (k + 1)
        total += 9 * c * (c // 2 + c)  # encoder block c/2 -> c
        total += 4 * c * (c // 2) + c // 2  # transposed conv c -> c/2 with bias
        total += 9 * (c // 2) * (c + c // 2)  # decoder block c -> c/2
    return total


@pytest.mark.parametrize(("c_in", "n", "w", "d"), [(3, 3, 64, 4), (1, 2, 8, 2), (3, 4, 5, 3)])
def test_unet_parameter_count_closed_form(c_in: int, n: int, w: int, d: int) -> None:
    assert n_params(UNet(c_in, n, width=w, depth=d)) == unet_count(c_in, n, w, d)


@pytest.mark.parametrize("name", ["parabolic", "hamiltonian", "second_order"])
def test_pde_segmenter_parameter_count(name: str) -> None:
    c_in, n, w, units, steps = 3, 4, 8, 2, 3
    step = 2 * (9 * (w // 2) ** 2 + w) if name == "hamiltonian" else 9 * w * w + 2 * w
    expected = 9 * c_in * w + 2 * w + units * (steps * step + w * w + 2 * w) + w * n + n
    model = build_model(name, c_in, n, width=w, units=units, steps_per_unit=steps)
    assert n_params(model) == expected


def test_unet_odd_size_equals_replicate_padded_then_cropped() -> None:
    torch.manual_seed(0)
    model = UNet(1, 2, width=4, depth=2).eval()
    x = torch.randn(1, 1, 13, 15)
    padded = torch.nn.functional.pad(x, (0, 1, 0, 3), mode="replicate")  # (1, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x), model(padded)[..., :13, :15])
