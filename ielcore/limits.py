"""Plan-time checks of a trial's data and model: the checks the worker runs, plus upper limits on memory.

:func:`check_trial_limits` runs, without building anything large, what a worker would find only when
the trial starts:

- the dataset builder's own parameter checks, on a one-image instance of at most 64x64 pixels
  (procedural datasets with ``num_images``; a ``folder`` dataset is checked by the plan's fingerprint);
- ``size`` at most :data:`MAX_IMAGE_SIDE` and the dataset's memory (``num_images`` images at ``size``)
  at most :data:`MAX_DATA_BYTES`;
- the model constructor's checks (``depth``, ``width``, ...), run on PyTorch's ``meta`` device (no
  memory), and the training state's memory (weights, gradients and two Adam moments: 16 bytes per
  parameter) at most :data:`MAX_MODEL_BYTES`.

Every failure is a :class:`~ielcore.errors.SpecError` at ``data.<param>`` or ``model.<param>`` saying
the memory the trial would need.
"""

from __future__ import annotations

from typing import Any

from ielcore.errors import SpecError
from ielcore.fields import check_int
from ielcore.schema import own_keys
from ielcore.spec import TrialConfig

MAX_IMAGE_SIDE = 4096
MAX_DATA_BYTES = 16 * 2**30
MAX_MODEL_BYTES = 32 * 2**30
_PROBE_SIDE = 64
_BYTES_PER_PARAM = 16


def _gib(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB"


def _probe_dataset(config: TrialConfig) -> tuple[int, int, float]:
    """``(in_channels, num_classes, bytes per image)`` of the configured dataset, from a tiny instance."""
    from ielcore.data import build_dataset

    data = dict(config.data)
    params = {k: v for k, v in data.items() if k not in own_keys("data")}
    if "size" in params and params["size"] is not None:
        check_int(params["size"], "data.size", 1)
    if "num_images" not in params or data["type"] == "folder":
        side = params.get("size")
        if isinstance(side, int) and side > MAX_IMAGE_SIDE:
            one = side * side * (3 * 4 + 8)  # an RGB float32 image and an int64 mask
            raise SpecError(
                f"size {side} is over the limit of {MAX_IMAGE_SIDE} pixels a side; every image resized to "
                f"{side}x{side} pixels would need {_gib(one)} of memory; lower data.size",
                path="data.size",
            )
        return 3, int(params.get("num_classes") or 2), 0.0
    num_images = check_int(params["num_images"], "data.num_images", 1)
    side = params.get("size")
    probe_side = min(side, _PROBE_SIDE) if isinstance(side, int) else None
    probe = {**params, "num_images": 1, **({"size": probe_side} if probe_side else {})}
    try:
        ds = build_dataset(str(data["type"]), seed=0, **probe)
    except SpecError as e:
        raise e.located(path_prefix="data") from None
    per_image = float(
        ds.images[0].numel() * ds.images.element_size() + ds.masks[0].numel() * ds.masks.element_size()
    )
    if isinstance(side, int) and probe_side:
        per_image *= (side / probe_side) ** 2
    need = per_image * num_images
    if isinstance(side, int) and side > MAX_IMAGE_SIDE:
        raise SpecError(
            f"size {side} is over the limit of {MAX_IMAGE_SIDE} pixels a side; {num_images:,} images of "
            f"{side}x{side} pixels would need {_gib(need)} of memory; lower data.size",
            path="data.size",
        )
    if need > MAX_DATA_BYTES:
        raise SpecError(
            f"{num_images:,} images of {side}x{side} pixels would need {_gib(need)} of memory in every "
            f"worker, over the limit of {_gib(MAX_DATA_BYTES)}; lower data.num_images or data.size",
            path="data.num_images",
        )
    return int(ds.images.shape[1]), int(ds.num_classes), per_image


def unet_parameters(in_channels: int, num_classes: int, width: int, depth: int) -> int:
    """The parameter count of :class:`ielcore.models.unet.UNet` (closed form of its layout)."""
    c = [width * 2**k for k in range(depth + 1)]
    n = 9 * width * (in_channels + width)  # the input DoubleConv: 9 c_out (c_in + c_out)
    n += sum(9 * c[k + 1] * (c[k] + c[k + 1]) for k in range(depth))
    for k in range(depth, 0, -1):  # ConvTranspose2d(c, c/2, 2) with bias, then DoubleConv(c, c/2)
        half = c[k] // 2
        n += c[k] * half * 4 + half + 9 * half * (c[k] + half)
    return n + width * num_classes + num_classes


def _too_big(n: int, what: str) -> SpecError | None:
    need = n * _BYTES_PER_PARAM
    if need <= MAX_MODEL_BYTES:
        return None
    return SpecError(
        f"the model ({what}) has {n:,} parameters; training it needs {_gib(need)} of memory for weights, "
        f"gradients and optimizer state alone, over the limit of {_gib(MAX_MODEL_BYTES)}; use a "
        "smaller model.width or model.depth",
        path="model",
    )


def _check_model(config: TrialConfig, in_channels: int, num_classes: int) -> None:
    import torch

    from ielcore.models import build_model

    params = {k: v for k, v in config.model.items() if k not in own_keys("model")}
    width, depth = params.get("width"), params.get("depth")
    if (
        config.model["type"] == "unet"
        and isinstance(width, int)
        and isinstance(depth, int)
        and 0 < depth < 64
    ):
        error = _too_big(
            unet_parameters(in_channels, num_classes, width, depth), f"unet, width {width}, depth {depth}"
        )
        if error is not None:
            raise error
    try:
        with torch.device("meta"):
            model = build_model(str(config.model["type"]), in_channels, num_classes, **params)
    except SpecError as e:
        raise e.located(path_prefix="model") from None
    except (TypeError, ValueError, OverflowError, RuntimeError) as e:
        raise SpecError(f"invalid model parameters: {e}", path="model") from e
    what = ", ".join(f"{k} {v}" for k, v in config.model.items() if k != "type")
    error = _too_big(sum(p.numel() for p in model.parameters()), f"{config.model['type']}, {what}")
    if error is not None:
        raise error


def check_trial_limits(config: TrialConfig) -> None:
    """Run the data and model checks a worker would run, with the memory limits (see the module doc)."""
    if config.kind != "train":
        return
    in_channels, num_classes, _ = _probe_dataset(config)
    _check_model(config, in_channels, num_classes)


def probe_summary(config: TrialConfig) -> dict[str, Any]:
    """What :func:`check_trial_limits` measured (for messages and tests)."""
    in_channels, num_classes, per_image = _probe_dataset(config)
    return {"in_channels": in_channels, "num_classes": num_classes, "bytes_per_image": per_image}


__all__ = [
    "MAX_DATA_BYTES",
    "MAX_IMAGE_SIDE",
    "MAX_MODEL_BYTES",
    "check_trial_limits",
    "probe_summary",
    "unet_parameters",
]
