"""Fused multi-trial training: trial-epochs per second, fused vs one by one vs separate processes.

For M same-cell trials (seeds, noise rates, IEL steps and learning rates differ) it times three ways to
train them on one device:

    sequential  train_trial for each configuration in turn, in this process (all threads)
    processes   M warm worker processes started together, each with threads // M torch threads
                (at least 1), each running train_trial of one configuration
    fused       train_fused of the M configurations in this process (all threads)

and prints trial-epochs per second (M * epochs / wall time) and the fused throughput relative to the
other two.  The modes are interleaved (round robin, ``--repeats`` rounds, median taken), so a noisy
shared machine slows them alike.  Datasets are generated before the clock starts in every mode.

Settings: ``cpu`` (U-Net width 8, depth 2, 48x48 cells, batch 4, 18 training images) and ``wbc`` (the
WBC-size U-Net: width 64, depth 4, 112x112, batch 2).  On CPU the ``wbc`` setting runs 2 training steps
and one validation image per trial-epoch, an estimate; ``--device cuda`` uses 15 steps and 10 images.

    python benchmarks/bench_fused.py --quick                 # cpu setting, M in {1, 2}
    python benchmarks/bench_fused.py --setting both          # M in {1, 2, 4, 8}
    python benchmarks/bench_fused.py --device cuda --setting wbc
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import time
from typing import Any

import torch

from ielcore.fused import train_fused
from ielcore.spec import TrialConfig
from ielcore.train import _load_data, train_trial

MODES = ("sequential", "processes", "fused")
WARMUP: dict[str, Any] = {
    "device": "cpu",
    "epochs": 1,
    "data": {"type": "cells", "num_images": 8, "size": 32},
    "model": {"type": "unet", "width": 4, "depth": 2},
    "artifacts": {"checkpoint": False, "prediction_grid": False},
}


def setting_config(setting: str, device: str, quick: bool) -> dict[str, Any]:
    """The shared part of a cell's configurations."""
    if setting == "cpu":
        data = {"type": "cells", "num_images": 24, "size": 48}
        model, batch, epochs = {"type": "unet", "width": 8, "depth": 2}, 4, 1 if quick else 2
    else:
        images = 4 if device == "cpu" else 40
        data = {"type": "cells", "num_images": images, "size": 112}
        model, batch, epochs = (
            {"type": "unet", "width": 64, "depth": 4},
            2,
            1 if device == "cpu" or quick else 2,
        )
    return {
        "device": device,
        "epochs": epochs,
        "batch_size": batch,
        "data": data,
        "model": model,
        "artifacts": {"checkpoint": False, "prediction_grid": False},
    }


def member_configs(setting: str, device: str, quick: bool, count: int) -> list[TrialConfig]:
    """``count`` trials of one cell: seed, noise rate, IEL steps and learning rate differ."""
    base = TrialConfig.from_dict(setting_config(setting, device, quick))
    return [
        base.replace(
            {
                "seed": i,
                "noise.type": "block",
                "noise.rate": 0.1 * (i % 4),
                "iel.type": "heat",
                "iel.steps": 5 + 5 * (i % 3),
                "optimizer.lr": 1e-3 * (1 + i % 3),
            }
        )
        for i in range(count)
    ]


# ------------------------------------------------------------------------------------------- modes
def _worker(cfg: dict[str, Any], threads: int, barrier: Any, done: Any) -> None:
    torch.set_num_threads(threads)
    train_trial(WARMUP)  # imports, kernels
    config = TrialConfig.from_dict(cfg)
    cache: dict[str, Any] = {}
    _load_data(config, cache)
    barrier.wait()
    result = train_trial(config, data_cache=cache)
    done.put(result.status)


def run_processes(cfgs: list[TrialConfig], threads: int) -> float:
    ctx = mp.get_context("spawn")
    barrier, done = ctx.Barrier(len(cfgs) + 1), ctx.Queue()
    per_process = max(1, threads // len(cfgs))
    procs = [ctx.Process(target=_worker, args=(c.to_dict(), per_process, barrier, done)) for c in cfgs]
    for p in procs:
        p.start()
    barrier.wait()
    t0 = time.perf_counter()
    statuses = [done.get() for _ in procs]
    wall = time.perf_counter() - t0
    for p in procs:
        p.join()
    if any(s != "complete" for s in statuses):
        raise RuntimeError(f"a benchmark trial did not complete: {statuses}")
    return wall


def run_sequential(cfgs: list[TrialConfig], cache: dict[str, Any]) -> float:
    t0 = time.perf_counter()
    for cfg in cfgs:
        train_trial(cfg, data_cache=cache)
    return time.perf_counter() - t0


def run_fused(cfgs: list[TrialConfig], cache: dict[str, Any]) -> float:
    t0 = time.perf_counter()
    train_fused(cfgs, data_cache=cache)
    return time.perf_counter() - t0


def bench(
    setting: str, device: str, members: list[int], repeats: int, threads: int, quick: bool
) -> list[dict[str, Any]]:
    torch.set_num_threads(threads)
    cache: dict[str, Any] = {}
    for cfg in member_configs(setting, device, quick, max(members)):
        _load_data(cfg, cache)
    warm = member_configs(setting, device, quick, 1)
    run_sequential(warm, cache)
    run_fused(warm, cache)
    rows = []
    for m in members:
        cfgs = member_configs(setting, device, quick, m)
        walls: dict[str, list[float]] = {mode: [] for mode in MODES}
        for r in range(repeats):
            for k in range(len(MODES)):
                mode = MODES[(k + r) % len(MODES)]
                if mode == "processes":
                    walls[mode].append(run_processes(cfgs, threads))
                elif mode == "sequential":
                    walls[mode].append(run_sequential(cfgs, cache))
                else:
                    walls[mode].append(run_fused(cfgs, cache))
        trial_epochs = m * cfgs[0].epochs
        rate = {mode: trial_epochs / statistics.median(w) for mode, w in walls.items()}
        row = {"setting": setting, "device": device, "M": m, **rate}
        rows.append(row)
        print_row(row, header=len(rows) == 1)
    return rows


def print_row(row: dict[str, Any], header: bool) -> None:
    if header:
        print(
            f"{'setting':8} {'device':6} {'M':>2}  {'sequential':>10} {'processes':>10} {'fused':>10}"
            f"  {'fused/seq':>9} {'fused/proc':>10}   (trial-epochs/s)"
        )
    print(
        f"{row['setting']:8} {row['device']:6} {row['M']:>2}  {row['sequential']:10.3f} {row['processes']:10.3f} "
        f"{row['fused']:10.3f}  {row['fused'] / row['sequential']:9.2f} {row['fused'] / row['processes']:10.2f}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="cpu setting, M in {1, 2}, 1 epoch, 1 round")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--setting", default=None, choices=("cpu", "wbc", "both"))
    parser.add_argument("--members", default=None, help="comma-separated group sizes (default 1,2,4,8)")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved rounds (default 3; quick 1)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads in all")
    args = parser.parse_args(argv)
    setting = args.setting or ("cpu" if args.quick else "both")
    members = [int(m) for m in (args.members or ("1,2" if args.quick else "1,2,4,8")).split(",")]
    repeats = args.repeats or (1 if args.quick else 3)
    print(f"torch {torch.__version__}, {args.threads} threads, device {args.device}, {repeats} round(s)")
    for name in ("cpu", "wbc") if setting == "both" else (setting,):
        bench(name, args.device, members, repeats, args.threads, args.quick)


if __name__ == "__main__":
    main()
