"""The IEL contract, checked over every registered PDE type (a new type is covered automatically)."""

from __future__ import annotations

import inspect

import pytest
import torch

from ielcore.errors import SpecError, StabilityError, UnknownNameError
from ielcore.iel import IEL, IEL_TYPES, build_iel, resolve_iel_params

NAMES = sorted(IEL_TYPES)


def logits(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(2, 3, 24, 20) logits: a notched blob in class 1 plus noise, so every type has something to do."""
    gen = torch.Generator().manual_seed(0)
    y, x = torch.meshgrid(torch.arange(24.0), torch.arange(20.0), indexing="ij")
    blob = ((y - 12) ** 2 + (x - 10) ** 2 <= 64) & ~((y - 12) ** 2 + (x - 17) ** 2 <= 9)
    z = torch.randn(2, 3, 24, 20, generator=gen)
    z[:, 1] += 4 * blob
    return z.to(dtype)


def test_registry_names() -> None:
    assert set(IEL_TYPES) == {"none", "heat", "convex", "tv", "mcf", "perona_malik"}
    assert all(issubclass(cls, IEL) for cls in IEL_TYPES.values())


@pytest.mark.parametrize("name", NAMES)
def test_shape_dtype_device_and_input_untouched(name: str) -> None:
    z = logits()
    before = z.clone()
    out = build_iel(name)(z)
    assert out.shape == z.shape and out.dtype == z.dtype and out.device == z.device
    assert torch.equal(z, before)
    assert torch.isfinite(out).all()
    if name == "none":
        assert out is z
    else:
        assert not torch.equal(out, z)


@pytest.mark.parametrize("name", NAMES)
def test_gradient_flows(name: str) -> None:
    z = logits().requires_grad_()
    weight = torch.randn(z.shape, generator=torch.Generator().manual_seed(1))
    (build_iel(name)(z) * weight).sum().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    if name == "none":
        assert torch.equal(z.grad, weight)
    else:
        assert not torch.equal(z.grad, weight)  # the layer's Jacobian is not the identity


@pytest.mark.parametrize("name", NAMES)
def test_autocast_is_disabled_inside(name: str) -> None:
    layer = build_iel(name)
    z = logits()
    ref = layer(z)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(z)
        out_bf16 = layer(z.bfloat16())
    assert out.dtype == torch.float32 and torch.equal(out, ref)  # computed in float32, not bf16
    assert out_bf16.dtype == torch.bfloat16
    assert torch.equal(out_bf16, layer(z.bfloat16().float()).bfloat16())


@pytest.mark.parametrize("name", NAMES)
def test_float64_is_kept(name: str) -> None:
    z = logits(torch.float64)
    out = build_iel(name)(z)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out.float(), build_iel(name)(z.float()), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_deterministic(name: str) -> None:
    z = logits()
    assert torch.equal(build_iel(name)(z), build_iel(name)(z))


@pytest.mark.parametrize("name", NAMES)
def test_resolved_params_list_every_default(name: str) -> None:
    resolved = resolve_iel_params(name, {})
    signature = inspect.signature(IEL_TYPES[name].__init__).parameters
    assert list(resolved) == [p for p in signature if p != "self"]
    layer = build_iel(name, **resolved)
    assert 1.0 <= layer.worst_case_gain() <= 1e4
    assert list(layer.parameters()) == []  # parameter-free


@pytest.mark.parametrize("name", NAMES)
def test_unknown_parameter_is_named(name: str) -> None:
    with pytest.raises(SpecError) as err:
        build_iel(name, bogus=1)
    assert err.value.path == "bogus"


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(UnknownNameError) as err:
        build_iel("diffusion")
    assert all(name in str(err.value) for name in IEL_TYPES)


@pytest.mark.parametrize("name", [n for n in NAMES if n != "none"])
def test_common_parameters_are_validated(name: str) -> None:
    for params, path in (({"dt": 0.0}, "dt"), ({"steps": 0}, "steps"), ({"max_gain": 0.0}, "max_gain")):
        with pytest.raises(SpecError) as err:
            build_iel(name, **params)
        assert err.value.path == path
    if "padding" in resolve_iel_params(name, {}):
        with pytest.raises(SpecError) as err:
            build_iel(name, padding="nearest")
        assert err.value.path == "padding" and "circular" in str(err.value)


@pytest.mark.parametrize("name", [n for n in NAMES if n != "none"])
def test_rhs_and_forward_evolution(name: str) -> None:
    layer = build_iel(name)
    z = logits(torch.float64)
    assert layer.rhs(z).shape == z.shape
    one = layer.evolve_forward(z, steps=1, dt=0.1)
    torch.testing.assert_close(one, z + 0.1 * layer.rhs(z))
    # the layer itself is the reversed evolution: one step is u - dt * P(u)
    single = build_iel(name, steps=1, dt=0.1)
    torch.testing.assert_close(single(z), z - 0.1 * single.rhs(z))
    with pytest.raises(StabilityError) as err:
        layer.evolve_forward(z, dt=2 * layer.max_stable_dt)
    assert err.value.path == "dt"


def test_none_is_identity_with_no_parameters() -> None:
    layer = build_iel("none")
    z = logits()
    assert layer(z) is z
    assert resolve_iel_params("none", {}) == {}
    assert layer.worst_case_gain() == 1.0 and torch.equal(layer.evolve_forward(z), z)
