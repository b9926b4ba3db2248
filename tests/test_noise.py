"""Label-noise models: purity, identity at rate 0, realised rates, and each model's invariant."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from ielcore.errors import SpecError, UnknownNameError
from ielcore.noise import NOISE_TYPES, build_noise, resolve_noise_params

NOISY = [name for name in NOISE_TYPES if name != "none"]


def _labels(n: int = 6, size: int = 48, seed: int = 0) -> torch.Tensor:
    """Nested 3-class labels: discs of class 1, each with a smaller class-2 disc inside."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    out = torch.zeros((n, size, size), dtype=torch.long)
    for i in range(n):
        for _ in range(3):
            cy, cx = (torch.rand(2, generator=g) * size).tolist()
            r = 4 + 6 * float(torch.rand(1, generator=g))
            d2 = (yy - cy) ** 2 + (xx - cx) ** 2
            out[i][d2 < r**2] = 1
            out[i][d2 < (0.5 * r) ** 2] = 2
    return out


def test_registry_names() -> None:
    assert set(NOISE_TYPES) == {"none", "block", "pixel", "boundary", "erase"}


@pytest.mark.parametrize("name", list(NOISE_TYPES))
def test_rate_zero_is_identity(name: str) -> None:
    noise = build_noise(name, 0.0, 3, seed=1)
    for i, y in enumerate(_labels()):
        out = noise(y, i)
        assert torch.equal(out, y) and out.dtype == torch.long


@pytest.mark.parametrize("name", list(NOISE_TYPES))
@pytest.mark.parametrize("rate", [-0.1, 1.5, math.nan, "0.1"])
def test_rate_out_of_range_raises(name: str, rate: object) -> None:
    with pytest.raises(SpecError) as err:
        build_noise(name, rate, 3, seed=0)  # type: ignore[arg-type]
    assert err.value.path == "rate"


@pytest.mark.parametrize("name", NOISY)
def test_pure_function_of_inputs(name: str) -> None:
    labels = _labels()
    a = build_noise(name, 0.5, 3, seed=7)
    b = build_noise(name, 0.5, 3, seed=7)
    before = torch.random.get_rng_state()
    outs = [a(y, i) for i, y in enumerate(labels)]
    assert torch.equal(torch.random.get_rng_state(), before), "global RNG must not be used"
    for i, y in enumerate(labels):
        assert torch.equal(b(y.clone(), i), outs[i])  # fresh object, same inputs: same output
        assert torch.equal(a(y, i, epoch=5), outs[i])  # static across epochs by default
    assert torch.equal(labels, _labels())  # inputs untouched
    assert any(not torch.equal(o, y) for o, y in zip(outs, labels))
    # a different index (same label) or a different seed gives different noise
    y = labels[0]
    assert not torch.equal(a(y, 0), a(y, 1)) or not torch.equal(a(y, 0), a(y, 2))
    c = build_noise(name, 0.5, 3, seed=8)
    assert any(not torch.equal(c(y, i), outs[i]) for i, y in enumerate(labels))


@pytest.mark.parametrize("name", NOISY)
def test_resample_each_epoch(name: str) -> None:
    noise = build_noise(name, 0.5, 3, seed=0, resample_each_epoch=True)
    labels = _labels()
    e0 = [noise(y, i, epoch=0) for i, y in enumerate(labels)]
    e1 = [noise(y, i, epoch=1) for i, y in enumerate(labels)]
    assert any(not torch.equal(a, b) for a, b in zip(e0, e1))
    assert all(torch.equal(noise(y, i, epoch=0), e0[i]) for i, y in enumerate(labels))


@pytest.mark.parametrize("name", list(NOISE_TYPES))
def test_output_is_valid_label(name: str) -> None:
    noise = build_noise(name, 0.7, 3, seed=0)
    for i, y in enumerate(_labels()):
        out = noise(y, i)
        assert out.shape == y.shape and out.dtype == torch.long
        assert int(out.min()) >= 0 and int(out.max()) <= 2


def test_labels_outside_num_classes_raise() -> None:
    with pytest.raises(SpecError, match="num_classes"):
        build_noise("pixel", 0.2, 2, seed=0)(_labels()[0], 0)


@pytest.mark.parametrize(("name", "params"), [("block", {"block": 2}), ("pixel", {})])
@pytest.mark.parametrize("rate", [0.2, 0.4])
def test_block_and_pixel_changed_fraction(name: str, params: dict, rate: float) -> None:
    """Realised changed-pixel fraction within 1 percentage point of rate * (C-1)/C (C=3, 112x112)."""
    noise = build_noise(name, rate, 3, seed=3, **params)
    labels = _labels(n=40, size=112, seed=1)
    changed = sum(int((noise(y, i) != y).sum()) for i, y in enumerate(labels)) / labels.numel()
    assert abs(changed - rate * 2 / 3) < 0.01


def test_block_noise_is_blockwise_and_covers_ragged_border() -> None:
    noise = build_noise("block", 1.0, 4, seed=0, block=3)
    y = torch.zeros((31, 31), dtype=torch.long)  # 31 = 10 * 3 + 1: a one-pixel ragged strip
    out = noise(y, 0)
    cells = out[:30, :30].reshape(10, 3, 10, 3)
    assert (cells == cells[:, :1, :, :1]).all()  # constant on each 3x3 cell
    strip = out[30, :30].reshape(10, 3)  # the ragged row is its own row of (cut) cells
    assert (strip == strip[:, :1]).all()
    # every pixel, the ragged strip included, is noised at the same rate
    strip = torch.cat([build_noise("block", 0.6, 2, seed=0, block=3)(y, i)[30] for i in range(400)])
    assert abs(float((strip != 0).float().mean()) - 0.6 / 2) < 0.03


def _distance_to_other_class(y: np.ndarray) -> np.ndarray:
    """Euclidean distance from each pixel to the nearest pixel with a different label."""
    dist = np.full(y.shape, np.inf)
    for k in np.unique(y):
        other = y != k
        if other.any():
            d = ndimage.distance_transform_edt(~other)
            dist = np.where(y == k, d, dist)
    return dist


@pytest.mark.parametrize("max_px", [1, 3])
def test_boundary_changes_only_near_boundaries(max_px: int) -> None:
    noise = build_noise("boundary", 1.0, 3, seed=0, max_px=max_px)
    total = 0
    for i, y in enumerate(_labels(n=10, size=64)):
        out = noise(y, i)
        changed = (out != y).numpy()
        total += int(changed.sum())
        assert (_distance_to_other_class(y.numpy())[changed] <= max_px + 1e-9).all()
    assert total > 0


def test_boundary_dilation_and_erosion_are_one_sided() -> None:
    labels = _labels(n=8, size=64)
    grow = build_noise("boundary", 1.0, 3, seed=0, dilate_prob=1.0, max_px=2)
    shrink = build_noise("boundary", 1.0, 3, seed=0, dilate_prob=0.0, max_px=2)
    for i, y in enumerate(labels):
        g, s = grow(y, i), shrink(y, i)
        assert (g >= y).all() and (g > y).any()  # outlines only move outward (into lower classes)
        assert (s <= y).all() and (s < y).any()


def test_boundary_rate_is_per_component() -> None:
    """With rate 0.5 about half the components change (here: isolated discs of one class)."""
    y = torch.zeros((64, 64), dtype=torch.long)
    for r in range(4):
        for c in range(4):
            y[4 + 16 * r : 12 + 16 * r, 4 + 16 * c : 12 + 16 * c] = 1
    noise = build_noise("boundary", 0.5, 2, seed=0)
    changed = []
    for i in range(50):
        out = noise(y, i)
        blocks = (out != y).reshape(4, 16, 4, 16).any(dim=(1, 3))
        changed.append(float(blocks.float().mean()))
    assert abs(np.mean(changed) - 0.5) < 0.05


@pytest.mark.parametrize("mode", ["component", "block"])
def test_erase_never_creates_foreground(mode: str) -> None:
    noise = build_noise("erase", 0.5, 3, seed=0, mode=mode)
    erased = 0
    for i, y in enumerate(_labels(n=10)):
        out = noise(y, i)
        assert ((out == y) | (out == 0)).all()
        erased += int(((out == 0) & (y != 0)).sum())
    assert erased > 0


def test_erase_component_mode_removes_whole_objects_at_rate() -> None:
    noise = build_noise("erase", 0.3, 3, seed=0)
    kept, total = 0, 0
    for i, y in enumerate(_labels(n=60)):
        out = noise(y, i)
        comp, n = ndimage.label(y.numpy() != 0, structure=np.ones((3, 3)))
        for c in range(1, n + 1):
            region = torch.from_numpy(comp == c)
            same = torch.equal(out[region], y[region])
            assert same or bool((out[region] == 0).all())
            kept += same
            total += 1
    assert abs(1 - kept / total - 0.3) < 0.06


def test_builder_errors_and_resolved_params() -> None:
    with pytest.raises(UnknownNameError, match="block, boundary, erase, none, pixel"):
        build_noise("salt", 0.1, 3, seed=0)
    with pytest.raises(SpecError, match="valid parameters are: block, resample_each_epoch"):
        build_noise("block", 0.1, 3, seed=0, size=2)
    with pytest.raises(SpecError) as err:
        build_noise("block", 0.1, 3, seed=0, block=0)
    assert err.value.path == "block"
    with pytest.raises(SpecError) as err:
        build_noise("erase", 0.1, 3, seed=0, mode="pixels")
    assert err.value.path == "mode"
    assert resolve_noise_params("block", {}) == {"resample_each_epoch": False, "block": 2}
    assert resolve_noise_params("pixel", {"resample_each_epoch": True}) == {"resample_each_epoch": True}
    assert resolve_noise_params("boundary", {"max_px": 3}) == {
        "resample_each_epoch": False,
        "max_px": 3,
        "dilate_prob": 0.5,
    }
