"""Plan-time limits (issue 12, item 15): what a worker would find only at run time, with the memory it needs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ielcore.errors import SpecError
from ielcore.limits import MAX_DATA_BYTES, check_trial_limits, probe_summary, unet_parameters
from ielcore.models import build_model
from ielcore.spec import TrialConfig

QUICK = {
    "data": {"type": "cells", "num_images": 16, "size": 32},
    "model": {"type": "unet", "width": 8, "depth": 2},
}


@pytest.mark.parametrize(
    ("width", "depth", "cin", "classes"), [(64, 4, 3, 3), (16, 3, 1, 2), (8, 1, 3, 5), (4, 8, 3, 3)]
)
def test_unet_parameter_formula_matches_the_network(width: int, depth: int, cin: int, classes: int) -> None:
    with torch.device("meta"):
        model = build_model("unet", cin, classes, width=width, depth=depth)
    assert unet_parameters(cin, classes, width, depth) == sum(p.numel() for p in model.parameters())
    assert unet_parameters(3, 3, 64, 4) == 31_025_987  # the IEL authors' network


def test_the_probe_measures_the_real_dataset_per_image() -> None:
    cfg = TrialConfig.from_dict({**QUICK, "data": {"type": "cells", "num_images": 16, "size": 128}})
    probe = probe_summary(cfg)
    # a 3-channel float32 image and an int64 mask, measured on a 64x64 probe and scaled to 128x128
    assert probe == {"in_channels": 3, "num_classes": 3, "bytes_per_image": 128 * 128 * (3 * 4 + 8)}
    blobs = TrialConfig.from_dict({**QUICK, "data": {"type": "blobs", "num_images": 4, "size": 40}})
    assert probe_summary(blobs) == {"in_channels": 1, "num_classes": 2, "bytes_per_image": 40 * 40 * (4 + 8)}


@pytest.mark.parametrize(
    ("change", "path", "parts"),
    [
        ({"data.size": 1_000_000}, "data.size", ["over the limit of 4096", "GiB of memory"]),
        ({"data.size": 8}, "data.size", ["size"]),  # the generator's own lower bound, found by the probe
        ({"data.num_images": "1e9"}, "data.num_images", ["expected an integer"]),
        ({"data.num_images": 10**9}, "data.num_images", ["would need 19,073.5 GiB", "limit of 16.0 GiB"]),
        ({"data.cells_per_image": 99}, "data.cells_per_image", ["cells_per_image"]),
        ({"model.depth": 40}, "model", ["depth 40", "GiB of memory", "smaller model.width or model.depth"]),
        (
            {"model.depth": 9, "model.width": 1},
            "model.depth",
            ["depth"],
        ),  # small enough, but not a valid depth
        ({"model.width": 512, "model.depth": 8}, "model", ["parameters", "over the limit of 32.0 GiB"]),
    ],
)
def test_limits_name_the_field_and_the_memory(change: dict[str, object], path: str, parts: list[str]) -> None:
    cfg = TrialConfig.from_dict(QUICK).replace(change)
    with pytest.raises(SpecError) as info:
        check_trial_limits(cfg)
    assert info.value.path == path
    for part in parts:
        assert part in str(info.value), (part, str(info.value))


def test_the_limit_is_the_memory_not_a_count() -> None:
    per_image = 64 * 64 * (3 * 4 + 8)
    fits = MAX_DATA_BYTES // per_image
    check_trial_limits(
        TrialConfig.from_dict({**QUICK, "data": {"type": "cells", "num_images": fits, "size": 64}})
    )
    with pytest.raises(SpecError, match="data.num_images"):
        check_trial_limits(
            TrialConfig.from_dict({**QUICK, "data": {"type": "cells", "num_images": fits + 1, "size": 64}})
        )


def test_a_folder_size_is_bounded_without_reading_the_files(tmp_path: Path) -> None:
    cfg = TrialConfig.from_dict({**QUICK, "data": {"type": "folder", "root": str(tmp_path), "size": 50_000}})
    with pytest.raises(SpecError, match="over the limit of 4096 pixels a side") as info:
        check_trial_limits(cfg)
    assert info.value.path == "data.size" and "GiB" in str(info.value)
    check_trial_limits(cfg.replace({"data.size": 64}))
