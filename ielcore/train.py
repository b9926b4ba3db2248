"""One training run, top to bottom: ``train_trial(config, reporter) -> TrialResult``.

The IEL is applied to the loss only during training (``loss(IEL(f(x)), noisy_y)``); evaluation uses the
plain logits (``argmax f(x)``) against clean validation labels.  Everything is a pure function of the
configuration: the seed fixes data, label noise, initialisation and data order.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from ielcore.artifacts import CHECKPOINT_FORMAT, load_checkpoint, write_artifacts  # noqa: F401  (re-exported)
from ielcore.errors import IELError
from ielcore.result import Reporter, TrialData, TrialResult
from ielcore.spec import TrialConfig, config_hash
from ielcore.states import RunStatus


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


def _load_data(cfg: TrialConfig, cache: MutableMapping[str, Any] | None) -> TrialData:
    from ielcore.data import build_dataset, split_dataset

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
    train_idx, val_idx = split_dataset(ds, data_cfg["val_fraction"], seed)
    return TrialData(ds.images, ds.masks, train_idx, val_idx, ds.num_classes)


def _noisy_labels(cfg: TrialConfig, data: TrialData, epoch: int) -> torch.Tensor:
    """Training labels for ``epoch``: noised (a pure function of sample, rate and seed), then smoothed."""
    from ielcore.noise import build_noise

    noise_cfg = dict(cfg.noise)
    params = {k: v for k, v in noise_cfg.items() if k not in ("type", "rate")}
    noise = build_noise(noise_cfg["type"], noise_cfg["rate"], data.num_classes, cfg.seed, **params)
    labels = torch.stack([noise(data.clean[i], i, epoch) for i in data.train_idx])  # (Ntrain, H, W)
    ls = cfg.label_smoothing
    return smooth_labels(labels, data.num_classes, ls["steps"], ls["dt"])


def autocast(device: torch.device, amp: bool) -> torch.autocast:
    """The network's autocast context: bf16 on CUDA when ``amp``, otherwise a no-op."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda")


def val_batches(data: TrialData, batch_size: int) -> list[list[int]]:
    """Validation sample indices in evaluation order, ``batch_size`` at a time."""
    return [data.val_idx[start : start + batch_size] for start in range(0, len(data.val_idx), batch_size)]


def score_batch(logits: torch.Tensor, y: torch.Tensor) -> tuple[float, torch.Tensor]:
    """``(per-pixel mean CE, CPU argmax prediction)`` of one validation batch ``(B, C, H, W)`` vs ``(B, H, W)``."""
    loss = F.cross_entropy(logits.float(), y, reduction="sum").item() / y.numel()
    return loss, logits.argmax(1).cpu()


def val_metrics(
    scored: list[tuple[float, torch.Tensor]], data: TrialData
) -> tuple[dict[str, float], torch.Tensor]:
    """Metrics of the scored validation batches (see :func:`score_batch`) and the whole prediction."""
    from ielcore.metrics import segmentation_metrics

    pred = torch.cat([p for _, p in scored])  # (Nval, H, W)
    metrics = segmentation_metrics(pred, data.clean[data.val_idx], data.num_classes)
    metrics["val_loss"] = sum(loss for loss, _ in scored) / max(len(scored), 1)
    return metrics, pred


def _evaluate(
    model: torch.nn.Module, data: TrialData, device: torch.device, batch_size: int, amp: bool
) -> tuple[dict[str, float], torch.Tensor]:
    model.eval()
    scored = []
    with torch.no_grad():
        for idx in val_batches(data, batch_size):
            x = data.images[idx].to(device)
            y = data.clean[idx].to(device)
            with autocast(device, amp):
                logits = model(x)
            scored.append(score_batch(logits, y))
    return val_metrics(scored, data)


# ---------------------------------------------------------------------------------- one run's state
@dataclass(eq=False)
class TrialRun:
    """The state of one configuration in training, shared by :func:`train_trial` and the fused trainer.

    :meth:`start` builds everything from the configuration in a fixed order (data, IEL, loss, then
    ``torch.manual_seed(seed)`` and the model, optimizer and schedule), so a run's initial weights and
    data order depend on its configuration only.  The training step itself (forward, backward,
    ``optimizer.step()``) belongs to the caller; this class owns the epoch bookkeeping around it.
    """

    cfg: TrialConfig
    reporter: Reporter | None
    device: torch.device
    amp: bool
    data: TrialData
    iel: torch.nn.Module
    loss_fn: torch.nn.Module
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    plateau: torch.optim.lr_scheduler.ReduceLROnPlateau | None
    order_gen: torch.Generator
    labels: torch.Tensor  # (Ntrain, H, W) training labels of the current epoch
    t_start: float
    history: list[dict[str, float]] = field(default_factory=list)
    status: RunStatus = RunStatus.COMPLETE
    error: str | None = None
    failed_epoch: int | None = None
    timings: dict[str, float] = field(default_factory=lambda: {"train_s": 0.0, "eval_s": 0.0})
    pred: torch.Tensor | None = None  # (Nval, H, W) latest validation prediction
    loss_sum: float = 0.0  # sum of batch losses x batch sizes in the current epoch
    loss_count: int = 0

    @classmethod
    def start(
        cls, cfg: TrialConfig, reporter: Reporter | None, data_cache: MutableMapping[str, Any] | None
    ) -> TrialRun:
        from ielcore.iel import build_iel
        from ielcore.losses import build_loss
        from ielcore.models import build_model

        t_start = time.perf_counter()
        device = resolve_device(cfg.device)
        data = _load_data(cfg, data_cache)
        iel_cfg = dict(cfg.iel)
        iel = build_iel(iel_cfg.pop("type"), **iel_cfg).to(device)
        loss_cfg = dict(cfg.loss)
        loss_fn = build_loss(loss_cfg.pop("type"), data.num_classes, **loss_cfg)
        torch.manual_seed(cfg.seed)
        model_cfg = dict(cfg.model)
        model = build_model(model_cfg.pop("type"), data.images.shape[1], data.num_classes, **model_cfg)
        model = model.to(device)
        optimizer = make_optimizer(model.parameters(), cfg.optimizer)
        sch = cfg.schedule
        plateau = (
            torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="max", factor=sch["factor"], patience=sch["patience"], min_lr=sch["min_lr"]
            )
            if sch["type"] == "plateau"
            else None
        )
        return cls(
            cfg=cfg,
            reporter=reporter,
            device=device,
            amp=cfg.amp and device.type == "cuda",
            data=data,
            iel=iel,
            loss_fn=loss_fn,
            model=model,
            optimizer=optimizer,
            plateau=plateau,
            order_gen=torch.Generator().manual_seed(cfg.seed + 1),
            labels=_noisy_labels(cfg, data, epoch=0),
            t_start=t_start,
        )

    @property
    def running(self) -> bool:
        """False once the run diverged or its reporter asked it to stop."""
        return self.status == RunStatus.COMPLETE

    def begin_epoch(self, epoch: int) -> list[int]:
        """Set the epoch's learning rate and labels; return its permutation of the training positions."""
        cfg = self.cfg
        if self.plateau is None:
            for group in self.optimizer.param_groups:
                group["lr"] = lr_at(cfg.schedule, float(cfg.optimizer["lr"]), epoch - 1, cfg.epochs)
        if cfg.noise.get("resample_each_epoch", False) and epoch > 1:
            self.labels = _noisy_labels(cfg, self.data, epoch=epoch - 1)
        self.loss_sum, self.loss_count = 0.0, 0
        return torch.randperm(len(self.data.train_idx), generator=self.order_gen).tolist()

    def batch(self, perm: list[int], start: int) -> tuple[torch.Tensor, torch.Tensor]:
        """CPU training batch at ``perm[start : start + batch_size]``: images ``(B, Cin, H, W)``, labels ``(B, H, W)``."""
        pos = perm[start : start + self.cfg.batch_size]
        return self.data.images[[self.data.train_idx[p] for p in pos]], self.labels[pos]

    def training_loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``loss(IEL(logits), y)``, the IEL in float32 (logits ``(B, C, H, W)``, labels ``(B, H, W)``)."""
        return self.loss_fn(self.iel(logits.float()), y)

    def check_loss(self, value: float, epoch: int) -> bool:
        """True for a finite batch loss; otherwise mark the run diverged in ``epoch`` and return False."""
        if math.isfinite(value):
            return True
        self.status, self.failed_epoch = RunStatus.DIVERGED, epoch
        self.error = f"loss became non-finite ({value}) in epoch {epoch}"
        return False

    def record_loss(self, value: float, batch_size: int) -> None:
        self.loss_sum += value * batch_size
        self.loss_count += batch_size

    def end_epoch(self, epoch: int, metrics: dict[str, float]) -> bool:
        """Record the epoch's validation ``metrics``, step a plateau schedule and report; False = stop."""
        metrics["train_loss"] = self.loss_sum / max(self.loss_count, 1)
        metrics["lr"] = self.optimizer.param_groups[0]["lr"]
        if self.plateau is not None:
            self.plateau.step(metrics["dice"])
        self.history.append({"epoch": float(epoch), **metrics})
        # A stop asked after the last epoch saves nothing: the trial completed (not PRUNED).
        if (
            self.reporter is not None
            and self.reporter.report(epoch, metrics) is False
            and epoch < self.cfg.epochs
        ):
            self.status = RunStatus.PRUNED
            return False
        return True

    def result(self, out_dir: str | None = None, **timings: float) -> TrialResult:
        """The run's :class:`TrialResult` (extra ``timings`` added), with its artifacts in ``out_dir``."""
        history = self.history
        device = self.device
        artifacts: dict[str, str] = {}
        result = TrialResult(
            status=self.status,
            config=self.cfg.to_dict(),
            trial_hash=self.cfg.identity,
            final_metrics={k: v for k, v in history[-1].items() if k != "epoch"} if history else {},
            best_metrics=dict(max(history, key=lambda h: h["dice"])) if history else {},
            history=history,
            epochs_run=len(history),
            device=str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
            timings={**self.timings, "total_s": time.perf_counter() - self.t_start, **timings},
            artifacts=artifacts,
            error=self.error,
            failed_epoch=self.failed_epoch,
        )
        if out_dir is not None:
            artifacts.update(write_artifacts(out_dir, self.cfg, self.model, self.data, self.pred, result))
        return result


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
    False before the last epoch, training stops and the result's status is ``pruned`` (after the last
    epoch there is nothing left to save: the run is ``complete``).  A non-finite loss ends the run with
    status ``diverged`` and the epoch it happened in.  ``out_dir`` receives the artifacts (checkpoint,
    prediction grid, result JSON); ``data_cache`` lets a long-lived worker reuse generated datasets.
    """
    cfg = spec if isinstance(spec, TrialConfig) else TrialConfig.from_dict(spec)
    if cfg.kind == "noop":
        from ielcore.noop import run_noop

        return run_noop(cfg, reporter)
    run = TrialRun.start(cfg, reporter, data_cache)
    model, optimizer, device = run.model, run.optimizer, run.device
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        perm = run.begin_epoch(epoch)
        model.train()
        for start in range(0, len(perm), cfg.batch_size):
            x, y = run.batch(perm, start)
            with autocast(device, run.amp):
                logits = model(x.to(device))  # (B, C, H, W)
            loss = run.training_loss(logits, y.to(device))
            value = loss.item()
            if not run.check_loss(value, epoch):
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            run.record_loss(value, len(y))
        run.timings["train_s"] += time.perf_counter() - t0
        if not run.running:
            break
        t1 = time.perf_counter()
        metrics, run.pred = _evaluate(model, run.data, device, cfg.batch_size, run.amp)
        run.timings["eval_s"] += time.perf_counter() - t1
        if not run.end_epoch(epoch, metrics):
            break
    return run.result(out_dir)
