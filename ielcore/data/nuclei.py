"""``nuclei``: real fluorescence nuclei from the 2018 Data Science Bowl, cut into tiles.

One 512x512 greyscale image with its instance mask (125 nuclei), shipped in ``nuclei_data/`` (BBBC038,
CC0; the sample stardist 0.9.2 ships, see ``nuclei_data/README.md``).  Two classes, background (0) and
nucleus (1); the instance ids are kept in :attr:`SegData.instances` for per-object measures.

The image is cut into a grid of non-overlapping ``tile x tile`` tiles (a remainder at the right and
bottom edges is dropped), in row-major order.  Each tile's region is its grid column, so the split
(:func:`~ielcore.data.base.split_dataset`) puts the right-hand columns in validation and no tile
straddles the split.  Intensities are scaled to ``[0, 1]`` by the image's 1st and 99.8th percentiles
and clipped.  The data are fixed; ``seed`` is unused.  There is no augmentation: plain CE converges on
the unaugmented training tiles in every seed tried (``configs/nuclei_recipe.yaml``).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ielcore.data.base import SegData
from ielcore.errors import DatasetError, SpecError

CLASS_NAMES = ("background", "nucleus")
DATA_DIR = Path(__file__).parent / "nuclei_data"
IMAGE_FILE, MASK_FILE = "img2d.tif", "mask2d.tif"
MIN_TILE = 16
_LOW_PCT, _HIGH_PCT = 1.0, 99.8


@lru_cache(maxsize=1)
def load_image() -> tuple[np.ndarray, np.ndarray]:
    """``(float32 image [H, W] in [0, 1], int64 instance mask [H, W])`` of the shipped sample."""
    arrays = []
    for name in (IMAGE_FILE, MASK_FILE):
        path = DATA_DIR / name
        try:
            with Image.open(path) as im:
                arrays.append(np.asarray(im).astype(np.float64 if name == IMAGE_FILE else np.int64))
        except OSError as e:
            raise DatasetError(
                f"cannot read the shipped nuclei sample '{path}': {e}. Fix: reinstall the package "
                "(the file is package data of ielcore.data)."
            ) from e
    raw, inst = arrays
    lo, hi = np.percentile(raw, [_LOW_PCT, _HIGH_PCT])
    img = np.clip((raw - lo) / max(hi - lo, 1e-12), 0.0, 1.0).astype(np.float32)
    img.setflags(write=False)
    inst.setflags(write=False)
    return img, inst


def check_params(params: Mapping[str, Any]) -> None:
    """Raise :class:`SpecError` at ``tile`` unless it is an integer in ``[16, min(H, W) // 2]``.

    Called when a configuration is validated, so a bad tile is reported before any training starts.
    """
    tile = params.get("tile", 64)
    h, w = load_image()[0].shape
    top = min(h, w) // 2
    if isinstance(tile, bool) or not isinstance(tile, int) or not MIN_TILE <= tile <= top:
        raise SpecError(
            f"tile must be an integer in [{MIN_TILE}, {top}] for the {w}x{h} nuclei image (at most half its "
            f"width, so the train/validation split by image columns has a column of tiles on each side), "
            f"but got tile={tile!r}; e.g. tile: 64",
            path="tile",
        )


def make_nuclei(*, seed: int, tile: int = 64) -> SegData:
    """Tiles ``tile x tile`` of the DSB2018 nuclei sample; regions are the tiles' grid columns.

    ``tile`` must lie in ``[16, W // 2]`` (256 for the 512-pixel sample) so that the split has at least
    one column of tiles on each side.  ``seed`` is unused (the data are fixed).
    """
    check_params({"tile": tile})
    img, inst = load_image()
    h, w = img.shape
    rows, cols = h // tile, w // tile
    crop = (slice(0, rows * tile), slice(0, cols * tile))

    def tiles(a: np.ndarray) -> torch.Tensor:  # (rows * cols, tile, tile), row-major
        t = a[crop].reshape(rows, tile, cols, tile).transpose(0, 2, 1, 3)
        return torch.from_numpy(np.ascontiguousarray(t.reshape(rows * cols, tile, tile)))

    instances = tiles(inst)
    return SegData(
        images=tiles(img).unsqueeze(1),  # (N, 1, tile, tile)
        masks=(instances > 0).long(),
        num_classes=2,
        class_names=CLASS_NAMES,
        instances=instances,
        regions=tuple(c for _ in range(rows) for c in range(cols)),
    )
