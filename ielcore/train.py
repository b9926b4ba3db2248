"""One training run, top to bottom: ``train_trial(config, reporter) -> TrialResult``.

The IEL is applied to the loss only during training (``loss(IEL(f(x)), noisy_y)``); evaluation uses the
plain logits (``argmax f(x)``) against clean validation labels.  Everything is a pure function of the
configuration: the seed fixes data, label noise, initialisation and data order.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping, MutableMapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from ielcore.errors import IELError
from ielcore.spec import TrialConfig, config_hash

CHECKPOINT_FORMAT = 1


class Reporter(Protocol):
    """Receives per-epoch metrics; returning False asks the trainer to stop (pruning, timeout)."""

    def report(self, epoch: int, metrics: Mapping[str, float]) -> bool: ...


class TrialStatus:
    COMPLETE = "complete"
    PRUNED = "pruned"  # the reporter asked to stop
    DIVERGED = "diverged"  # non-finite loss


@dataclass(frozen=True)
class TrialResult:
    """What one run produced: a frozen snapshot that crosses process and storage boundaries."""

    status: str
    config: dict[str, Any]
    trial_hash: str
    final_metrics: dict[str, float]
    best_metrics: dict[str, float]
    history: list[dict[str, float]]
    epochs_run: int
    device: str
    timings: dict[str, float]
    artifacts: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    failed_epoch: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrialResult:
        return cls(**dict(d))


# --------------------------------------------------------------------------------------------- helpers
def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise IELError("device 'cuda' was asked for but no CUDA device is available; use device: auto or cpu")
    return torch.device(name)


def lr_at(schedule: Mapping[str, Any], base_lr: float, epoch: int, epochs: int) -> float:
    """Learning rate of epoch ``epoch`` (0-based) for the stateless schedules (a pure function)."""
    kind = schedule["type"]
    if kind == "cosine":
        return schedule["min_lr"] + 0.5 * (base_lr - schedule["min_lr"]) * (
            1 + math.cos(math.pi * epoch / epochs)
        )
    if kind == "step":
        return float(base_lr * schedule["gamma"] ** (epoch // schedule["step_size"]))
    return base_lr


def make_optimizer(params: Any, opt: Mapping[str, Any]) -> torch.optim.Optimizer:
    kind, lr, wd, mom = opt["type"], opt["lr"], opt["weight_decay"], opt["momentum"]
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=mom, weight_decay=wd)
    return torch.optim.RMSprop(params, lr=lr, momentum=mom, weight_decay=wd)


def smooth_labels(masks: torch.Tensor, num_classes: int, steps: int, dt: float) -> torch.Tensor:
    """Forward heat smoothing of (noisy) labels: one-hot -> ``steps`` heat steps -> argmax (a baseline)."""
    from ielcore.iel import build_iel

    if steps <= 0:
        return masks
    heat = build_iel("heat", dt=dt, steps=1, padding="replicate", max_gain=float("inf"))
    onehot = F.one_hot(masks, num_classes).permute(0, 3, 1, 2).float()  # (N, C, H, W)
    with torch.no_grad():
        smoothed = heat.evolve_forward(onehot, steps=steps, dt=dt)
    return smoothed.argmax(1)


@dataclass
class _Data:
    images: torch.Tensor  # (N, Cin, H, W)
    clean: torch.Tensor  # (N, H, W) clean labels
    train_idx: list[int]
    val_idx: list[int]
    num_classes: int


def _load_data(cfg: TrialConfig, cache: MutableMapping[str, Any] | None) -> _Data:
    from ielcore.data import build_dataset, split_indices

    data_cfg = dict(cfg.data)
    seed = data_cfg.get("seed")
    seed = cfg.seed if seed is None else seed
    params = {k: v for k, v in data_cfg.items() if k not in ("type", "val_fraction", "seed")}
    key = config_hash({"data": data_cfg, "seed": seed})
    if cache is not None and key in cache:
        ds = cache[key]
    else:
        ds = build_dataset(data_cfg["type"], seed=seed, **params)
        if cache is not None:
            cache[key] = ds
    train_idx, val_idx = split_indices(len(ds.images), data_cfg["val_fraction"], seed)
    return _Data(ds.images, ds.masks, train_idx, val_idx, ds.num_classes)


def _noisy_labels(cfg: TrialConfig, data: _Data, epoch: int) -> torch.Tensor:
    """Training labels for ``epoch``: noised (a pure function of sample, rate and seed), then smoothed."""
    from ielcore.noise import build_noise

    noise_cfg = dict(cfg.noise)
    params = {k: v for k, v in noise_cfg.items() if k not in ("type", "rate")}
    noise = build_noise(noise_cfg["type"], noise_cfg["rate"], data.num_classes, cfg.seed, **params)
    labels = torch.stack([noise(data.clean[i], i, epoch) for i in data.train_idx])  # (Ntrain, H, W)
    ls = cfg.label_smoothing
    return smooth_labels(labels, data.num_classes, ls["steps"], ls["dt"])


def _evaluate(
    model: torch.nn.Module, data: _Data, device: torch.device, batch_size: int, amp: bool
) -> tuple[dict[str, float], torch.Tensor]:
    from ielcore.metrics import segmentation_metrics

    model.eval()
    preds, losses = [], []
    with torch.no_grad():
        for start in range(0, len(data.val_idx), batch_size):
            idx = data.val_idx[start : start + batch_size]
            x = data.images[idx].to(device)
            y = data.clean[idx].to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
                logits = model(x)
            losses.append(F.cross_entropy(logits.float(), y, reduction="sum").item() / y.numel())
            preds.append(logits.argmax(1).cpu())
    pred = torch.cat(preds)  # (Nval, H, W)
    metrics = segmentation_metrics(pred, data.clean[data.val_idx], data.num_classes)
    metrics["val_loss"] = sum(losses) / max(len(losses), 1)
    return metrics, pred


# ----------------------------------------------------------------------------------------- the trainer
def train_trial(
    spec: TrialConfig | Mapping[str, Any],
    reporter: Reporter | None = None,
    *,
    out_dir: str | None = None,
    data_cache: MutableMapping[str, Any] | None = None,
) -> TrialResult:
    """Train one configuration deterministically and return its :class:`TrialResult`.

    ``reporter.report(epoch, metrics)`` is called after every epoch (epochs are 1-based); if it returns
    False training stops and the result's status is ``pruned``.  A non-finite loss ends the run with
    status ``diverged`` and the epoch it happened in.  ``out_dir`` receives the artifacts (checkpoint,
    prediction grid, result JSON); ``data_cache`` lets a long-lived worker reuse generated datasets.
    """
    cfg = spec if isinstance(spec, TrialConfig) else TrialConfig.from_dict(spec)
    if cfg.kind == "noop":
        from ielcore.noop import run_noop

        return run_noop(cfg, reporter)
    t_start = time.perf_counter()
    device = resolve_device(cfg.device)
    amp = cfg.amp and device.type == "cuda"

    from ielcore.iel import build_iel
    from ielcore.losses import build_loss
    from ielcore.models import build_model

    data = _load_data(cfg, data_cache)
    iel_cfg = dict(cfg.iel)
    iel = build_iel(iel_cfg.pop("type"), **iel_cfg).to(device)
    loss_cfg = dict(cfg.loss)
    loss_fn = build_loss(loss_cfg.pop("type"), data.num_classes, **loss_cfg)

    torch.manual_seed(cfg.seed)
    model_cfg = dict(cfg.model)
    model = build_model(model_cfg.pop("type"), data.images.shape[1], data.num_classes, **model_cfg).to(device)
    optimizer = make_optimizer(model.parameters(), cfg.optimizer)
    base_lr = float(cfg.optimizer["lr"])
    plateau = (
        torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode="max",
            factor=cfg.schedule["factor"],
            patience=cfg.schedule["patience"],
            min_lr=cfg.schedule["min_lr"],
        )
        if cfg.schedule["type"] == "plateau"
        else None
    )
    order_gen = torch.Generator().manual_seed(cfg.seed + 1)
    labels = _noisy_labels(cfg, data, epoch=0)
    resample = bool(cfg.noise.get("resample_each_epoch", False))

    history: list[dict[str, float]] = []
    status, error, failed_epoch = TrialStatus.COMPLETE, None, None
    train_s = eval_s = 0.0
    pred = None
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        if plateau is None:
            for group in optimizer.param_groups:
                group["lr"] = lr_at(cfg.schedule, base_lr, epoch - 1, cfg.epochs)
        if resample and epoch > 1:
            labels = _noisy_labels(cfg, data, epoch=epoch - 1)
        model.train()
        perm = torch.randperm(len(data.train_idx), generator=order_gen).tolist()
        total, count = 0.0, 0
        for start in range(0, len(perm), cfg.batch_size):
            pos = perm[start : start + cfg.batch_size]
            x = data.images[[data.train_idx[p] for p in pos]].to(device)  # (B, Cin, H, W)
            y = labels[pos].to(device)  # (B, H, W)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                logits = model(x)  # (B, C, H, W)
            loss = loss_fn(iel(logits.float()), y)
            if not torch.isfinite(loss):
                status, failed_epoch = TrialStatus.DIVERGED, epoch
                error = f"loss became non-finite ({loss.item()}) in epoch {epoch}"
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(pos)
            count += len(pos)
        train_s += time.perf_counter() - t0
        if status == TrialStatus.DIVERGED:
            break
        t1 = time.perf_counter()
        metrics, pred = _evaluate(model, data, device, cfg.batch_size, amp)
        eval_s += time.perf_counter() - t1
        metrics["train_loss"] = total / max(count, 1)
        metrics["lr"] = optimizer.param_groups[0]["lr"]
        if plateau is not None:
            plateau.step(metrics["dice"])
        history.append({"epoch": float(epoch), **metrics})
        if reporter is not None and reporter.report(epoch, metrics) is False:
            status = TrialStatus.PRUNED
            break

    final = {k: v for k, v in history[-1].items() if k != "epoch"} if history else {}
    best = max(history, key=lambda h: h["dice"]) if history else {}
    artifacts: dict[str, str] = {}
    result = TrialResult(
        status=status,
        config=cfg.to_dict(),
        trial_hash=cfg.hash,
        final_metrics=final,
        best_metrics=dict(best),
        history=history,
        epochs_run=len(history),
        device=str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        timings={"train_s": train_s, "eval_s": eval_s, "total_s": time.perf_counter() - t_start},
        artifacts=artifacts,
        error=error,
        failed_epoch=failed_epoch,
    )
    if out_dir is not None:
        artifacts.update(_write_artifacts(out_dir, cfg, model, data, pred, result))
    return result


def _write_artifacts(
    out_dir: str,
    cfg: TrialConfig,
    model: torch.nn.Module,
    data: _Data,
    pred: torch.Tensor | None,
    result: TrialResult,
) -> dict[str, str]:
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
                "trial_hash": cfg.hash,
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
