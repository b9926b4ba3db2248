"""Does a training recipe converge in every seed?  Train one configuration over many seeds and tabulate.

For each seed it runs :func:`ielcore.train_trial` (one torch thread per process, ``--jobs`` processes at
a time) and prints one row:

    seed        the trial seed (initial weights, data order, label noise, procedural data)
    dice        validation Dice after the last epoch (mean over the foreground classes)
    dice_c<k>   validation Dice of foreground class k after the last epoch (a collapsed class shows 0)
    last5       mean Dice over the last 5 epochs (fewer if the run is shorter)
    best        the best epoch's Dice, and (best_ep) that epoch
    cpu_s       CPU seconds of the trial (process time around train_trial; one thread)

and a summary: how many seeds reach ``dice >= --threshold`` (convergence) and the largest best-epoch
Dice (a recipe whose best run reaches ``--ceiling`` is too easy to show differences).

    python benchmarks/recipe_check.py configs/nuclei_recipe.yaml --seeds 20 --jobs 2
    python benchmarks/recipe_check.py configs/cells_recipe.yaml --seeds 20 --set model.width=8
    python benchmarks/recipe_check.py configs/nuclei_recipe.yaml --quick
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import time
from typing import Any

import torch

from ielcore.spec import TrialConfig
from ielcore.train import train_trial
from ielcore.yamlio import load_yaml_file, parse_yaml_text


def run_seed(args: tuple[dict[str, Any], int]) -> dict[str, Any]:
    """Train ``config`` with ``seed``; return the row (see the module docstring)."""
    config, seed = args
    torch.set_num_threads(1)
    cfg = TrialConfig.from_dict({**config, "seed": seed})
    t0 = time.process_time()
    result = train_trial(cfg)
    cpu_s = time.process_time() - t0
    final = result.final_metrics
    history = [h["dice"] for h in result.history]
    best = max(result.history, key=lambda h: h["dice"]) if result.history else {"dice": 0.0, "epoch": 0}
    return {
        "seed": seed,
        "status": result.status,
        "dice": final.get("dice", float("nan")),
        **{k: v for k, v in sorted(final.items()) if k.startswith("dice_c")},
        "last5": statistics.fmean(history[-5:]) if history else float("nan"),
        "best": best["dice"],
        "best_ep": int(best["epoch"]),
        "cpu_s": cpu_s,
    }


def run_all(config: dict[str, Any], seeds: list[int], jobs: int) -> list[dict[str, Any]]:
    """Rows for every seed, in seed order (each also printed to stderr as it finishes)."""
    work = [(config, s) for s in seeds]
    rows = []
    with mp.get_context("spawn").Pool(max(jobs, 1)) as pool:
        for row in pool.imap(run_seed, work):
            print(f"seed {row['seed']}: dice {row['dice']:.4f} cpu_s {row['cpu_s']:.1f}", file=sys.stderr)
            rows.append(row)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """A markdown table of the rows."""
    keys = [k for k in rows[0] if k != "status"]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---:|" * len(keys)]
    for r in rows:
        cells = [f"{r[k]:.4f}" if isinstance(r[k], float) and k != "cpu_s" else str(r[k]) for k in keys]
        cells[keys.index("cpu_s")] = f"{r['cpu_s']:.1f}"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary(rows: list[dict[str, Any]], threshold: float, ceiling: float) -> str:
    dice = [r["dice"] for r in rows]
    ok = sum(d >= threshold for d in dice)
    classes = sorted(k for k in rows[0] if k.startswith("dice_c"))
    per_class = ", ".join(f"{k} min {min(r[k] for r in rows):.4f}" for k in classes)
    best = max(r["best"] for r in rows)
    return (
        f"converged (final dice >= {threshold}): {ok}/{len(rows)}; final dice min {min(dice):.4f} "
        f"mean {statistics.fmean(dice):.4f} max {max(dice):.4f}; {per_class}; "
        f"largest best-epoch dice {best:.4f} ({'below' if best < ceiling else 'NOT below'} {ceiling}); "
        f"cpu_s mean {statistics.fmean(r['cpu_s'] for r in rows):.1f} max {max(r['cpu_s'] for r in rows):.1f}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", help="a trial configuration YAML (as `iel train` takes it)")
    ap.add_argument("--seeds", type=int, default=20, help="seeds 0..N-1 (default 20)")
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--seed-list", default="", help="comma-separated seeds (instead of --seeds)")
    ap.add_argument("--jobs", type=int, default=2, help="processes at a time, one torch thread each")
    ap.add_argument("--set", action="append", default=[], metavar="PATH=VALUE", help="override, repeatable")
    ap.add_argument("--threshold", type=float, default=0.85)
    ap.add_argument("--ceiling", type=float, default=0.98)
    ap.add_argument("--quick", action="store_true", help="2 seeds, 2 epochs (a smoke run)")
    args = ap.parse_args(argv)

    config = dict(load_yaml_file(args.config, what="trial configuration"))
    overrides = {}
    for item in args.set:
        path, _, value = item.partition("=")
        overrides[path] = parse_yaml_text(value) if value else None
    if args.quick:
        overrides["epochs"] = 2
        args.seeds = 2
    cfg = TrialConfig.from_dict(config).replace(overrides)
    config = cfg.to_dict()
    config["artifacts"] = {"checkpoint": False, "prediction_grid": False}
    seeds = (
        [int(s) for s in args.seed_list.split(",")]
        if args.seed_list
        else list(range(args.first_seed, args.first_seed + args.seeds))
    )
    print(f"recipe {args.config} {' '.join(args.set)}: {len(seeds)} seeds, {args.jobs} jobs", flush=True)
    t0 = time.perf_counter()
    rows = run_all(config, seeds, args.jobs)
    print(table(rows))
    print(summary(rows, args.threshold, args.ceiling))
    print(f"wall {time.perf_counter() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
