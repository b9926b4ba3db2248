"""Scaling out: throughput of short CPU trials with 1, 2 and 4 worker processes on a local multi-node Ray cluster.

    python benchmarks/bench_scaling.py                     # N = 1, 2, 4 nodes of 1 CPU, 16 trials each
    python benchmarks/bench_scaling.py --nodes 1,2 --trials 8
    python benchmarks/bench_scaling.py --quick             # tiny smoke run (CI)

For each N a fresh :class:`ray.cluster_utils.Cluster` with N nodes (separate raylets) of 1 CPU each is
started, and a study of K real training trials (synthetic cells 32x32, U-Net width 4 depth 2, heat IEL,
2 epochs; one cell x K seeds) runs through :class:`orchestrator.driver.StudyRunner` with
``--address`` = the cluster and ``max_concurrent`` = N, one worker actor (1 CPU, 1 torch thread) per node.
The cluster's start-up is timed apart and excluded.

``trials/min`` = K / wall x 60, with wall the whole ``StudyRunner.run`` (worker start included);
``steady`` uses the time from the first to the last completion instead (no set-up, no worker start).
Parallel efficiency = T1 / (N x TN) for the same K.  All nodes share this machine's cores: with more
nodes than cores the figures show oversubscription, not the platform.
"""

from __future__ import annotations

import os

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")

import argparse
import logging
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

OBJECT_STORE_BYTES = 100 * 2**20


@dataclass(frozen=True)
class ScaleRun:
    nodes: int
    trials: int
    cluster_start_s: float
    wall_s: float
    steady_s: float | None  # first to last completion
    alive_nodes: int  # Ray nodes alive in the cluster when the study started

    @property
    def per_min(self) -> float:
        return 60 * self.trials / self.wall_s

    @property
    def steady_per_min(self) -> float | None:
        if self.steady_s is None or self.trials < 2:
            return None
        return 60 * (self.trials - 1) / self.steady_s


def scaling_study(name: str, trials: int, epochs: int, concurrency: int) -> dict[str, Any]:
    return {
        "version": 1,
        "name": name,
        "description": "scaling benchmark (short CPU trials)",
        "base": {
            "device": "cpu",
            "epochs": epochs,
            "batch_size": 8,
            "data": {"type": "cells", "num_images": 16, "size": 32, "val_fraction": 0.25},
            "noise": {"type": "block", "rate": 0.2, "block": 2},
            "model": {"type": "unet", "width": 4, "depth": 2},
            "iel": {"type": "heat", "dt": 0.1, "steps": 5},
            "optimizer": {"type": "adam", "lr": 3.0e-3},
        },
        "seeds": trials,
        "resources": {"cpus": 1, "gpus": 0},
        "max_concurrent": concurrency,
        "retries": 0,
    }


def run_on_cluster(nodes: int, trials: int, epochs: int) -> ScaleRun:
    import ray
    from ray.cluster_utils import Cluster

    from orchestrator.driver import StudyRunner
    from orchestrator.driver.recorder import Recorder
    from orchestrator.settings import Settings
    from orchestrator.study import parse_study

    node_args = {"num_cpus": 1, "object_store_memory": OBJECT_STORE_BYTES}
    t0 = time.perf_counter()
    cluster = Cluster(initialize_head=True, head_node_args={**node_args, "include_dashboard": False})
    try:
        for _ in range(nodes - 1):
            cluster.add_node(**node_args)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, namespace="iel", log_to_driver=False, configure_logging=False)
        cluster_start = time.perf_counter() - t0
        alive = sum(1 for n in ray.nodes() if n["Alive"])
        with tempfile.TemporaryDirectory(prefix="iel-scale-") as home:
            spec = parse_study(scaling_study(f"scale-{nodes}", trials, epochs, nodes))
            settings = Settings.resolve(
                home=home,
                db=f"sqlite:///{home}/iel.db",
                mlflow=f"sqlite:///{home}/mlflow.db",
                address=cluster.address,
            )
            runner = StudyRunner(spec, settings, max_concurrent=nodes)
            finished: list[float] = []
            inner = Recorder.finish

            def timed_finish(*args: Any, **kwargs: Any) -> Any:
                out = inner(*args, **kwargs)
                finished.append(time.perf_counter())
                return out

            Recorder.finish = timed_finish  # type: ignore[method-assign]
            t1 = time.perf_counter()
            try:
                outcome = runner.run()
            finally:
                Recorder.finish = inner  # type: ignore[method-assign]
            wall = time.perf_counter() - t1
            if outcome.trained != trials or outcome.failed:
                raise RuntimeError(f"expected {trials} trained trials, got {outcome}")
    finally:
        ray.shutdown()
        cluster.shutdown()
    steady = finished[-1] - finished[0] if len(finished) > 1 else None
    return ScaleRun(nodes, trials, cluster_start, wall, steady, alive)


def print_table(runs: list[ScaleRun]) -> None:
    base = next((r for r in runs if r.nodes == 1), None)
    print(
        f"{'workers':>7s}{'nodes':>6s}{'trials':>7s}{'cluster s':>11s}{'wall s':>9s}{'trials/min':>12s}{'efficiency':>12s}"
        f"{'steady trials/min':>19s}{'steady eff.':>13s}"
    )
    for r in runs:
        eff = f"{base.wall_s / (r.nodes * r.wall_s):.2f}" if base else "-"
        s_eff = "-"
        if base and base.steady_per_min and r.steady_per_min:
            s_eff = f"{r.steady_per_min / (r.nodes * base.steady_per_min):.2f}"
        steady = f"{r.steady_per_min:.1f}" if r.steady_per_min else "-"
        print(
            f"{r.nodes:7d}{r.alive_nodes:6d}{r.trials:7d}{r.cluster_start_s:11.1f}{r.wall_s:9.1f}{r.per_min:12.1f}{eff:>12s}"
            f"{steady:>19s}{s_eff:>13s}"
        )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", default="1,2,4", help="worker counts (one 1-CPU node each)")
    ap.add_argument("--trials", type=int, default=16, help="trials per worker count")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="tiny smoke run: 1 and 2 nodes, 2 trials, 1 epoch")
    args = ap.parse_args(argv)
    if args.quick:
        args.nodes, args.trials, args.epochs = "1,2", 2, 1
    warnings.filterwarnings("ignore")
    for name in ("ray", "mlflow", "optuna", "alembic"):
        logging.getLogger(name).setLevel(logging.ERROR)
    runs = []
    for n in (int(x) for x in args.nodes.split(",")):
        run = run_on_cluster(n, args.trials, args.epochs)
        runs.append(run)
        print(f"  {n} worker(s): {run.wall_s:.1f} s", flush=True)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"\n{args.trials} trials (cells 32x32, U-Net 4/2, {args.epochs} epochs) per worker count; "
        f"{os.cpu_count()} CPU cores, load average {load}"
    )
    print_table(runs)


if __name__ == "__main__":
    main()
