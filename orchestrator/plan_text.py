"""The ``--dry-run`` text of a plan (:meth:`orchestrator.plan.Plan.describe`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.plan import _fmt, _fmt_list, cell_key

if TYPE_CHECKING:
    from orchestrator.plan import Plan


def _seed_lines(plan: Plan) -> list[str]:
    s = plan.study
    lines = []
    if s.adaptive is None:
        shown = ", ".join(map(str, s.seeds[:10])) + (", ..." if len(s.seeds) > 10 else "")
        lines.append(f"seeds: {len(s.seeds)} ({shown})")
    else:
        a = s.adaptive
        lines.append(
            f"seeds: adaptive: every cell starts with {a.start} (0..{a.start - 1}); an undecided comparison "
            f"gets {a.batch} more at a time, up to {a.max} seeds"
        )
    d = s.decide
    if d is not None:
        score = {"last": "last epoch", "best": "best epoch"}.get(d.score, f"mean of the last {d.k} epochs")
        lines.append(
            f"decide: {d.direction} {d.metric} (trial score: {score}); method {d.method}, alpha {d.alpha:g} "
            f"(family-wise), equivalence margin {d.margin:g}"
        )
    return lines


def describe_plan(plan: Plan) -> str:
    """The study, its factors and counts, the seed design and decisions, and a table of the cells."""
    s = plan.study
    lines = [f"study {s.name}" + (f": {s.description}" if s.description else "")]
    if s.overrides:
        lines.append(f"overrides: {', '.join(s.overrides)}")
    lines.append("factors:" if s.all_factors() else "factors: none (a single cell: the base configuration)")
    for name, flat in s.arms:
        lines.append(f"  arm {name}: {cell_key(flat) if flat else 'the base configuration'}")
    for path, values in s.factors:
        lines.append(f"  {path}: {_fmt_list(values)}")
    for i, group in enumerate(s.zip_groups):
        lines.append(f"  zip[{i}]: " + " | ".join(f"{p}: {_fmt_list(v)}" for p, v in group))
    for rule in s.exclude:
        lines.append(f"exclude: {cell_key(rule)}")
    lines.append(f"baseline: {cell_key(s.baseline) if s.baseline else 'none'}")
    collapsed = plan.n_combinations - plan.n_excluded - len(plan.cells)
    lines.append(
        f"cells: {len(plan.cells)} ({plan.n_combinations} combinations, {plan.n_excluded} excluded, "
        f"{collapsed} collapsed)"
    )
    lines.extend(_seed_lines(plan))
    if s.search is None:
        lines.append("search: none")
    else:
        q = s.search
        goals = ", ".join(f"{o.direction} {o.metric}" for o in q.objectives)
        lines.append(
            f"search: {q.n_trials} trials per cell, sampler {q.sampler}, pruner {q.pruner}, {goals}; "
            f"params {', '.join(p.path for p in q.params)}"
        )
    if s.adaptive is None:
        lines.append(f"total trials: {plan.n_trials()}")
    else:
        lines.append(
            f"total trials: {plan.n_trials()} to start, at most {len(plan.cells) * s.adaptive.max} "
            f"({len(plan.cells)} cells x {s.adaptive.max} seeds)"
        )
    r = s.resources
    lines.append(
        f"resources per trial: {r.cpus:g} CPU, {r.gpus:g} GPU"
        + (f" ({r.gpu_memory_fraction:g} of its memory)" if r.gpu_memory_fraction else "")
        + f"; max_concurrent {s.max_concurrent}, retries {s.retries}, "
        f"timeout {f'{s.timeout_s:g} s' if s.timeout_s else 'none'}, fuse {s.fuse}"
    )
    header = ["#", "baseline", *s.factor_paths, "key"]
    rows = [
        [
            str(i + 1),
            "*" if c.is_baseline else "",
            *(_fmt(c.factors[p]) if p in c.factors else "-" for p in s.factor_paths),
            c.key,
        ]
        for i, c in enumerate(plan.cells)
    ]
    widths = [max(len(r[j]) for r in [header, *rows]) for j in range(len(header))]
    lines.append("")
    lines.extend("  " + "  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in [header, *rows])
    return "\n".join(lines)
