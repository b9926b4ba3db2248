"""A run's artifacts: the resolved configuration, a self-describing checkpoint, a prediction grid, the result.

``write_artifacts`` is called by the trainers (:func:`ielcore.train.train_trial` and the fused trainer)
once a run has ended; :func:`load_checkpoint` rebuilds the model of a checkpoint.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from ielcore.result import TrialData, TrialResult
    from ielcore.spec import TrialConfig

CHECKPOINT_FORMAT = 1


def write_artifacts(
    out_dir: str,
    cfg: TrialConfig,
    model: torch.nn.Module,
    data: TrialData,
    pred: torch.Tensor | None,
    result: TrialResult,
) -> dict[str, str]:
    """Write the artifacts of ``cfg``'s finished run into ``out_dir``; return name -> path."""
    os.makedirs(out_dir, exist_ok=True)
    paths: dict[str, str] = {}
    config_path = os.path.join(out_dir, "config.json")
    with open(config_path, "w") as f:
        json.dump(cfg.to_dict(), f, indent=2, sort_keys=True)
    paths["config"] = config_path
    if cfg.artifacts["checkpoint"]:
        ckpt = os.path.join(out_dir, "checkpoint.pt")
        torch.save(
            {
                "format": CHECKPOINT_FORMAT,
                "config": cfg.to_dict(),
                "trial_hash": cfg.identity,
                "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "final_metrics": result.final_metrics,
                "in_channels": int(data.images.shape[1]),
                "num_classes": data.num_classes,
            },
            ckpt,
        )
        paths["checkpoint"] = ckpt
    if cfg.artifacts["prediction_grid"] and pred is not None:
        from ielcore.noise import build_noise
        from ielcore.viz import prediction_grid

        n = min(4, len(data.val_idx))
        idx = data.val_idx[:n]
        # Validation labels are never noised for training or scoring; the grid shows what the noise model
        # would have done to them, beside the clean truth and the prediction.
        noise_cfg = dict(cfg.noise)
        params = {k: v for k, v in noise_cfg.items() if k not in ("type", "rate")}
        noise = build_noise(noise_cfg["type"], noise_cfg["rate"], data.num_classes, cfg.seed, **params)
        noisy = torch.stack([noise(data.clean[i], i) for i in idx])
        grid = os.path.join(out_dir, "predictions.png")
        prediction_grid(grid, data.images[idx], noisy, data.clean[idx], pred[:n], data.num_classes)
        paths["prediction_grid"] = grid
    result_path = os.path.join(out_dir, "result.json")
    paths["result"] = result_path
    with open(result_path, "w") as f:
        json.dump({**result.to_dict(), "artifacts": {**result.artifacts, **paths}}, f, indent=2)
    return paths


def load_checkpoint(path: str) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the model of a self-describing checkpoint (loaded with ``weights_only=True``)."""
    from ielcore.models import build_model

    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    model_cfg = dict(ckpt["config"]["model"])
    model = build_model(model_cfg.pop("type"), ckpt["in_channels"], ckpt["num_classes"], **model_cfg)
    model.load_state_dict(ckpt["state_dict"])
    return model, ckpt
