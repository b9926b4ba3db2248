"""Benchmark of the results database: 10^4 trials x 20 epochs x 3 metrics, then aggregation and view queries.

    python benchmarks/bench_db.py                          # SQLite in a temporary folder
    python benchmarks/bench_db.py --postgres postgresql://user:pw@host:5432/bench   # also PostgreSQL

The PostgreSQL database should be empty (a study named ``bench`` is replaced).  The bulk fill uses
SQLAlchemy Core batches; ``driver writes/trial`` times the driver's real per-trial calls
(ensure_trial, mark_running, finish_trial with the epoch rows) on extra trials.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import delete, insert, select

from orchestrator.db import ResultsDB, TrialState
from orchestrator.db.models import EpochMetric, FinalMetric, Study, Trial, utcnow

IEL_TYPES = ("none", "heat", "tv", "perona_malik", "convex")
NOISE_RATES = (0.0, 0.1, 0.2, 0.4)
DTS = (0.05, 0.1, 0.15, 0.2, 0.25)
EPOCH_METRICS = ("loss", "val_loss", "dice")


def fill(db: ResultsDB, n_trials: int, epochs: int, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    with db.engine.begin() as conn:
        conn.execute(delete(Study).where(Study.name == "bench"))
    sid = db.ensure_study("bench", "benchmark", {"n_trials": n_trials})
    cells = []
    for itype in IEL_TYPES:
        for rate in NOISE_RATES:
            for dt in DTS:
                factors = {"iel.type": itype, "noise.rate": rate, "iel.dt": dt}
                key = f"{itype}/{rate}/{dt}"
                cells.append(
                    db.ensure_cell(sid, key, factors, itype == "none" and rate == 0.0 and dt == 0.05, None)
                )
    now = utcnow()
    trial_rows = [
        {
            "study_id": sid, "cell_id": cells[i % len(cells)], "seed": i // len(cells), "search_index": None,
            "trial_hash": f"{i:064x}", "config_json": "{}", "state": TrialState.COMPLETE.value, "attempts": 1,
            "code_version": "bench", "created_at": now, "started_at": now, "finished_at": now,
            "duration_s": float(rng.uniform(10, 100)),
        }
        for i in range(n_trials)
    ]  # fmt: skip
    with db.engine.begin() as conn:
        conn.execute(insert(Trial), trial_rows)
        ids = conn.execute(select(Trial.id).where(Trial.study_id == sid).order_by(Trial.id)).scalars().all()
        finals, epochs_rows = [], []
        for tid in ids:
            dice = float(rng.beta(8, 2))
            for name, value in (
                ("dice", dice),
                ("miou", dice * 0.9),
                ("pixel_acc", 0.95),
                ("val_loss", 1 - dice),
            ):
                finals.append({"trial_id": tid, "name": name, "value": value})
            for e in range(epochs):
                for name in EPOCH_METRICS:
                    epochs_rows.append(
                        {"trial_id": tid, "epoch": e, "name": name, "value": float(rng.random())}
                    )
        conn.execute(insert(FinalMetric), finals)
        for k in range(0, len(epochs_rows), 50_000):
            conn.execute(insert(EpochMetric), epochs_rows[k : k + 50_000])
    return time.perf_counter() - t0


def timed(fn: Callable[[], Any], repeat: int = 5) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def driver_writes_per_trial(db: ResultsDB, n: int, epochs: int) -> float:
    sid = db.ensure_study("bench-writes", "", {})
    cid = db.ensure_cell(sid, "c", {}, False, None)
    t0 = time.perf_counter()
    for i in range(n):
        tr = db.ensure_trial(sid, cid, i, f"w{i:063x}", {"i": i}, None, "bench")
        db.mark_running(tr.id, attempt=1, mlflow_run_id=None, host="h", device="cpu")
        rows = [(e, m, 0.5) for e in range(epochs) for m in EPOCH_METRICS]
        db.finish_trial(
            tr.id, TrialState.COMPLETE, final_metrics={"dice": 0.5}, duration_s=1.0, epoch_metrics=rows
        )
    return (time.perf_counter() - t0) / n


def bench(url: str, n_trials: int, epochs: int) -> dict[str, float]:
    with ResultsDB(url) as db:
        out = {"fill (bulk)": fill(db, n_trials, epochs)}
        out["aggregate per cell"] = timed(lambda: db.aggregate("bench", "dice"))
        out["aggregate group_by noise.rate"] = timed(
            lambda: db.aggregate("bench", "dice", group_by=["noise.rate"])
        )
        out["status_counts"] = timed(lambda: db.status_counts("bench"))
        out["trials() -> 10^4 records"] = timed(lambda: db.trials("bench"), repeat=3)
        view_all = "SELECT * FROM iel_trial_summary WHERE study = 'bench'"
        view_agg = (
            "SELECT cell_key, COUNT(*), AVG(dice), MIN(dice), MAX(dice) FROM iel_trial_summary "
            "WHERE study = 'bench' AND state = 'COMPLETE' GROUP BY cell_key"
        )
        rows = db.readonly_query(view_all)[1]
        assert len(rows) == n_trials, len(rows)
        out["view: all rows of the study"] = timed(lambda: db.readonly_query(view_all))
        out["view: GROUP BY cell_key"] = timed(lambda: db.readonly_query(view_agg))
        out["driver writes/trial (ms)"] = driver_writes_per_trial(db, 100, epochs) * 1000
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=10_000)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--postgres", metavar="URL", help="also benchmark this (empty) PostgreSQL database")
    args = ap.parse_args()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["SQLite"] = bench(f"sqlite:///{Path(tmp) / 'bench.db'}", args.trials, args.epochs)
    if args.postgres:
        results["PostgreSQL"] = bench(args.postgres, args.trials, args.epochs)
    backends = list(results)
    print(f"{args.trials} trials x {args.epochs} epochs x {len(EPOCH_METRICS)} metrics; median seconds")
    print(f"{'operation':34s}" + "".join(f"{b:>14s}" for b in backends))
    for op in results["SQLite"]:
        print(f"{op:34s}" + "".join(f"{results[b][op]:14.4f}" for b in backends))


if __name__ == "__main__":
    main()
