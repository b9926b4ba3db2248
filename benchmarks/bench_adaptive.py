"""Seeds needed by adaptive, anytime-valid decisions vs a fixed seed count, on simulated comparisons.

One comparison = paired differences ``d_i = arm_i - baseline_i ~ N(effect, sd^2)`` (one per seed), for
effects of 0, 0.5, 1 and 2 standard deviations.  ``--sds`` are the SDs of a difference measured in this
project's studies (0.006 to 0.34 of Dice; default 0.02 and 0.1).  Method ``t`` is scale-free: its rows for
different SDs use the same standard normal draws, so they agree exactly.  The margin (the smallest effect
of interest, ``--sesoi`` SDs) is in metric units, ``margin = sesoi * sd``.

- **fixed**: the smallest n with 80 % power of the two-sided paired t-test at ``alpha`` for an effect of
  ``sesoi`` SDs, read once.  Its outcome uses the rule of the adaptive design on the fixed-n t interval at
  ``1 - alpha``: ``better``/``worse`` when the interval excludes 0 (the t-test is significant),
  ``equiv`` when it lies inside ``±margin``, ``undec`` otherwise.
- **adaptive max M**: the study spec's ``seeds: {adaptive: {start, batch, max}}`` with ``decide:`` at the
  same ``alpha`` and margin: look after ``start`` seeds, then after every ``batch`` more, stop at the first
  decided look or at ``max``.  Two caps: ``--max`` (default: the fixed design's n) and the smallest cap
  with the fixed design's power (80 %) at ``sesoi`` ("equal error rates").

Columns: ``seeds`` mean seeds used; ``better``, ``worse``, ``equiv``, ``undec`` the share of studies
ending so; ``wrong`` the share with a false conclusion (at effect 0: better or worse; otherwise worse, or
equivalent when the effect is at least the margin); ``ratio`` = seeds / the fixed design's seeds.  The
summary gives the mean over the four effects (an even mix) and its ratio, the ratio per effect, the false
better/worse rate at 0, the false equivalent rate and the power at ``sesoi``, and whether the goal (at most
half the fixed design's seeds at equal error rates: false decisions <= alpha, power >= 80 %) is met.

For method ``t`` two what-ifs follow, neither of which :func:`decide` does: (1) equal *realised* error
rates: the nominal alpha raised until the realised false decisions (with that cap and schedule) reach
``alpha`` (the anytime guarantee is then the raised alpha); (2) equivalence by the intersection-union
principle, as in TOST: each one-sided bound at ``alpha`` (see :func:`iut_codes`).

``--tau`` sets the prior scale of the ``t`` mixture; ``--scan-tau 0.5,0.8,1`` prints the equal-error-rate
figures per tau.  Everything is simulated with a fixed seed: no timing.

``--method t_sprt`` (:mod:`orchestrator.stats.sprt`): the SPRT tuned to 0.5 SD; its outcomes add
``futile`` (stopped: no effect of 0.5 SD or more), which counts as decided and is never a false call here;
``--scan-futility 0.1,0.2,0.3`` prints the equal-error-rate figures per futility boundary.  It is exactly
scale-free, so its codes for the first SD serve every SD, and it is simulated to ``3 x`` the fixed n.
The study-level scenario (comparisons with different SDs, a margin in Dice, one seed count for the whole
study) is ``benchmarks/bench_adaptive_study.py``.

    python benchmarks/bench_adaptive.py [--studies 4000] [--method t|bounded|t_sprt] [--tau 0.8] [--quick]
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

from orchestrator.stats.sequential import T_PRIOR_SCALE, classify, confidence_sequence  # noqa: E402
from orchestrator.stats.sprt import (  # noqa: E402
    FUTILE,
    SPRT_EFFECT,
    SPRT_FUTILITY,
    SPRT_MIXTURE,
    first_crossing,
    sprt_codes,
)

EFFECTS = (0.0, 0.5, 1.0, 2.0)
POWER = 0.8


@dataclass(frozen=True)
class Result:
    """Mean seeds and outcome shares of one design at one effect."""

    seeds: float
    better: float
    worse: float
    equiv: float
    undec: float
    wrong: float
    futile: float = 0.0  # t_sprt: stopped for futility ("no effect of 0.5 SD or more")


def fixed_n(sesoi: float, alpha: float, power: float = POWER) -> int:
    """Smallest n where the two-sided paired t-test has ``power`` at standardised effect ``sesoi``."""
    for n in range(2, 100_000):
        crit = sps.t.ppf(1 - alpha / 2, n - 1)
        nc = sesoi * math.sqrt(n)
        if sps.nct.sf(crit, n - 1, nc) + sps.nct.cdf(-crit, n - 1, nc) >= power:
            return n
    raise ValueError(f"no n reaches {power=} at {sesoi=}")


def result(seeds: np.ndarray, final: np.ndarray, effect: float, sesoi: float) -> Result:
    """Shares of the final outcome codes (+1 better, -1 worse, 2 equivalent, 0 undecided)."""
    better, worse, equiv, futile = (float((final == c).mean()) for c in (1, -1, 2, FUTILE))
    # at 0 any better/worse is false; at or above the margin so is equivalent
    wrong = better + worse if effect == 0 else worse + (equiv if effect >= sesoi else 0.0)
    return Result(float(seeds.mean()), better, worse, equiv, float((final == 0).mean()), wrong, futile)


def fixed_result(d: np.ndarray, n: int, alpha: float, margin: float, effect: float, sesoi: float) -> Result:
    x = d[:, :n]
    half = sps.t.ppf(1 - alpha / 2, n - 1) * x.std(axis=1, ddof=1) / math.sqrt(n)
    final = classify(x.mean(axis=1) - half, x.mean(axis=1) + half, margin)
    return result(np.full(len(d), float(n)), final, effect, sesoi)


def adaptive_codes(
    d: np.ndarray, alpha: float, margin: float, method: str, bounds: tuple[float, float] | None, tau: float
) -> np.ndarray:
    """Outcome code after every prefix (+1 better, -1 worse, 2 equivalent, 3 futile, 0 undecided)."""
    if method == "t_sprt":
        return sprt_codes(d, alpha, margin)
    lo, hi = confidence_sequence(d, alpha=alpha, method=method, bounds=bounds, grid=401, prior_scale=tau)
    return classify(lo, hi, margin)


def adaptive_result(
    codes: np.ndarray, start: int, batch: int, cap: int, effect: float, sesoi: float
) -> Result:
    looks = np.array([*range(start, cap + 1, batch)] + ([cap] if (cap - start) % batch else []))
    at_looks = codes[:, looks - 1]  # (studies, looks)
    decided = at_looks != 0
    first = np.where(decided.any(axis=1), decided.argmax(axis=1), len(looks) - 1)
    return result(looks[first], at_looks[np.arange(len(codes)), first], effect, sesoi)


def cap_for_power(codes: np.ndarray, start: int, batch: int, horizon: int, sesoi: float) -> int:
    """The smallest cap (a look of the schedule) whose power at ``sesoi`` reaches the fixed design's."""
    for cap in range(start, horizon + 1, batch):
        if adaptive_result(codes, start, batch, cap, sesoi, sesoi).better >= POWER:
            return cap
    return horizon


@dataclass(frozen=True)
class Schedule:
    """The adaptive design's looks (``start``, every ``batch``), the effect its cap is powered for, and the
    longest study simulated."""

    sesoi: float
    start: int
    batch: int
    horizon: int


def iut_codes(d: np.ndarray, alpha: float, margin: float, tau: float) -> np.ndarray:
    """Like :func:`adaptive_codes` for ``t``, but equivalence by the intersection-union principle (as TOST):
    each one-sided bound at ``alpha``, i.e. the two-sided CS at ``2 alpha / (1 + alpha)``.  With ``BF =
    (BF+ + BF-)/2`` (half-normal mixtures) and ``BF+ < 1`` wherever ``t <= 0`` (the noncentral t has monotone
    likelihood ratio and density ratio ``exp(-lambda^2/2)`` at 0), an upper miss needs ``BF- >= 1/alpha``:
    probability <= alpha by Ville's inequality.  Not what :func:`decide` does (it uses the CS at ``alpha``)."""
    codes = adaptive_codes(d, alpha, margin, "t", None, tau)
    lo, hi = confidence_sequence(d, alpha=2 * alpha / (1 + alpha), method="t", prior_scale=tau)
    return np.where((codes == 0) & (lo >= -margin) & (hi <= margin), 2, codes)


def known_sigma_sprt_codes(d: np.ndarray, alpha: float, futility: float = SPRT_FUTILITY) -> np.ndarray:
    """Reference only (no such method): ``t_sprt``'s rule with the variance KNOWN (SD 1), i.e. Wald's
    likelihood ratio ``exp(delta S_n - n delta^2 / 2)`` in place of the invariant one; no equivalence."""
    n = np.arange(1, d.shape[-1] + 1)
    s = np.cumsum(d, axis=-1)

    def log_lr(delta: float) -> np.ndarray:
        return np.asarray(delta * s - n * delta * delta / 2)

    def mix(sign: float) -> np.ndarray:
        terms = [math.log(w) + log_lr(sign * c * SPRT_EFFECT) for c, w in SPRT_MIXTURE]
        return np.asarray(np.logaddexp.reduce(np.stack(terms), axis=0))

    win, lose = math.log(2 / alpha), math.log(futility)
    futile = (log_lr(SPRT_EFFECT) <= lose) & (log_lr(-SPRT_EFFECT) <= lose)
    return first_crossing(np.select([mix(1.0) >= win, mix(-1.0) >= win, futile], [1, -1, FUTILE], default=0))


def equal_error_design(
    s: Schedule, z: dict[float, np.ndarray], alpha: float, tau: float, iut: bool = False
) -> tuple[int, dict[float, Result]]:
    """Method ``t`` at nominal level ``alpha``: the cap with 80 % power at ``sesoi``, and each effect's result
    (``t`` is scale-free, so the standard normal draws ``z`` serve for every SD)."""
    codes = {
        e: iut_codes(e + x, alpha, s.sesoi, tau)
        if iut
        else adaptive_codes(e + x, alpha, s.sesoi, "t", None, tau)
        for e, x in z.items()
    }
    cap = cap_for_power(codes[s.sesoi], s.start, s.batch, s.horizon, s.sesoi)
    return cap, {e: adaptive_result(codes[e], s.start, s.batch, cap, e, s.sesoi) for e in z}


def summary_line(
    name: str, rows: dict[float, Result], fixed: dict[float, Result], alpha: float, sesoi: float
) -> str:
    mean, base = np.mean([rows[e].seeds for e in EFFECTS]), np.mean([fixed[e].seeds for e in EFFECTS])
    per = " ".join(f"{rows[e].seeds / fixed[e].seeds:.2f}" for e in EFFECTS)
    false0, power, false_eq = rows[0.0].better + rows[0.0].worse, rows[sesoi].better, rows[sesoi].equiv
    equal = false0 <= alpha and false_eq <= alpha and power >= POWER
    met = [e for e in EFFECTS if rows[e].seeds <= 0.5 * fixed[e].seeds]
    if not equal:
        verdict = (
            f"not at equal error rates (power {power:.2f} < {POWER})"
            if power < POWER
            else "a false rate > alpha"
        )
    elif mean <= 0.5 * base:
        verdict = "goal met on the even mix"
    else:
        above = [e for e in EFFECTS if e >= min(met)] if met else []
        tail = f"; met for effects >= {min(met):g} SD" if met and above == met else ""
        verdict = f"goal (<= 0.50) NOT met on the even mix{tail}"
    return (
        f"  {name:<24} {mean:5.1f} vs {base:.0f} seeds = {mean / base:.2f} x  (per effect {per});  "
        f"false better/worse at 0: {false0:.3f}, at {sesoi:g} SD: false equivalent {false_eq:.3f}, "
        f"power {power:.2f}: {verdict}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sds", default="0.02,0.1", help="SDs of the paired difference, in Dice")
    ap.add_argument("--sesoi", type=float, default=0.5, help="smallest effect of interest (= margin), in SDs")
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--start", type=int, default=3)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--max", type=int, default=None, help="cap of the first adaptive row (default: fixed n)")
    ap.add_argument("--method", choices=("t", "bounded", "t_sprt"), default="t")
    ap.add_argument("--tau", type=float, default=T_PRIOR_SCALE, help="prior scale of the t mixture")
    ap.add_argument("--scan-tau", default="", help="comma-separated taus: equal-error-rate figures for each")
    ap.add_argument("--scan-futility", default="", help="t_sprt: comma-separated futility boundaries b")
    ap.add_argument("--studies", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=20261129)
    ap.add_argument("--quick", action="store_true", help="a small smoke run (400 studies, one SD)")
    args = ap.parse_args(argv)
    sds = [float(s) for s in args.sds.split(",")]
    if args.quick:
        args.studies, sds = 400, sds[:1]
    n_fix = fixed_n(args.sesoi, args.alpha)
    cap1 = args.max if args.max is not None else n_fix
    bounds = (0.0, 1.0) if args.method == "bounded" else None  # Dice: differences in [-1, 1]
    sprt = args.method == "t_sprt"  # its e-values need a quadrature per seed: a shorter horizon
    sched = Schedule(args.sesoi, args.start, args.batch, max(cap1, (3 if sprt else 8) * n_fix))
    rng = np.random.default_rng(args.seed)
    effects = sorted({*EFFECTS, args.sesoi})
    z = {e: rng.normal(0.0, 1.0, (args.studies, sched.horizon)) for e in effects}  # standard normal draws
    tau_note = (
        f" (tau {args.tau:g})" if args.method == "t" else f" (futility b {SPRT_FUTILITY})" if sprt else ""
    )
    print(
        f"alpha {args.alpha}, smallest effect of interest {args.sesoi} SD (= margin), method {args.method}"
        f"{tau_note}, {args.studies} studies per row; fixed design: {n_fix} seeds (80 % power at "
        f"{args.sesoi} SD); adaptive: start {args.start}, batch {args.batch}"
    )
    print()
    print(
        f"{'sd':>6} {'effect':>7} {'design':<17} {'seeds':>6} {'better':>7} {'worse':>6} {'equiv':>6} "
        f"{'undec':>6} {'futile':>6} {'wrong':>6} {'ratio':>6}"
    )
    tables: list[tuple[float, str, dict[float, Result]]] = []
    scale_free: dict[float, np.ndarray] = {}  # t_sprt's codes for the first SD serve every SD
    for sd in sds:
        data = {e: sd * (e + x) for e, x in z.items()}
        if bounds is not None:
            data = {e: np.clip(x, -1.0, 1.0) for e, x in data.items()}
        margin = args.sesoi * sd
        codes = scale_free or {
            e: adaptive_codes(x, args.alpha, margin, args.method, bounds, args.tau) for e, x in data.items()
        }
        if sprt:  # exactly scale-free (tests/test_sequential_sprt.py::test_scale_free)
            scale_free = codes
        need = cap_for_power(codes[args.sesoi], args.start, args.batch, sched.horizon, args.sesoi)
        designs = {
            "fixed": {e: fixed_result(data[e], n_fix, args.alpha, margin, e, args.sesoi) for e in effects},
            f"adaptive max {cap1}": {
                e: adaptive_result(codes[e], args.start, args.batch, cap1, e, args.sesoi) for e in effects
            },
            f"adaptive max {need}": {
                e: adaptive_result(codes[e], args.start, args.batch, need, e, args.sesoi) for e in effects
            },
        }
        for e in EFFECTS:
            for name, rows in designs.items():
                o = rows[e]
                print(
                    f"{sd:>6g} {e:>5.1f}sd {name:<17} {o.seeds:>6.1f} {o.better:>7.3f} {o.worse:>6.3f} "
                    f"{o.equiv:>6.3f} {o.undec:>6.3f} {o.futile:>6.3f} {o.wrong:>6.3f} "
                    f"{o.seeds / designs['fixed'][e].seeds:>6.2f}"
                )
        tables += [(sd, name, rows) for name, rows in designs.items()]
    print()
    print(
        "mean seeds over the four effects (an even mix) against the fixed design, the ratio per effect "
        f"({', '.join(f'{e:g}' for e in EFFECTS)} SD), and the error rates (fixed: alpha {args.alpha}, power {POWER}):"
    )
    fixed = {sd: rows for sd, name, rows in tables if name == "fixed"}
    for sd, name, rows in tables:
        if name != "fixed":
            print(summary_line(f"sd {sd:g} {name}", rows, fixed[sd], args.alpha, args.sesoi))
    if args.method == "t":
        print()
        print(
            "at equal realised error rates: the largest nominal alpha (step alpha/5) whose realised false "
            f"decisions stay <= {args.alpha}, capped for 80 % power (the guarantee is then that alpha):"
        )
        best: tuple[float, int, dict[float, Result]] | None = None
        for k in range(5, 21):
            a = args.alpha * k / 5
            cap, rows = equal_error_design(sched, z, a, args.tau)
            if max(rows[0.0].better + rows[0.0].worse, rows[args.sesoi].equiv) > args.alpha:
                break
            best = (a, cap, rows)
        if best is None:
            print(
                f"  none: even nominal alpha {args.alpha} has a realised false rate above it in this simulation"
            )
        else:
            a, cap, rows = best
            print(
                summary_line(f"nominal alpha {a:.2f}, max {cap}", rows, fixed[sds[0]], args.alpha, args.sesoi)
            )
        print()
        print(
            f"equivalence by the intersection-union principle (each one-sided bound at {args.alpha}, as in "
            "TOST; decide() does not do this), capped for 80 % power:"
        )
        cap, rows = equal_error_design(sched, z, args.alpha, args.tau, iut=True)
        print(summary_line(f"IUT equivalence, max {cap}", rows, fixed[sds[0]], args.alpha, args.sesoi))
    if args.scan_tau and args.method == "t":
        print()
        print("prior scale tau of the t mixture, capped for 80 % power at the smallest effect of interest:")
        for tau in (float(t) for t in args.scan_tau.split(",")):
            cap, rows = equal_error_design(sched, z, args.alpha, tau)
            print(summary_line(f"tau {tau:g}, max {cap}", rows, fixed[sds[0]], args.alpha, args.sesoi))
    if args.scan_futility and sprt:
        print()
        print("t_sprt futility boundary b, capped for 80 % power at the smallest effect of interest:")
        for b in (float(v) for v in args.scan_futility.split(",")):
            codes = {e: sprt_codes(e + x, args.alpha, args.sesoi, futility=b) for e, x in z.items()}
            cap = cap_for_power(codes[args.sesoi], args.start, args.batch, sched.horizon, args.sesoi)
            rows = {e: adaptive_result(codes[e], args.start, args.batch, cap, e, args.sesoi) for e in z}
            print(summary_line(f"b {b:g}, max {cap}", rows, fixed[sds[0]], args.alpha, args.sesoi))
    if sprt:
        print()
        print("reference, not a method: the same rule with the variance KNOWN (Wald's likelihood ratio):")
        codes = {e: known_sigma_sprt_codes(e + x, args.alpha) for e, x in z.items()}
        cap = cap_for_power(codes[args.sesoi], args.start, args.batch, sched.horizon, args.sesoi)
        rows = {e: adaptive_result(codes[e], args.start, args.batch, cap, e, args.sesoi) for e in z}
        print(summary_line(f"known SD, max {cap}", rows, fixed[sds[0]], args.alpha, args.sesoi))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
