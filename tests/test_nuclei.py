"""The shipped DSB2018 nuclei sample and the ``nuclei`` dataset: tiling, the split by region, errors."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from ielcore.data import SegData, build_dataset, split_dataset, split_indices
from ielcore.data.nuclei import DATA_DIR, load_image
from ielcore.errors import SpecError
from ielcore.spec import TrialConfig

SHA256 = {
    "img2d.tif": "f9ccc1571b92c861ff87e28463068b43f61bd47357ed0503f711e5cd1eb97750",
    "mask2d.tif": "59ad5e820b7982ca9d13e946fa6e7f64e2714899e00a2ae6c69aa79aad53d46f",
}
NUCLEUS_PIXELS = 52226  # of 512 x 512 in mask2d.tif
NUCLEI = 125


def test_shipped_files_are_the_stardist_sample() -> None:
    for name, digest in SHA256.items():
        assert hashlib.sha256((DATA_DIR / name).read_bytes()).hexdigest() == digest
    assert "BSD 3-Clause" in (DATA_DIR / "LICENSE-stardist.txt").read_text()
    readme = (DATA_DIR / "README.md").read_text()
    assert "CC0" in readme and "Caicedo" in readme and "BBBC038" in readme
    img, inst = load_image()
    assert img.shape == inst.shape == (512, 512) and img.dtype == np.float32
    assert img.min() == 0.0 and img.max() == 1.0 and (img == 1.0).mean() < 0.005  # 1st..99.8th pct
    assert int((inst > 0).sum()) == NUCLEUS_PIXELS and len(np.unique(inst)) - 1 == NUCLEI
    assert img[inst > 0].mean() > 2 * img[inst == 0].mean()  # nuclei are bright


@pytest.mark.parametrize("tile", [16, 48, 64, 100, 256])
def test_tiles_cut_the_image_in_row_major_order(tile: int) -> None:
    d = build_dataset("nuclei", seed=0, tile=tile)
    img, inst = load_image()
    rows = cols = 512 // tile
    assert isinstance(d, SegData) and len(d) == rows * cols and d.num_classes == 2
    assert d.images.shape == (rows * cols, 1, tile, tile) and d.images.dtype == torch.float32
    assert d.masks.dtype == torch.long and set(d.masks.unique().tolist()) <= {0, 1}
    assert d.instances is not None and torch.equal(d.masks, (d.instances > 0).long())
    assert d.regions == tuple(i % cols for i in range(rows * cols))
    for i in (0, cols - 1, rows * cols // 2 + 1, rows * cols - 1):  # pixel coordinates of tile i
        y, x = (i // cols) * tile, (i % cols) * tile
        assert np.array_equal(d.images[i, 0].numpy(), img[y : y + tile, x : x + tile])
        assert np.array_equal(d.instances[i].numpy(), inst[y : y + tile, x : x + tile])


def test_whole_image_kept_at_tile_64_and_deterministic() -> None:
    a, b, c = (build_dataset("nuclei", seed=s, tile=64) for s in (0, 0, 7))
    assert int(a.masks.sum()) == NUCLEUS_PIXELS  # 512 = 8 x 64: nothing cropped
    assert a.instances is not None and len(a.instances.unique()) - 1 == NUCLEI
    for other in (b, c):  # fixed data: the seed changes nothing
        assert torch.equal(a.images, other.images) and torch.equal(a.masks, other.masks)
        assert a.regions == other.regions


@pytest.mark.parametrize("tile", [32, 64, 128, 256])
@pytest.mark.parametrize("val_fraction", [0.1, 0.25, 0.5, 0.9])
def test_split_by_region_never_straddles(tile: int, val_fraction: float) -> None:
    d = build_dataset("nuclei", seed=0, tile=tile)
    cols = 512 // tile
    train, val = split_dataset(d, val_fraction, seed=3)
    n_val_cols = min(max(round(cols * val_fraction), 1), cols - 1)
    assert sorted(train + val) == list(range(len(d))) and train and val
    assert len(val) == n_val_cols * cols  # whole columns (rows == cols)
    # pixel x-ranges: every training tile lies left of every validation tile
    x0 = [(i % cols) * tile for i in range(len(d))]
    assert max(x0[i] + tile for i in train) <= min(x0[i] for i in val) == (cols - n_val_cols) * tile
    assert split_dataset(d, val_fraction, seed=9) == (train, val)  # by region: the seed is unused


def test_class_balance_of_the_split() -> None:
    d = build_dataset("nuclei", seed=0, tile=64)
    train, val = split_dataset(d, 0.25, seed=0)
    assert (len(train), len(val)) == (48, 16)
    fg_train, fg_val = float(d.masks[train].float().mean()), float(d.masks[val].float().mean())
    assert 0.15 < fg_train < 0.25 and 0.12 < fg_val < 0.25  # nuclei are 20 % of the image
    assert (d.masks[train].sum(dim=(1, 2)) > 0).float().mean() > 0.9  # nearly every tile has nuclei


@pytest.mark.parametrize("tile", [8, 15, 257, 512, 1000, 64.0, "64", True, None])
def test_bad_tile_names_the_field(tile: object) -> None:
    with pytest.raises(SpecError, match=r"tile must be an integer in \[16, 256\]") as err:
        build_dataset("nuclei", seed=0, tile=tile)
    assert err.value.path == "tile"
    with pytest.raises(SpecError) as err2:
        TrialConfig.from_dict({"data": {"type": "nuclei", "tile": tile}})
    assert err2.value.path == "data.tile"


def test_unknown_nuclei_parameter() -> None:
    with pytest.raises(SpecError, match="size"):
        TrialConfig.from_dict({"data": {"type": "nuclei", "size": 64}})


def test_split_dataset_without_regions_is_the_random_split() -> None:
    d = build_dataset("cells", seed=0, num_images=10, size=32)
    assert d.regions is None and d.instances is None
    assert split_dataset(d, 0.3, seed=5) == split_indices(10, 0.3, 5)


def test_split_dataset_errors_and_segdata_checks() -> None:
    d = build_dataset("nuclei", seed=0, tile=256)
    with pytest.raises(SpecError, match="val_fraction"):
        split_dataset(d, 1.0, seed=0)
    one_region = SegData(d.images, d.masks, 2, ("background", "nucleus"), regions=(0, 0, 0, 0))
    with pytest.raises(SpecError, match="at least 2 regions"):
        split_dataset(one_region, 0.25, seed=0)
    with pytest.raises(SpecError, match="one non-negative ordinal per sample") as err:
        SegData(d.images, d.masks, 2, ("background", "nucleus"), regions=(0, 1))
    assert err.value.path == "regions"
    with pytest.raises(SpecError, match="instances must be a LongTensor") as err:
        SegData(d.images, d.masks, 2, ("background", "nucleus"), instances=d.masks[:, :8])
    assert err.value.path == "instances"


def test_trainer_splits_nuclei_by_region() -> None:
    from ielcore.train import _load_data

    cfg = TrialConfig.from_dict({"data": {"type": "nuclei", "tile": 128, "val_fraction": 0.25}})
    data = _load_data(cfg, None)
    assert (data.train_idx, data.val_idx) == ([0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14], [3, 7, 11, 15])
