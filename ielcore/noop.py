"""The built-in no-op trial: no data, no model; it reports a few epochs of synthetic metrics.

It makes the platform's own cost measurable (scheduling, Optuna, MLflow, database) and gives the fault
tests a trial that can be made to sleep, fail or diverge on purpose (``noop.sleep_s``, ``fail_at_epoch``,
``diverge_at_epoch``).  Its metrics are a deterministic function of the configuration, smooth in the
learning rate and the IEL parameters, so an Optuna search over them has something to find.
"""

from __future__ import annotations

import math
import time
from statistics import NormalDist

from ielcore.errors import IELError
from ielcore.result import Reporter, TrialResult
from ielcore.spec import TrialConfig, config_hash
from ielcore.states import RunStatus


def _unit(seed_text: str) -> float:
    """A deterministic number in [0, 1) from a string."""
    return int(config_hash({"s": seed_text})[:12], 16) / 16**12


def run_noop(cfg: TrialConfig, reporter: Reporter | None) -> TrialResult:
    t0 = time.perf_counter()
    lr = float(cfg.optimizer["lr"])
    quality = 0.9 - 0.05 * abs(math.log10(lr) + 3) - 0.3 * float(cfg.noise.get("rate", 0.0))
    # noop.effect shifts this configuration's Dice; noop.noise_sd adds a normal draw fixed by the trial's
    # hash (so by its seed and configuration): the replicate-to-replicate spread of a real metric.
    shift = float(cfg.noop["effect"]) + float(cfg.noop["noise_sd"]) * NormalDist().inv_cdf(
        min(max(_unit(f"{cfg.hash}:noise"), 1e-12), 1 - 1e-12)
    )
    history: list[dict[str, float]] = []
    status, error, failed_epoch = RunStatus.COMPLETE, None, None
    opts = cfg.noop
    for epoch in range(1, cfg.epochs + 1):
        if opts["sleep_s"]:
            time.sleep(opts["sleep_s"])
        if opts["fail_at_epoch"] == epoch:
            raise IELError(f"no-op trial failed on purpose in epoch {epoch} (noop.fail_at_epoch)")
        jitter = 0.02 * (_unit(f"{cfg.hash}:{epoch}") - 0.5)
        dice = max(0.0, min(1.0, quality * (1 - math.exp(-epoch / 2)) + jitter + shift))
        loss = float("nan") if opts["diverge_at_epoch"] == epoch else 1.0 - dice
        if not math.isfinite(loss):
            status, failed_epoch = RunStatus.DIVERGED, epoch
            error = f"loss became non-finite ({loss}) in epoch {epoch}"
            break
        metrics = {
            "dice": dice,
            "miou": dice * 0.9,
            "pixel_acc": 0.5 + dice / 2,
            "val_loss": loss,
            "train_loss": loss,
        }
        history.append({"epoch": float(epoch), **metrics})
        # A stop asked after the last epoch saves nothing: the trial completed (not PRUNED).
        if reporter is not None and reporter.report(epoch, metrics) is False and epoch < cfg.epochs:
            status = RunStatus.PRUNED
            break
    final = {k: v for k, v in history[-1].items() if k != "epoch"} if history else {}
    best = max(history, key=lambda h: h["dice"]) if history else {}
    return TrialResult(
        status=status,
        config=cfg.to_dict(),
        trial_hash=cfg.identity,
        final_metrics=final,
        best_metrics=dict(best),
        history=history,
        epochs_run=len(history),
        device="none",
        timings={"train_s": 0.0, "eval_s": 0.0, "total_s": time.perf_counter() - t0},
        error=error,
        failed_epoch=failed_epoch,
    )
