"""Datasets: procedural generators (determinism, content, difficulty), the split, and the folder loader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ielcore.data import DATASET_TYPES, SegData, build_dataset, resolve_dataset_params, split_indices
from ielcore.data.base import gaussian_blur
from ielcore.errors import DatasetError, SpecError, UnknownNameError
from ielcore.metrics import solidity

PROCEDURAL = ["cells", "blobs"]


def test_registry_names() -> None:
    assert set(DATASET_TYPES) == {"cells", "blobs", "folder", "nuclei"}


@pytest.mark.parametrize("name", PROCEDURAL)
def test_procedural_contract_and_determinism(name: str) -> None:
    a = build_dataset(name, seed=3, num_images=12, size=48)
    b = build_dataset(name, seed=3, num_images=12, size=48)
    c = build_dataset(name, seed=4, num_images=12, size=48)
    assert isinstance(a, SegData) and len(a) == 12
    assert a.images.dtype == torch.float32 and a.masks.dtype == torch.long
    assert a.images.shape == (12, a.in_channels, 48, 48) and a.masks.shape == (12, 48, 48)
    assert float(a.images.min()) >= 0.0 and float(a.images.max()) <= 1.0
    assert int(a.masks.min()) == 0 and int(a.masks.max()) == a.num_classes - 1
    assert len(a.class_names) == a.num_classes
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks)
    assert not torch.equal(a.images, c.images) and not torch.equal(a.masks, c.masks)


def test_cells_content() -> None:
    d = build_dataset("cells", seed=0, num_images=24, size=48)
    assert d.in_channels == 3 and d.num_classes == 3
    assert d.class_names == ("background", "cytoplasm", "nucleus")
    for m in d.masks:  # every image has a cell with a nucleus
        assert (m == 1).any() and (m == 2).any()
    border = torch.cat([d.masks[:, 0], d.masks[:, -1], d.masks[:, :, 0], d.masks[:, :, -1]], dim=1)
    assert int((border != 0).any(dim=1).sum()) >= 4  # some cells are cut by the image border
    # nuclei lie inside cells: no nucleus pixel has a background 4-neighbour
    m = torch.nn.functional.pad(d.masks, (1, 1, 1, 1), value=-1)
    nuc = m[:, 1:-1, 1:-1] == 2
    for nb in (m[:, :-2, 1:-1], m[:, 2:, 1:-1], m[:, 1:-1, :-2], m[:, 1:-1, 2:]):
        assert not (nuc & (nb == 0)).any()


def _nearest_mean_dice(d: SegData, k: int) -> float:
    """Dice of class k for a pixel classifier that uses only the colour (nearest class mean)."""
    x = d.images.permute(0, 2, 3, 1).reshape(-1, d.in_channels)
    y = d.masks.reshape(-1)
    means = torch.stack([x[y == c].mean(dim=0) for c in range(d.num_classes)])
    pred = torch.cdist(x, means).argmin(dim=1)
    inter = float(((pred == k) & (y == k)).sum())
    return 2 * inter / float((pred == k).sum() + (y == k).sum())


def test_cells_are_not_separable_by_colour() -> None:
    """The cytoplasm is a weak colour shift: a per-pixel colour classifier gets it badly wrong."""
    d = build_dataset("cells", seed=0, num_images=16, size=48)
    assert _nearest_mean_dice(d, 1) < 0.7  # measured 0.54 (nucleus: 0.95)
    easy = build_dataset("cells", seed=0, num_images=16, size=48, contrast=1.0, noise_std=0.0, clutter=0)
    assert _nearest_mean_dice(easy, 1) > _nearest_mean_dice(d, 1) + 0.2  # the knobs work (0.93)


def test_blobs_objects_are_convex() -> None:
    d = build_dataset("blobs", seed=0, num_images=40, size=64, objects_per_image=1)
    assert d.in_channels == 1 and d.num_classes == 2
    sol = [solidity(m) for m in d.masks if m.any()]
    assert len(sol) >= 35 and min(sol) > 0.88
    many = build_dataset("blobs", seed=0, num_images=40, size=64, objects_per_image=6, touch_prob=1.0)
    assert np.mean([solidity(m) for m in many.masks]) < np.mean(sol) - 0.1  # unions of touching objects
    assert build_dataset("blobs", seed=0, num_images=2, size=32, channels=3).in_channels == 3


def test_builder_errors_and_resolved_params() -> None:
    with pytest.raises(UnknownNameError, match="blobs, cells, folder"):
        build_dataset("mnist", seed=0)
    with pytest.raises(SpecError, match="valid parameters are"):
        build_dataset("cells", seed=0, colour=1)
    with pytest.raises(SpecError) as err:
        build_dataset("cells", seed=0, contrast=2.0)
    assert err.value.path == "contrast"
    with pytest.raises(SpecError) as err:
        build_dataset("blobs", seed=0, channels=2)
    assert err.value.path == "channels"
    resolved = resolve_dataset_params("cells", {"size": 112})
    assert resolved["size"] == 112 and resolved["num_images"] == 64 and "seed" not in resolved
    assert resolve_dataset_params("folder", {"root": "x"})["mapping"] is None


@pytest.mark.parametrize(("n", "frac"), [(2, 0.2), (10, 0.2), (64, 0.25), (300, 0.1), (7, 0.99)])
def test_split_indices(n: int, frac: float) -> None:
    train, val = split_indices(n, frac, seed=5)
    assert (train, val) == split_indices(n, frac, seed=5)
    assert sorted(train + val) == list(range(n)) and not set(train) & set(val)
    assert 1 <= len(val) <= n - 1 and len(val) == min(max(round(n * frac), 1), n - 1)
    if n >= 10:
        assert split_indices(n, frac, seed=6) != (train, val)


def test_split_edge_cases() -> None:
    assert split_indices(1, 0.5, seed=0) == ([0], [])
    assert split_indices(0, 0.5, seed=0) == ([], [])
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(SpecError) as err:
            split_indices(10, bad, seed=0)
        assert err.value.path == "val_fraction"


# --- folder ------------------------------------------------------------------------------------------


def _write_pairs(root: Path, n: int = 3, size: int = 20, rgb: bool = True) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    shape = (n, size, size, 3) if rgb else (n, size, size)
    images = rng.integers(0, 256, shape, dtype=np.uint8)
    masks = rng.choice(np.array([0, 128, 255], dtype=np.uint8), (n, size, size))
    for i in range(n):
        Image.fromarray(images[i]).save(root / "images" / f"case{i:02d}.png")
        Image.fromarray(masks[i]).save(root / "masks" / f"case{i:02d}.png")
    return images, masks


def test_folder_round_trip(tmp_path: Path) -> None:
    images, masks = _write_pairs(tmp_path)
    d = build_dataset("folder", seed=0, root=str(tmp_path), mapping={0: 0, 128: 1, 255: 2})
    assert d.num_classes == 3 and d.in_channels == 3 and len(d) == 3
    assert torch.equal(d.images, torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255)
    expected = torch.from_numpy(masks.astype(np.int64) // 127)  # 0, 128, 255 -> 0, 1, 2
    assert torch.equal(d.masks, expected)


def test_folder_grey_unmapped_resize_and_jpeg(tmp_path: Path) -> None:
    images, _ = _write_pairs(tmp_path, rgb=False, size=24)
    for i in range(3):  # class ids stored directly, plus a JPEG image with a different suffix
        Image.fromarray((np.arange(24 * 24).reshape(24, 24) % 2).astype(np.uint8)).save(
            tmp_path / "masks" / f"case{i:02d}.png"
        )
    (tmp_path / "images" / "case02.png").unlink()
    Image.fromarray(images[2]).save(tmp_path / "images" / "case02.jpg", quality=95)
    d = build_dataset("folder", seed=0, root=str(tmp_path))
    assert d.in_channels == 1 and d.num_classes == 2
    assert torch.equal(d.images[0, 0], torch.from_numpy(images[0]).float() / 255)
    assert float((d.images[2, 0] - torch.from_numpy(images[2]).float() / 255).abs().mean()) < 0.05
    small = build_dataset("folder", seed=0, root=str(tmp_path), size=12, num_classes=4)
    assert small.images.shape == (3, 1, 12, 12) and small.masks.shape == (3, 12, 12)
    assert small.num_classes == 4 and set(small.masks.unique().tolist()) <= {0, 1}


def _error(tmp_path: Path, **params: object) -> str:
    with pytest.raises(DatasetError) as err:
        build_dataset("folder", seed=0, root=str(tmp_path), **params)
    msg = str(err.value)
    assert "Fix:" in msg and "\n" not in msg
    return msg


def test_folder_errors(tmp_path: Path) -> None:
    assert "does not exist" in _error(tmp_path / "nowhere")
    (tmp_path / "images").mkdir()
    assert "masks subfolder 'masks' does not exist" in _error(tmp_path)
    (tmp_path / "masks").mkdir()
    assert "no image files" in _error(tmp_path)
    assert "subfolder 'imgs' does not exist" in _error(tmp_path, images="imgs")


def test_folder_unmatched_stems(tmp_path: Path) -> None:
    _write_pairs(tmp_path, n=8)
    for i in range(6):
        (tmp_path / "masks" / f"case{i:02d}.png").unlink()
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(tmp_path / "masks" / "orphan.png")
    msg = _error(tmp_path)
    assert "6 image(s) without a mask: case00, case01, case02, case03, case04 (and 1 more)" in msg
    assert "1 mask(s) without an image: orphan" in msg


def test_folder_unmapped_and_out_of_range_values(tmp_path: Path) -> None:
    _write_pairs(tmp_path)
    msg = _error(tmp_path, mapping={0: 0, 255: 1})
    assert "has values [128] not in mapping" in msg and "case00.png" in msg
    msg = _error(tmp_path)  # 0/128/255 are not class ids: a mapping is suggested
    assert "mask values [0, 128, 255] are not the class ids 0..2" in msg
    assert "mapping: {0: 0, 128: 1, 255: 2}" in msg
    assert "values [128, 255] outside 0..2" in _error(tmp_path, num_classes=3)
    assert "maps to class 3 but num_classes=3" in _error(
        tmp_path, mapping={0: 0, 128: 1, 255: 3}, num_classes=3
    )


def test_folder_size_problems(tmp_path: Path) -> None:
    _write_pairs(tmp_path, n=2)
    Image.fromarray(np.zeros((30, 30, 3), np.uint8)).save(tmp_path / "images" / "big.png")
    Image.fromarray(np.zeros((30, 30), np.uint8)).save(tmp_path / "masks" / "big.png")
    assert "different sizes" in _error(tmp_path, mapping={0: 0, 128: 1, 255: 2})
    ok = build_dataset("folder", seed=0, root=str(tmp_path), mapping={0: 0, 128: 1, 255: 2}, size=16)
    assert ok.images.shape == (3, 3, 16, 16)
    Image.fromarray(np.zeros((31, 30), np.uint8)).save(tmp_path / "masks" / "big.png")
    assert "'big.png' is 30x30 but its mask 'big.png' is 30x31" in _error(tmp_path, size=16)


def test_gaussian_blur_impulse_response() -> None:
    x = torch.zeros((1, 1, 21, 21))
    x[0, 0, 10, 10] = 1.0
    out = gaussian_blur(x, 1.5)[0, 0]
    t = torch.arange(-5, 6, dtype=torch.float64)  # radius ceil(3 * 1.5) = 5
    k = torch.exp(-0.5 * (t / 1.5) ** 2)
    k = k / k.sum()
    assert torch.allclose(out[5:16, 5:16].double(), torch.outer(k, k), atol=1e-7)
    assert float(out.sum()) == pytest.approx(1.0, abs=1e-6)
    flat = torch.full((2, 3, 9, 9), 0.3)
    assert torch.allclose(gaussian_blur(flat, 2.0), flat)  # replicate padding keeps constants
