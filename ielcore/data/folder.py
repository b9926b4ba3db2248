"""``folder``: a user's own data -- a folder of images and a folder of label masks, matched by file stem.

Layout::

    root/
      images/  case01.png  case02.jpg  ...   (RGB or greyscale; PNG, JPEG, TIFF, BMP)
      masks/   case01.png  case02.png  ...   (single channel; values mapped to classes by ``mapping``)

Images become ``float32`` in ``[0, 1]`` (8-bit divided by 255, 16-bit by 65535); greyscale sets give one
channel, otherwise all images are converted to RGB.  With ``size`` every pair is resized to
``size x size`` (images bilinear, masks nearest neighbour); without it all images must share one size.
Every problem is reported as :class:`~ielcore.errors.DatasetError` saying what is wrong and how to fix it,
including an image or mask file that is empty, truncated or not an image (the error names the file).

:func:`folder_fingerprint` is the content hash of the matched files (name, size and SHA-256 of each
image and mask).  A study's plan sets it as the dataset's ``fingerprint`` parameter, so it is part of
the trial's identity (a folder edited in place, or another folder with the same ``root`` string, gives
other trials); :func:`load_folder` refuses to train when the files no longer match it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ielcore.data.base import SegData
from ielcore.errors import DatasetError

SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
_GREY_MODES = ("1", "L", "I", "I;16", "I;16B", "I;16L", "F")
_SHOW = 5


def _fail(root: Path, problem: str, fix: str) -> DatasetError:
    return DatasetError(f"cannot load dataset folder '{root}': {problem}. Fix: {fix}.")


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:_SHOW])
    return shown + (f" (and {len(names) - _SHOW} more)" if len(names) > _SHOW else "")


def _files_by_stem(root: Path, sub: str, kind: str) -> dict[str, Path]:
    folder = root / sub
    if not folder.is_dir():
        present = sorted(p.name for p in root.iterdir() if p.is_dir())
        raise _fail(
            root,
            f"the {kind} subfolder '{sub}' does not exist (subfolders present: {_listing(present) or 'none'})",
            f"create '{folder}' or set `{kind}` to the subfolder that holds the {kind}",
        )
    files: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or p.suffix.lower() not in SUFFIXES:
            continue
        if p.stem in files:
            raise _fail(
                root,
                f"two {kind} files share the stem '{p.stem}' ({files[p.stem].name}, {p.name})",
                "keep one file per stem in each subfolder",
            )
        files[p.stem] = p
    return files


@contextmanager
def _opened(root: Path, path: Path, kind: str) -> Iterator[Image.Image]:
    """``Image.open(path)``, with every decoding problem (empty, truncated, not an image) a DatasetError."""
    what = f"{kind} file '{path.relative_to(root) if path.is_relative_to(root) else path}'"
    try:
        if path.stat().st_size == 0:
            raise _fail(root, f"{what} is empty (0 bytes)", "replace it with a valid image or remove it")
        with Image.open(path) as im:
            im.load()
            yield im
    except DatasetError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise _fail(
            root,
            f"{what} cannot be read as an image ({type(e).__name__}: {e}); it is truncated, corrupt or "
            "not an image",
            "replace it with a valid image (re-export or re-copy it) or remove it together with its pair",
        ) from e


def _read_image(root: Path, path: Path, size: int | None) -> tuple[np.ndarray, bool, tuple[int, int]]:
    """``(float32 array [H, W] or [H, W, 3] in [0, 1], is_grey, original (width, height))``."""
    with _opened(root, path, "image") as im:
        original = im.size
        if im.mode in _GREY_MODES:
            grey, scale = True, {"1": 1.0, "L": 255.0, "F": 1.0}.get(im.mode, 65535.0)
            im2 = im.convert("F")
        else:
            grey, scale = False, 255.0
            im2 = im.convert("RGB")
        if size is not None:
            im2 = im2.resize((size, size), Image.Resampling.BILINEAR)
        arr = np.asarray(im2, dtype=np.float32) / scale
    return np.clip(arr, 0.0, 1.0), grey, original


def _read_mask(root: Path, path: Path, size: int | None) -> tuple[np.ndarray, tuple[int, int]]:
    """``(int64 array [H, W] of raw mask values, original (width, height))``."""
    with _opened(root, path, "mask") as opened:
        original = opened.size
        im: Image.Image = opened
        if im.mode in ("LA", "PA"):
            im = im.getchannel(0)
        elif im.mode == "RGBA":
            im = im.convert("RGB")
        if size is not None:
            im = im.resize((size, size), Image.Resampling.NEAREST)
        arr = np.asarray(im)
    if arr.ndim == 3:
        if not (arr == arr[..., :1]).all():
            raise _fail(
                root,
                f"mask '{path.name}' is a colour image whose channels differ",
                "save masks as single-channel (greyscale or palette) images whose values are class ids "
                "or values listed in `mapping`",
            )
        arr = arr[..., 0]
    return arr.astype(np.int64), original


def load_folder(
    *,
    seed: int,
    root: str,
    images: str = "images",
    masks: str = "masks",
    mapping: Mapping[int, int] | None = None,
    size: int | None = None,
    num_classes: int | None = None,
    fingerprint: str | None = None,
) -> SegData:
    """Load ``root/images`` and ``root/masks`` (matched by file stem) into a :class:`SegData`.

    ``mapping``: mask value -> class (``{0: 0, 128: 1, 255: 2}`` for the WBC data); ``None`` takes mask
    values ``0..C-1`` as classes.  ``num_classes``: defaults to ``max(mapping.values()) + 1``, or without
    a mapping to the largest mask value + 1 (at least 2; every value in between must occur, so 0/255
    masks ask for a mapping instead of silently making 256 classes).  ``size``: resize to ``size x size``.
    ``fingerprint``: :func:`folder_fingerprint` of the files when the trial was planned (set by the plan);
    loading fails when the files changed since.  ``seed`` is unused (the data are fixed); it is accepted
    so every dataset is built the same way.
    """
    base = _root(root, images, masks)
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 1):
        raise _fail(base, f"size={size!r} is not a positive integer", "set `size` to e.g. 112, or to null")
    image_files, mask_files = _matched_files(base, images, masks)
    if fingerprint is not None:
        now = _fingerprint(image_files, mask_files)
        if now != fingerprint:
            raise _fail(
                base,
                f"the files changed since the study was planned (fingerprint {now[:12]}, planned "
                f"{fingerprint[:12]})",
                "submit the study again: the plan records the new files as other trials",
            )
    lut = _lookup_table(base, mapping, num_classes)
    stems = sorted(image_files)
    imgs, msks, greys = [], [], []
    for stem in stems:
        img, grey, img_size = _read_image(base, image_files[stem], size)
        msk, msk_size = _read_mask(base, mask_files[stem], size)
        if img_size != msk_size:
            raise _fail(
                base,
                f"image '{image_files[stem].name}' is {img_size[0]}x{img_size[1]} but its mask "
                f"'{mask_files[stem].name}' is {msk_size[0]}x{msk_size[1]}",
                "make each mask the size of its image",
            )
        imgs.append(img)
        msks.append(msk if lut is None else _apply_mapping(base, msk, lut, mask_files[stem].name, mapping))
        greys.append(grey)

    shapes = sorted({m.shape for m in msks})
    if len(shapes) > 1:
        raise _fail(
            base,
            f"images have different sizes {[f'{w}x{h}' for h, w in shapes[:_SHOW]]}",
            "set `size` (e.g. size: 112) to resize every image and mask",
        )
    if lut is None:
        nc = _classes_from_masks(base, msks, num_classes, [mask_files[s].name for s in stems])
    else:
        nc = num_classes if num_classes is not None else max(2, max(lut.values(), default=0) + 1)

    if all(greys):
        stacked = np.stack(imgs)[:, None]  # (N, 1, H, W)
    else:
        rgb = [np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a for a in imgs]
        stacked = np.stack(rgb).transpose(0, 3, 1, 2)  # (N, 3, H, W)
    return SegData(
        images=torch.from_numpy(np.ascontiguousarray(stacked, dtype=np.float32)),
        masks=torch.from_numpy(np.stack(msks)),
        num_classes=nc,
        class_names=("background", *(f"class{k}" for k in range(1, nc))),
    )


def _root(root: str, images: str, masks: str) -> Path:
    base = Path(root).expanduser()
    if not base.is_dir():
        raise _fail(
            base,
            "the folder does not exist" if not base.exists() else "the path is a file, not a folder",
            f"set `root` to the folder that contains '{images}/' and '{masks}/'",
        )
    return base


def _matched_files(base: Path, images: str, masks: str) -> tuple[dict[str, Path], dict[str, Path]]:
    """``(image files, mask files)`` by stem; every image has a mask and every mask an image."""
    image_files = _files_by_stem(base, images, "images")
    mask_files = _files_by_stem(base, masks, "masks")
    if not image_files:
        raise _fail(
            base,
            f"no image files ({', '.join(SUFFIXES)}) in '{base / images}'",
            "put the images there, or set `images` to the subfolder that holds them",
        )
    no_mask = sorted(set(image_files) - set(mask_files))
    no_image = sorted(set(mask_files) - set(image_files))
    if no_mask or no_image:
        parts = []
        if no_mask:
            parts.append(f"{len(no_mask)} image(s) without a mask: {_listing(no_mask)}")
        if no_image:
            parts.append(f"{len(no_image)} mask(s) without an image: {_listing(no_image)}")
        raise _fail(
            base,
            "; ".join(parts),
            "give every image a mask with the same file stem (e.g. images/case01.jpg and masks/case01.png)",
        )
    return image_files, mask_files


def _lookup_table(
    base: Path, mapping: Mapping[int, int] | None, num_classes: int | None
) -> dict[int, int] | None:
    lut: dict[int, int] | None = None
    if mapping is not None:
        try:
            lut = {int(k): int(v) for k, v in mapping.items()}
        except (TypeError, ValueError, AttributeError) as e:
            raise _fail(
                base, f"mapping={mapping!r} is not a dict of int -> int", "e.g. {0: 0, 255: 1}"
            ) from e
        if min(lut.values(), default=0) < 0:
            raise _fail(base, f"mapping={mapping!r} has a negative class", "use classes 0..C-1")
    if num_classes is not None and (
        not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2
    ):
        raise _fail(
            base, f"num_classes={num_classes!r} is not an integer >= 2", "set `num_classes` or leave it unset"
        )
    if lut is not None and num_classes is not None and max(lut.values(), default=0) >= num_classes:
        raise _fail(
            base,
            f"mapping={mapping!r} maps to class {max(lut.values())} but num_classes={num_classes}",
            "raise `num_classes` or fix `mapping`",
        )
    return lut


def _apply_mapping(
    base: Path, msk: np.ndarray, lut: dict[int, int], name: str, mapping: Mapping[int, int] | None
) -> np.ndarray:
    values = np.unique(msk)
    unmapped = [int(v) for v in values if int(v) not in lut]
    if unmapped:
        raise _fail(
            base,
            f"mask '{name}' has values {unmapped[:10]} not in mapping={mapping!r}",
            "add these values to `mapping` (mask value -> class)",
        )
    table = np.zeros(int(values.max()) + 1, dtype=np.int64)
    for v in values:
        table[int(v)] = lut[int(v)]
    mapped: np.ndarray = table[msk]
    return mapped


def _classes_from_masks(base: Path, msks: list[np.ndarray], num_classes: int | None, names: list[str]) -> int:
    """The number of classes when mask values are class ids (no ``mapping``)."""
    top, low = max(int(m.max()) for m in msks), min(int(m.min()) for m in msks)
    if num_classes is None and low >= 0:
        present = sorted(set().union(*(np.unique(m).tolist() for m in msks)))
        if len(present) < top + 1:  # e.g. 0/128/255 masks: values are not class ids
            suggestion = {v: i for i, v in enumerate(present)}
            raise _fail(
                base,
                f"the mask values {present[:10]} are not the class ids 0..{len(present) - 1}",
                f"set `mapping` (mask value -> class), e.g. mapping: {suggestion}, or set `num_classes`",
            )
    nc = num_classes if num_classes is not None else max(2, top + 1)
    if low < 0 or top >= nc:
        i = next(i for i, m in enumerate(msks) if int(m.max()) >= nc or int(m.min()) < 0)
        bad = sorted(int(v) for v in np.unique(msks[i]) if not 0 <= v < nc)
        raise _fail(
            base,
            f"mask '{names[i]}' has values {bad[:10]} outside 0..{nc - 1}",
            "set `mapping` (e.g. {0: 0, 128: 1, 255: 2}) to map mask values to classes",
        )
    return nc


def _fingerprint(image_files: Mapping[str, Path], mask_files: Mapping[str, Path]) -> str:
    digest = hashlib.sha256()
    for kind, files in (("images", image_files), ("masks", mask_files)):
        for stem in sorted(files):
            path = files[stem]
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            digest.update(f"{kind}/{path.name}\0{path.stat().st_size}\0{h.hexdigest()}\n".encode())
    return digest.hexdigest()


def folder_fingerprint(root: str, images: str = "images", masks: str = "masks") -> str:
    """SHA-256 over the name, size and SHA-256 of every image and mask file a ``folder`` dataset loads.

    Only files :func:`load_folder` reads count (image suffixes, no hidden files).  Raises
    :class:`DatasetError` when a subfolder is missing.
    """
    base = _root(root, images, masks)
    return _fingerprint(_files_by_stem(base, images, "images"), _files_by_stem(base, masks, "masks"))
