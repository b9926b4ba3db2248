"""One study, many comparisons with different SDs: adaptive seeds vs ONE fixed seed count for the study.

The motivation of issue #11: in one study the SD of the paired Dice difference ranges from about 0.005 (mild
heat IEL vs plain CE, last-5-epoch Dice) to 0.35 (the authors' heat IEL), while the margin (the smallest
difference of interest) is fixed in metric units, 0.01 Dice.  A fixed design must choose its seed count
before seeing any SD.  Simulated: one comparison per SD in ``--sds``, each with true effects of 0, 0.5, 1 and
2 of ITS SDs (an even mix) and at the margin (for power); ``alpha`` is family-wise over the study's
comparisons (Bonferroni, as :func:`orchestrator.stats.decide_cells`).

- **fixed, sized by the largest SD**: the one n with 80 % power of the two-sided paired t-test at the margin
  for the largest SD, for every comparison (its outcome: the t interval at ``1 - alpha/m`` read once:
  better/worse when it excludes 0, equivalent inside ``±margin``).
- **fixed, per-comparison oracle**: each comparison gets the n with 80 % power at the margin for its own SD
  (not a design anyone can run: it needs the SDs in advance).
- **adaptive t**: ``seeds: {adaptive: {start, batch, max}}``, ``decide: {method: t}``, one ``max`` for the
  study: the smallest with 80 % power at the margin for every comparison (the largest SD binds).
- **adaptive t_sprt, max M**: the SPRT method (tuned to 0.5 SD; power at the margin only where the margin
  is at least about 0.5 SD) with cap ``--sprt-max``.

Columns per comparison: mean seeds over the four effects, the power at the margin, the false better/worse
rate at 0 and the false equivalent rate at the margin; then the study's total seeds (sum over comparisons)
and its ratio to each fixed design.  Paths are simulated in blocks of seeds with a fixed seed until every
study is decided or capped; the fixed designs draw the mean and SD of n normals exactly.

    python benchmarks/bench_adaptive_study.py [--studies 1000] [--sds 0.005,0.01,0.02,0.03,0.2,0.35] [--quick]
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats as sps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.stats.sequential import classify, t_boundary  # noqa: E402
from orchestrator.stats.sprt import crossings, first_crossing  # noqa: E402

EFFECTS = (0.0, 0.5, 1.0, 2.0)
POWER = 0.8


def fixed_n(theta: float, alpha: float, power: float = POWER) -> int:
    """Smallest n with ``power`` for the two-sided paired t-test at standardised effect ``theta`` (bisection)."""

    def pw(n: int) -> float:
        c, nc = sps.t.ppf(1 - alpha / 2, n - 1), theta * math.sqrt(n)
        return float(sps.nct.sf(c, n - 1, nc) + sps.nct.cdf(-c, n - 1, nc))

    lo, hi = 2, 4
    while pw(hi) < power:
        lo, hi = hi, 2 * hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if pw(mid) >= power else (mid, hi)
    return hi


@dataclass(frozen=True)
class Outcomes:
    """Mean seeds and the shares of each outcome (+1 better, -1 worse, 2 equivalent, 3 futile, 0 undecided)."""

    seeds: float
    share: dict[int, float]


def outcomes(seeds: np.ndarray, final: np.ndarray) -> Outcomes:
    return Outcomes(float(seeds.mean()), {c: float((final == c).mean()) for c in (1, -1, 2, 3, 0)})


def fixed(rng: np.random.Generator, studies: int, n: int, mu: float, alpha: float, margin: float) -> Outcomes:
    """The fixed design's outcome from the exact law of the mean and SD of ``n`` N(mu, 1) draws."""
    mean = mu + rng.normal(0.0, 1.0, studies) / math.sqrt(n)
    sd = np.sqrt(rng.chisquare(n - 1, studies) / (n - 1))
    half = sps.t.ppf(1 - alpha / 2, n - 1) * sd / math.sqrt(n)
    return outcomes(np.full(studies, float(n)), classify(mean - half, mean + half, margin))


def adaptive(
    rng: np.random.Generator,
    studies: int,
    mu: float,
    alpha: float,
    margin: float,
    looks: tuple[int, int, int],
    method: str,
    block: int = 2000,
) -> tuple[np.ndarray, np.ndarray]:
    """``(first decided look, its code)`` per study of the adaptive design on N(mu, 1) differences (both
    methods are scale-free) up to the cap of ``looks``; an undecided study gets ``(cap + 1, 0)``.  Read it
    at any smaller cap with :func:`at_cap`.

    ``t``: the running-intersection CS of :func:`orchestrator.stats.confidence_sequence`, carried across
    blocks of seeds and read at the looks.  ``t_sprt``: the first boundary crossed at any n
    (:func:`.sprt.first_crossing`), one block (cap <= block).
    """
    start, batch, cap = looks
    s1, s2 = np.zeros(studies), np.zeros(studies)
    run_lo, run_hi = np.full(studies, -np.inf), np.full(studies, np.inf)
    first, code = np.full(studies, cap + 1), np.zeros(studies, dtype=int)
    open_ = np.ones(studies, dtype=bool)
    grid = [*range(start, cap + 1, batch)] + ([cap] if (cap - start) % batch else [])
    done = 0
    while done < cap and open_.any():
        k = min(block, cap - done)
        x = mu + rng.normal(0.0, 1.0, (studies, block))[:, :k]  # the same draws whatever the cap
        n = np.arange(done + 1, done + k + 1, dtype=float)
        c1, c2 = s1[:, None] + np.cumsum(x, axis=1), s2[:, None] + np.cumsum(x * x, axis=1)
        if method == "t_sprt":
            if done or cap > block:
                raise ValueError("t_sprt is simulated in one block: use a cap <= block")
            codes = first_crossing(crossings(x, alpha, margin))
        else:
            mean = c1 / n
            with np.errstate(divide="ignore", invalid="ignore"):
                var = np.maximum(c2 - c1 * mean, 0.0) / (n - 1)
                half = t_boundary(n, alpha) * np.sqrt(var / n)
            half = np.where(np.isnan(half), np.inf, half)
            lo, hi = mean - half, mean + half
            rl = np.maximum(np.maximum.accumulate(lo, axis=1), run_lo[:, None])
            rh = np.minimum(np.minimum.accumulate(hi, axis=1), run_hi[:, None])
            empty = rl > rh
            codes = classify(np.where(empty, lo, rl), np.where(empty, hi, rh), margin)
            run_lo, run_hi = rl[:, -1], rh[:, -1]
        at = np.array([m for m in grid if done < m <= done + k], dtype=int)
        if at.size:
            read = codes[:, at - done - 1]
            hit = (read != 0) & open_[:, None]
            now_done = hit.any(axis=1)
            j = hit.argmax(axis=1)
            first = np.where(now_done, at[j], first)
            code = np.where(now_done, read[np.arange(studies), j], code)
            open_ &= ~now_done
        s1, s2, done = c1[:, -1], c2[:, -1], done + k
    return first, code


def at_cap(first: np.ndarray, code: np.ndarray, cap: int) -> Outcomes:
    """The outcomes of :func:`adaptive` had the cap been ``cap`` (at most the simulated one)."""
    decided = first <= cap
    return outcomes(np.where(decided, first, cap), np.where(decided, code, 0))


@dataclass(frozen=True)
class Row:
    """One design on one comparison: mean seeds over :data:`EFFECTS` and the error rates."""

    seeds: float
    power: float  # better at an effect equal to the margin
    false0: float  # better or worse at 0
    false_eq: float  # equivalent at an effect equal to the margin


def row(by_effect: dict[float, Outcomes], theta: float) -> Row:
    at0, at_m = by_effect[0.0], by_effect[theta]
    seeds = float(np.mean([by_effect[e].seeds for e in EFFECTS]))
    return Row(seeds, at_m.share[1], at0.share[1] + at0.share[-1], at_m.share[2])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sds", default="0.005,0.01,0.02,0.03,0.2,0.35", help="SD of each comparison, in Dice")
    ap.add_argument("--margin", type=float, default=0.01, help="smallest difference of interest, in Dice")
    ap.add_argument("--alpha", type=float, default=0.05, help="family-wise over the study's comparisons")
    ap.add_argument("--start", type=int, default=3)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--sprt-max", type=int, default=200, help="cap of the t_sprt design")
    ap.add_argument("--studies", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=20261129)
    ap.add_argument("--quick", action="store_true", help="a smoke run: 100 studies, SDs 0.005 and 0.05")
    args = ap.parse_args(argv)
    if args.quick:
        args.studies, args.sds, args.sprt_max = 100, "0.005,0.05", 60
    sds = [float(s) for s in args.sds.split(",")]
    level = args.alpha / len(sds)
    thetas = [args.margin / sd for sd in sds]
    n_large = fixed_n(min(thetas), level)
    n_own = [fixed_n(t, level) for t in thetas]
    grid = (args.start, args.batch)
    # adaptive t: one cap for the study, the smallest look with 80 % power at the margin for the largest SD
    horizon = args.start + args.batch * math.ceil((3 * n_large - args.start) / args.batch)
    first, code = adaptive(
        np.random.default_rng(args.seed), args.studies, min(thetas), level, min(thetas), (*grid, horizon), "t"
    )
    cap = next(
        (c for c in range(args.start, horizon + 1, args.batch) if at_cap(first, code, c).share[1] >= POWER),
        horizon,
    )
    print(
        f"{len(sds)} comparisons, SDs {', '.join(f'{s:g}' for s in sds)} (Dice); margin {args.margin} Dice; "
        f"alpha {args.alpha} family-wise ({level:.4g} each, Bonferroni); effects 0, 0.5, 1, 2 SD of each "
        f"comparison (an even mix) and the margin (power); {args.studies} studies each.\nfixed, sized by the "
        f"largest SD: {n_large} seeds per comparison; adaptive t: start {args.start}, batch {args.batch}, "
        f"max {cap} (80 % power at the margin for the largest SD); adaptive t_sprt: max {args.sprt_max}."
    )
    names = ("fixed largest SD", "fixed oracle", f"adaptive t max {cap}", f"t_sprt max {args.sprt_max}")
    rows: dict[str, list[Row]] = {k: [] for k in names}
    print(
        f"\n{'sd':>6} {'margin/sd':>9} {'design':<20} {'seeds':>8} {'power':>6} {'false0':>7} {'false_eq':>8}"
    )
    for i, (sd, theta) in enumerate(zip(sds, thetas, strict=True)):
        effects = sorted({*EFFECTS, theta})
        per: dict[str, dict[float, Outcomes]] = {k: {} for k in names}
        for j, e in enumerate(effects):
            rng = np.random.default_rng([args.seed, i, j])
            per[names[0]][e] = fixed(rng, args.studies, n_large, e, level, theta)
            per[names[1]][e] = fixed(rng, args.studies, n_own[i], e, level, theta)
            f, c = adaptive(rng, args.studies, e, level, theta, (*grid, cap), "t")
            per[names[2]][e] = at_cap(f, c, cap)
            f, c = adaptive(rng, args.studies, e, level, theta, (*grid, args.sprt_max), "t_sprt")
            per[names[3]][e] = at_cap(f, c, args.sprt_max)
        for name in names:
            r = row(per[name], theta)
            rows[name].append(r)
            print(
                f"{sd:>6g} {theta:>9.3g} {name:<20} {r.seeds:>8.1f} {r.power:>6.3f} {r.false0:>7.3f} {r.false_eq:>8.3f}"
            )
    total = {k: sum(r.seeds for r in v) for k, v in rows.items()}
    print("\nstudy total (sum over comparisons of the mean seeds over the four effects):")
    for name in names:
        worst_power = min(r.power for r in rows[name])
        print(
            f"  {name:<20} {total[name]:>10.0f} seeds = {total[name] / total[names[0]]:.3f} x fixed-largest, "
            f"{total[name] / total[names[1]]:.3f} x oracle; smallest power at the margin {worst_power:.3f}, "
            f"largest false better/worse at 0 {max(r.false0 for r in rows[name]):.3f}, largest false "
            f"equivalent {max(r.false_eq for r in rows[name]):.3f} (alpha per comparison {level:.4g})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
