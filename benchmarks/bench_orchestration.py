"""Orchestration overhead: N no-op trials through the platform vs the same N through Ray Tune.

    python benchmarks/bench_orchestration.py                       # 200 trials, 2 at a time, both sides
    python benchmarks/bench_orchestration.py --scale --skip-tune   # + driver time per trial at N = 100, 1000, 5000
    python benchmarks/bench_orchestration.py --scale --scale-mode grid --scale-sizes 100,1000
    python benchmarks/bench_orchestration.py --profile             # + cProfile of the platform's driver
    python benchmarks/bench_orchestration.py --quick               # tiny smoke run (CI)

Platform side: a no-op study (``base.kind: noop``, 3 epochs) run by :class:`orchestrator.driver.StudyRunner`
in a fresh ``IEL_HOME`` (SQLite results database + Optuna storage, MLflow SQLite store), in three shapes:
``grid`` (one cell x N seeds), ``tpe`` and ``random`` (one cell, an Optuna search over ``optimizer.lr``
with that sampler, N trials).  ``--scale`` (default shape ``random``, whose sampler costs the same at any
N) measures whether the driver's cost per trial stays flat as the study grows.
Ray Tune side: ``Tuner`` + ``OptunaSearch`` (TPE over ``lr``) + ``MLflowLoggerCallback`` (SQLite), a
function trainable reporting the same metrics for 3 epochs, ``max_concurrent_trials`` = the platform's.

Both sides share one local Ray instance started first; its start-up time is reported on its own and
excluded from both walls.  ``steady s/trial`` is (last completion - first completion) / (N - 1): the
driver loop's cost per trial without set-up and worker start.  ``driver CPU`` is the CPU time of this
process (driver thread plus Ray's client threads) per trial.
"""

from __future__ import annotations

import os

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")

import argparse
import contextlib
import cProfile
import io
import logging
import math
import pstats
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Driver phases timed (label -> (module, class or None, attribute)); "mlflow thread" (the background MLflow
# writer: run creation, params, metrics, run ends) and "summaries" (its study-summary refreshes) run beside
# the loop and are not part of the driver's critical path.
PHASES: dict[str, tuple[str, str | None, str]] = {
    "prepare": ("orchestrator.driver.recorder", "Recorder", "__init__"),
    "queue": ("orchestrator.driver.loop", None, "build_queue"),
    "ask": ("orchestrator.driver.queue", "SearchAsks", "next_item"),
    "start": ("orchestrator.driver.recorder", "Recorder", "start_attempt"),
    "collect": ("orchestrator.driver.loop", "DriverLoop", "_collect"),
    "finish": ("orchestrator.driver.recorder", "Recorder", "finish"),
    "poll": ("orchestrator.driver.loop", "DriverLoop", "_poll"),
    "mlflow thread": ("orchestrator.driver.tracking_writer", "TrackingWriter", "_apply"),
    "summaries": ("orchestrator.driver.tracking_writer", "TrackingWriter", "_maybe_refresh"),
}
OFF_PATH = ("mlflow thread", "summaries")


@dataclass
class RunStats:
    """What one run of N trials cost (seconds)."""

    side: str
    trials: int
    wall_s: float
    steady_s: float | None  # per trial, first to last completion
    cpu_s: float  # driver process CPU
    phases: dict[str, float] = field(default_factory=dict)  # platform only: time inside each driver method
    worker_s: float | None = None  # platform only: median time a worker held a trial (its duration_s)

    @property
    def per_trial_s(self) -> float:
        return self.wall_s / self.trials


MODES = ("grid", "tpe", "random")


def noop_study(name: str, trials: int, mode: str, epochs: int, concurrency: int) -> dict[str, Any]:
    """A one-cell no-op study of ``trials`` trials.

    ``grid``: N seeds (the plan lists every trial up front); ``tpe`` / ``random``: an Optuna search over
    ``optimizer.lr`` with that sampler, N trials asked lazily when a worker is free.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
    doc: dict[str, Any] = {
        "version": 1,
        "name": name,
        "description": "orchestration benchmark (no-op trials)",
        "base": {
            "kind": "noop",
            "epochs": epochs,
            "noise": {"type": "none", "rate": 0.0},
            "optimizer": {"type": "adam", "lr": 1.0e-3},
        },
        "seeds": trials if mode == "grid" else 1,
        "max_concurrent": concurrency,
        "retries": 0,
    }
    if mode != "grid":
        doc["search"] = {
            "n_trials": trials,
            "sampler": mode,
            "pruner": "none",
            "seed": 0,
            "objectives": [{"metric": "dice", "direction": "maximize"}],
            "params": {"optimizer.lr": {"type": "float", "low": 1.0e-5, "high": 1.0e-1, "log": True}},
        }
    return doc


@contextlib.contextmanager
def _timed_phases(totals: dict[str, float], finished: list[float]) -> Iterator[None]:
    """Wrap every driver phase (see PHASES) to add its time to ``totals``; record each trial's finish."""
    import importlib

    restore = []
    for label, (module_name, class_name, attr) in PHASES.items():
        module = importlib.import_module(module_name)
        owner = getattr(module, class_name) if class_name else module
        inner = getattr(owner, attr)

        def wrapper(*args: Any, _inner: Any = inner, _label: str = label, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return _inner(*args, **kwargs)
            finally:
                totals[_label] = totals.get(_label, 0.0) + time.perf_counter() - t0
                if _label == "finish":
                    finished.append(time.perf_counter())

        setattr(owner, attr, wrapper)
        restore.append((owner, attr, inner))
    try:
        yield
    finally:
        for owner, attr, inner in restore:
            setattr(owner, attr, inner)


def run_platform(
    trials: int, mode: str, epochs: int, concurrency: int, profile: bool = False
) -> tuple[RunStats, str | None]:
    """Run the no-op study in a fresh IEL_HOME; returns its stats (and a cProfile report when asked)."""
    from orchestrator.db import ResultsDB
    from orchestrator.driver import StudyRunner
    from orchestrator.settings import Settings
    from orchestrator.study import parse_study

    with tempfile.TemporaryDirectory(prefix="iel-bench-") as home:
        spec = parse_study(noop_study(f"bench-{mode}-{trials}", trials, mode, epochs, concurrency))
        settings = Settings.resolve(
            home=home, db=f"sqlite:///{home}/iel.db", mlflow=f"sqlite:///{home}/mlflow.db"
        )
        runner = StudyRunner(spec, settings, max_concurrent=concurrency)
        totals: dict[str, float] = {}
        finished: list[float] = []
        prof = cProfile.Profile() if profile else None
        with _timed_phases(totals, finished):
            c0, t0 = time.process_time(), time.perf_counter()
            if prof is not None:
                prof.enable()
            outcome = runner.run()
            if prof is not None:
                prof.disable()
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if outcome.trained != trials or outcome.failed:
            raise RuntimeError(f"expected {trials} trained trials, got {outcome}")
        db = ResultsDB(settings.db_url)
        durations = [t.duration_s for t in db.trials(spec.name) if t.duration_s is not None]
        db.close()
        report = None
        if prof is not None:
            out = io.StringIO()
            pstat = pstats.Stats(prof, stream=out).sort_stats("cumulative")
            pstat.print_stats(r"orchestrator/(driver|tracking|search|db)", 30)
            pstat.print_stats(r"(optuna/study/(study|_tell)\.py|ray/_private/worker\.py:\d+\((wait|get)\)"
                              r"|sqlite3.Connection|mlflow/tracking/client\.py)", 15)  # fmt: skip
            report = out.getvalue()
    steady = (finished[-1] - finished[0]) / (len(finished) - 1) if len(finished) > 1 else None
    stats = RunStats(f"platform ({mode})", trials, wall, steady, cpu, totals, statistics.median(durations))
    return stats, report


def _noop_metrics(lr: float, epoch: int) -> dict[str, float]:
    quality = 0.9 - 0.05 * abs(math.log10(lr) + 3)
    dice = quality * (1 - math.exp(-epoch / 2))
    return {"dice": dice, "miou": dice * 0.9, "pixel_acc": 0.5 + dice / 2, "val_loss": 1 - dice}


def _tune_trainable(config: dict[str, Any]) -> None:
    from ray import tune

    for epoch in range(1, int(config["epochs"]) + 1):
        tune.report({"epoch": epoch, **_noop_metrics(float(config["lr"]), epoch)})


def run_ray_tune(trials: int, epochs: int, concurrency: int, reuse_actors: bool) -> RunStats:
    """``Tuner`` + ``OptunaSearch`` + ``MLflowLoggerCallback`` on the already started Ray instance."""
    from ray import tune
    from ray.air.integrations.mlflow import MLflowLoggerCallback
    from ray.tune.search.optuna import OptunaSearch

    with tempfile.TemporaryDirectory(prefix="tune-bench-") as tmp:
        finished: list[float] = []

        class _Completions(tune.Callback):  # type: ignore[misc]
            def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
                finished.append(time.perf_counter())

        tuner = tune.Tuner(
            _tune_trainable,
            param_space={"lr": tune.loguniform(1e-5, 1e-1), "epochs": epochs},
            tune_config=tune.TuneConfig(
                search_alg=OptunaSearch(metric="dice", mode="max", seed=0),
                num_samples=trials,
                max_concurrent_trials=concurrency,
                reuse_actors=reuse_actors,
            ),
            run_config=tune.RunConfig(
                name="bench",
                storage_path=tmp,
                verbose=0,
                callbacks=[
                    MLflowLoggerCallback(
                        tracking_uri=f"sqlite:///{tmp}/mlflow.db",
                        experiment_name="bench",
                        save_artifact=False,
                    ),
                    _Completions(),
                ],
            ),
        )
        c0, t0 = time.process_time(), time.perf_counter()
        grid = tuner.fit()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        done = sum(1 for i in range(len(grid)) if grid[i].error is None)
        if done != trials:
            raise RuntimeError(f"Ray Tune finished {done} of {trials} trials")
    steady = (finished[-1] - finished[0]) / (len(finished) - 1) if len(finished) > 1 else None
    label = "Ray Tune" + (" (reuse_actors)" if reuse_actors else "")
    return RunStats(label, trials, wall, steady, cpu)


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{1000 * x:.1f}"


def print_comparison(rows: list[RunStats], reference: RunStats | None) -> None:
    print(f"\n{'side':28s}{'trials':>7s}{'wall s':>9s}{'s/trial':>9s}{'steady ms/trial':>17s}"
          f"{'driver CPU ms/trial':>21s}{'ratio vs Ray Tune':>19s}")  # fmt: skip
    for r in rows:
        ratio = f"{r.wall_s / reference.wall_s:.3f}" if reference is not None else "-"
        print(
            f"{r.side:28s}{r.trials:7d}{r.wall_s:9.2f}{r.per_trial_s:9.3f}{_ms(r.steady_s):>17s}"
            f"{_ms(r.cpu_s / r.trials):>21s}{ratio:>19s}"
        )


def print_phases(rows: list[RunStats]) -> None:
    print("\nplatform driver: time inside each driver phase, ms per trial (remainder = waiting on workers);")
    print("mlflow thread, summaries = the background MLflow writer, beside the loop (not in the remainder);")
    print("worker = median time a worker held one trial (train + artifact upload)")
    print(f"{'run':28s}" + "".join(f"{p:>14s}" for p in PHASES) + f"{'remainder':>11s}{'worker':>9s}")
    for r in rows:
        inside = sum(v for k, v in r.phases.items() if k not in OFF_PATH)
        cells = "".join(f"{1000 * r.phases.get(p, 0.0) / r.trials:14.2f}" for p in PHASES)
        print(f"{r.side + f' N={r.trials}':28s}{cells}{1000 * (r.wall_s - inside) / r.trials:11.2f}"
              f"{_ms(r.worker_s):>9s}")  # fmt: skip


def print_scale(rows: list[RunStats]) -> None:
    print(f"\ndriver time per trial vs study size (platform, no-op trials, {rows[0].side})")
    print(
        f"{'N':>6s}{'wall s':>10s}{'wall ms/trial':>15s}{'steady ms/trial':>17s}{'driver CPU ms/trial':>21s}"
    )
    for r in rows:
        print(
            f"{r.trials:6d}{r.wall_s:10.2f}{1000 * r.per_trial_s:15.1f}{_ms(r.steady_s):>17s}"
            f"{_ms(r.cpu_s / r.trials):>21s}"
        )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument(
        "--modes", default="grid,tpe", help=f"platform study shapes, comma list of {', '.join(MODES)}"
    )
    ap.add_argument("--skip-tune", action="store_true", help="platform side only")
    ap.add_argument(
        "--tune-reuse-actors", action="store_true", help="also run Ray Tune with reuse_actors=True"
    )
    ap.add_argument("--scale", action="store_true", help="also time the platform at --scale-sizes")
    ap.add_argument("--scale-sizes", default="100,1000,5000")
    ap.add_argument("--scale-mode", default="random", choices=MODES, help="study shape of the --scale runs")
    ap.add_argument("--profile", action="store_true", help="cProfile the platform driver (first mode)")
    ap.add_argument("--quick", action="store_true", help="tiny smoke run: 4 trials, no scale")
    args = ap.parse_args(argv)
    if args.quick:
        args.trials, args.scale = 4, False
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]

    warnings.filterwarnings("ignore")
    for name in ("ray", "ray.tune", "mlflow", "optuna", "alembic"):
        logging.getLogger(name).setLevel(logging.ERROR)
    from orchestrator.driver import init_ray

    t0 = time.perf_counter()
    init_ray(None, num_cpus=max(2, args.concurrency))
    ray_start = time.perf_counter() - t0
    print(f"Ray start-up (shared by both sides, excluded from every wall): {ray_start:.2f} s", flush=True)

    rows: list[RunStats] = []
    for mode in modes:
        stats, _ = run_platform(args.trials, mode, args.epochs, args.concurrency)
        rows.append(stats)
        print(f"  {stats.side}: {stats.wall_s:.2f} s", flush=True)
    reference = None
    if not args.skip_tune:
        reference = run_ray_tune(args.trials, args.epochs, args.concurrency, reuse_actors=False)
        rows.append(reference)
        print(f"  {reference.side}: {reference.wall_s:.2f} s", flush=True)
        if args.tune_reuse_actors:
            rows.append(run_ray_tune(args.trials, args.epochs, args.concurrency, reuse_actors=True))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\n{args.trials} no-op trials x {args.epochs} epochs, {args.concurrency} at a time; "
          f"{os.cpu_count()} CPUs, load average {load}")  # fmt: skip
    print_comparison(rows, reference)
    print_phases([r for r in rows if r.phases])

    if args.scale:
        sizes = [int(s) for s in args.scale_sizes.split(",")]
        scale_rows = []
        for n in sizes:
            stats, _ = run_platform(n, args.scale_mode, args.epochs, args.concurrency)
            scale_rows.append(stats)
            print(f"  N={n}: {stats.wall_s:.1f} s", flush=True)
        print_scale(scale_rows)
        print_phases(scale_rows)
    if args.profile:
        _, profile_text = run_platform(args.trials, modes[0], args.epochs, args.concurrency, profile=True)
        print(f"\ncProfile of StudyRunner.run ({modes[0]}, {args.trials} trials), top by cumulative time:")
        print(profile_text)


if __name__ == "__main__":
    main()
