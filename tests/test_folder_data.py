"""A ``folder`` dataset: unreadable files are DatasetErrors naming the file; its fingerprint is its content."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ielcore.data import build_dataset
from ielcore.data.folder import folder_fingerprint, load_folder
from ielcore.errors import DatasetError


def make_folder(root: Path, n: int = 3) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(
            root / "images" / f"case{i}.png"
        )
        Image.fromarray((rng.random((24, 24)) > 0.5).astype(np.uint8)).save(root / "masks" / f"case{i}.png")
    return root


def test_a_valid_folder_loads(tmp_path: Path) -> None:
    data = load_folder(seed=0, root=str(make_folder(tmp_path / "d")))
    assert tuple(data.images.shape) == (3, 3, 24, 24) and data.num_classes == 2


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garbage(path: Path) -> None:
    path.write_bytes(b"this is not a PNG file at all" * 10)


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _bad_header(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[16:24] = b"\xff" * 8  # IHDR width/height: 4 G x 4 G pixels
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [_truncate, _garbage, _empty, _bad_header], ids=lambda f: f.__name__[1:])
@pytest.mark.parametrize("sub", ["images", "masks"])
def test_a_damaged_file_is_a_dataset_error_naming_it(tmp_path: Path, damage: object, sub: str) -> None:
    root = make_folder(tmp_path / "d")
    damage(root / sub / "case1.png")  # type: ignore[operator]
    with pytest.raises(DatasetError) as info:
        build_dataset("folder", seed=0, root=str(root))
    message = str(info.value)
    assert f"{sub}/case1.png" in message and "Fix:" in message
    assert ("empty" if damage is _empty else "cannot be read as an image") in message
    assert "Traceback" not in message


def test_the_fingerprint_is_the_content_of_the_files_it_loads(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "d")
    first = folder_fingerprint(str(root))
    assert first == folder_fingerprint(str(root)) and len(first) == 64
    (root / "images" / ".hidden.png").write_bytes(b"x")
    (root / "masks" / "readme.txt").write_text("not an image")
    assert folder_fingerprint(str(root)) == first  # files the loader ignores
    copy = tmp_path / "copy"
    make_folder(copy)
    assert folder_fingerprint(str(copy)) == first  # same files elsewhere: same data
    data = bytearray((root / "masks" / "case2.png").read_bytes())
    Image.fromarray(np.zeros((24, 24), dtype=np.uint8)).save(root / "masks" / "case2.png")
    assert folder_fingerprint(str(root)) != first
    (root / "masks" / "case2.png").write_bytes(bytes(data))
    assert folder_fingerprint(str(root)) == first
    with pytest.raises(DatasetError, match="does not exist"):
        folder_fingerprint(str(tmp_path / "nowhere"))


def test_loading_refuses_files_changed_since_the_plan(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "d")
    fingerprint = folder_fingerprint(str(root))
    assert load_folder(seed=0, root=str(root), fingerprint=fingerprint).images.shape[0] == 3
    Image.fromarray(np.zeros((24, 24, 3), dtype=np.uint8)).save(root / "images" / "case0.png")
    with pytest.raises(DatasetError, match="changed since the study was planned"):
        load_folder(seed=0, root=str(root), fingerprint=fingerprint)
