"""``iel report``: build a study's report from the results database and log it to its MLflow parent run.

Layout of the output folder::

    report.md | report.html   tables (per metric: cells, seeds, mean, std, CI, paired comparisons) + figures
    report.json               the same numbers, machine-readable (see tables.to_json)
    figures/*.png             metric vs noise rate, vs IEL steps, heatmap, training curves, Optuna plots
    predictions/*.png         one prediction grid (image, noisy label, truth, prediction) per arm

The report is written to a hidden folder inside the output folder, then moved into place: files an earlier
``iel report`` wrote (listed in ``.iel-report-manifest.json``) are replaced or removed, files anyone else put
there are never touched, and a report that would overwrite one of them is refused (see
:mod:`orchestrator.report.manifest`).  The listed files are logged under ``report/`` to the study's parent
MLflow run (``iel.role=study``).
"""

from __future__ import annotations

import math
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.db import ResultsDB
from orchestrator.report import plots
from orchestrator.report.grids import prediction_grids
from orchestrator.report.manifest import manifest_files, publish
from orchestrator.report.render import (
    FORMAT_ALIASES,
    FORMATS,
    Block,
    Heading,
    Image,
    Paragraph,
    Strong,
    Table,
    render,
)
from orchestrator.report.tables import (
    CellStat,
    Comparison,
    StudyData,
    compare,
    load_study_data,
    summarise,
    to_json,
)
from orchestrator.report.verdicts import verdict_blocks, verdicts
from orchestrator.settings import Settings

CURVE_METRICS: tuple[str, ...] = ("dice", "train_loss")


@dataclass(frozen=True)
class Report:
    """What :func:`build_report` wrote."""

    study: str
    out_dir: Path
    path: Path  # report.md or report.html
    json_path: Path
    figures: tuple[Path, ...]
    prediction_grids: tuple[Path, ...]
    stats: tuple[CellStat, ...]
    comparisons: tuple[Comparison, ...]
    mlflow_run_id: str | None  # the parent run it was logged to (None when not logged)


def _f(v: float | None, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.{digits}f}"


def _p(v: float | None) -> str:
    if v is None:
        return "–"
    return f"{v:.4f}" if v >= 1e-4 else f"{v:.1e}"


def _ci(low: float | None, high: float | None) -> str:
    return "–" if low is None or high is None else f"[{low:.4f}, {high:.4f}]"


def metric_table(
    data: StudyData, stats: Sequence[CellStat], comparisons: Sequence[Comparison], metric: str
) -> Table:
    """One row per cell: row, arm, n, mean, std, CI, and (grid studies) the comparison with the baseline."""
    cmp = {c.cell: c for c in comparisons if c.metric == metric}
    with_cmp = not data.searched
    header = ["row", "arm", "n", "mean", "std", "95% CI"]
    if with_cmp:
        header += ["Δ vs baseline", "95% CI of Δ", "p (t)", "p (Wilcoxon)", "p Holm (t)", "p Holm (W)", "d_z"]
    rows: list[tuple[str, ...]] = []
    for s in (s for s in stats if s.metric == metric):
        arm = s.arm + (" (baseline)" if s.is_baseline else "") + (" ★" if s.best else "")
        cells: list[str] = [
            s.row,
            Strong(arm) if s.best else arm,
            str(s.n),
            Strong(_f(s.mean)) if s.best else _f(s.mean),
            _f(s.std),
            _ci(s.ci_low, s.ci_high),
        ]
        if with_cmp:
            c = cmp.get(s.cell)
            if c is None:
                cells += ["–"] * 7
            else:
                cells += [
                    f"{c.mean_diff:+.4f}",
                    _ci(c.ci_low, c.ci_high),
                    _p(c.p_t),
                    _p(c.p_wilcoxon),
                    _p(c.p_t_holm),
                    _p(c.p_wilcoxon_holm),
                    _f(c.effect_size, 2),
                ]
        rows.append(tuple(cells))
    return Table(tuple(header), tuple(rows))


# -------------------------------------------------------------------------------------------- sources
def training_curves(db: ResultsDB, data: StudyData) -> dict[str, dict[str, list[list[tuple[int, float]]]]]:
    out: dict[str, dict[str, list[list[tuple[int, float]]]]] = {}
    for cell in data.cells:
        per_metric: dict[str, list[list[tuple[int, float]]]] = {m: [] for m in CURVE_METRICS}
        for t in cell.trials:
            rows = db.epoch_metrics(t.id)
            for m in CURVE_METRICS:
                pts = [(int(e), float(v)) for e, name, v in rows if name == m and v is not None]
                if pts:
                    per_metric[m].append(sorted(pts))
        out[cell.key] = per_metric
    return out


def _optuna_studies(settings: Settings, data: StudyData) -> dict[str, Any]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    kwargs: dict[str, Any] = {"connect_args": {"timeout": 60}} if settings.db_url.startswith("sqlite") else {}
    storage = optuna.storages.RDBStorage(settings.db_url, engine_kwargs=kwargs)
    studies = {}
    for cell in data.cells:
        if cell.optuna_study_name:
            try:
                studies[cell.key] = optuna.load_study(study_name=cell.optuna_study_name, storage=storage)
            except KeyError:
                continue
    return studies


def search_sections(settings: Settings, data: StudyData, fig_dir: Path) -> tuple[list[Block], list[Path]]:
    """Best trial per cell, parameter importances and (multi-objective) Pareto fronts of a searched study."""
    import optuna

    search = data.spec.get("search") or {}
    objectives = [o.get("metric", "dice") for o in search.get("objectives") or [{"metric": "dice"}]]
    blocks: list[Block] = [Heading("Search", 2)]
    figures: list[Path] = []
    studies = _optuna_studies(settings, data)
    rows: list[tuple[str, ...]] = []
    importances: dict[str, dict[str, float]] = {}
    fronts: dict[str, plots.Front] = {}
    for key, study in studies.items():
        complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if not complete:
            continue
        best = study.best_trials
        for t in best[:5]:
            params = ", ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in t.params.items()
            )
            vals = ", ".join(f"{m}={v:.4f}" for m, v in zip(objectives, t.values or []))
            rows.append((key, str(t.number), params or "–", vals, str(len(complete))))
        if len(objectives) > 1:
            fronts[key] = ([t.values for t in complete], [t.values for t in best])
        if len(complete) >= 3 and len({k for t in complete for k in t.params}) >= 1:
            # Importances for the first objective (Optuna's default, PED-ANOVA, which reads a given target
            # as lower-is-better: a maximised objective is negated).
            sign = -1.0 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1.0
            target = (lambda t, s=sign: s * t.values[0]) if len(objectives) > 1 else None
            try:
                with warnings.catch_warnings():  # the lower-is-better note is taken care of above
                    warnings.simplefilter("ignore", UserWarning)
                    imp = optuna.importance.get_param_importances(study, target=target)
            except (RuntimeError, ValueError):
                imp = {}
            importances[key] = {k: float(v) for k, v in imp.items()}
    blocks.append(
        Paragraph(
            f"Objectives: {', '.join(objectives)}. Cells hold search trials (different "
            "parameters), so the tables above pool them and no paired comparison is made."
        )
    )
    blocks.append(Table(("cell", "trial", "params", "values", "complete trials"), tuple(rows)))
    path = fig_dir / "param_importances.png"
    if plots.plot_importances(importances, path):
        figures.append(path)
        blocks.append(Image("Optuna parameter importances", f"figures/{path.name}"))
    path = fig_dir / "pareto_front.png"
    if plots.plot_pareto(fronts, objectives, path):
        figures.append(path)
        blocks.append(Image("Pareto fronts", f"figures/{path.name}"))
    return blocks, figures


# ----------------------------------------------------------------------------------------------- build
def build_report(
    settings: Settings,
    study: str,
    out_dir: str | Path | None = None,
    *,
    fmt: str = "markdown",
    bootstrap: bool = False,
    arm_factors: Sequence[str] | None = None,
    heatmap: tuple[str, str] | None = None,
    log_to_mlflow: bool = True,
) -> Report:
    """Write the report of ``study`` to ``out_dir`` (default ``<home>/reports/<study>``) and log it to the
    study's MLflow parent run.  ``arm_factors`` defaults to the baseline's keys; ``heatmap`` to the first
    two factors that vary."""
    from ielcore.errors import IELError

    fmt = FORMAT_ALIASES.get(fmt, fmt)
    if fmt not in FORMATS:
        raise IELError(f"unknown report format {fmt!r}; use one of {', '.join(FORMATS)}")
    out = Path(out_dir) if out_dir is not None else settings.home / "reports" / study
    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".iel-report-", dir=out))  # written here, published when complete
    db = ResultsDB(settings.db_url, upgrade=False)
    try:
        data = load_study_data(db, study, arm_factors)
        stats = summarise(data, bootstrap=bootstrap)
        comparisons = compare(data, bootstrap=bootstrap)
        fig_dir = stage / "figures"
        fig_dir.mkdir()
        verdict_basis, verdict_lines = verdicts(db, data, comparisons)
        blocks = _head(data, bootstrap, len(comparisons), verdict_basis, verdict_lines)
        for metric in data.metrics:
            blocks += [Heading(f"Final {metric}", 3), metric_table(data, stats, comparisons, metric)]
        if not stats:
            blocks.append(Paragraph("No trial of this study has completed: nothing to summarise."))
        blocks += _incomplete(data)
        fig_blocks, figures = _figures(db, data, stats, fig_dir, heatmap)
        blocks += fig_blocks
        if data.searched:
            more, figs = search_sections(settings, data, fig_dir)
            blocks += more
            figures += figs
        grid_blocks, grids = prediction_grids(db, data, stage, settings.mlflow_uri)
        blocks += grid_blocks
        (stage / FORMATS[fmt]).write_text(render(blocks, fmt, f"Report of study {study}"))
        import json

        (stage / "report.json").write_text(
            json.dumps(to_json(data, stats, comparisons), indent=2, default=str)
        )
        publish(stage, out)
    finally:
        db.close()
        shutil.rmtree(stage, ignore_errors=True)
    path, json_path = out / FORMATS[fmt], out / "report.json"
    figures = [out / p.relative_to(stage) for p in figures]
    grids = [out / p.relative_to(stage) for p in grids]
    run_id = log_report(settings, study, out) if log_to_mlflow else None
    return Report(
        study=study,
        out_dir=out,
        path=path,
        json_path=json_path,
        figures=tuple(figures),
        prediction_grids=tuple(grids),
        stats=tuple(stats),
        comparisons=tuple(comparisons),
        mlflow_run_id=run_id,
    )


def _figures(
    db: ResultsDB, data: StudyData, stats: Sequence[CellStat], fig_dir: Path, heatmap: tuple[str, str] | None
) -> tuple[list[Block], list[Path]]:
    """The report's figures (none of them when there is nothing to draw) and their blocks."""
    figures: list[Path] = []
    blocks: list[Block] = [Heading("Figures", 2)]

    def add(name: str, title: str) -> None:
        figures.append(fig_dir / name)
        blocks.append(Image(title, f"figures/{name}"))

    if plots.plot_cell_results(data, stats, data.metrics, fig_dir / "cell_results.png"):
        add("cell_results.png", "final metrics per cell: mean, 95 % CI and every seed")
    for factor, name in (
        ("noise.rate", "metrics_vs_noise_rate.png"),
        ("iel.steps", "metrics_vs_iel_steps.png"),
    ):
        if plots.plot_metric_vs(data, stats, factor, fig_dir / name):
            add(name, f"final metrics vs {factor}")
    pair = heatmap or plots.default_heatmap_factors(data)
    heat = fig_dir / "heatmap.png"
    if pair is not None and data.metrics and plots.plot_heatmap(data, data.metrics[0], *pair, heat):
        add("heatmap.png", f"mean final {data.metrics[0]} over {pair[0]} × {pair[1]}")
    if plots.plot_training_curves(
        data, training_curves(db, data), CURVE_METRICS, fig_dir / "training_curves.png"
    ):
        add("training_curves.png", "training curves (thin: each seed; thick: their mean)")
    return (blocks if figures else []), figures


def _incomplete(data: StudyData, limit: int = 50) -> list[Block]:
    """The trials left out of the statistics (failed or pruned), so a smaller n is explained."""
    if not data.incomplete:
        return []
    rows = tuple(
        (
            t.cell_key,
            str(t.seed),
            t.state.value,
            t.failure_kind or "–",
            " ".join((t.error or "–").split())[:160],
        )
        for t in sorted(data.incomplete, key=lambda t: (t.cell_key, t.seed, t.id))[:limit]
    )
    more = len(data.incomplete) - len(rows)
    return [
        Heading("Trials left out", 3),
        Paragraph(
            f"{len(data.incomplete)} trial(s) did not complete and are in no statistic above"
            + (f" (the first {limit} are listed; `iel status {data.name}` shows all)." if more > 0 else ".")
        ),
        Table(("cell", "seed", "state", "failure", "reason"), rows),
    ]


def _head(
    data: StudyData, bootstrap: bool, n_comparisons: int, verdict_basis: str, verdict_lines: Sequence[str]
) -> list[Block]:
    counts = ", ".join(f"{k.lower()} {v}" for k, v in sorted(data.counts.items()) if v)
    baseline = data.spec.get("baseline") or {}
    blocks: list[Block] = [
        Heading(f"Report of study `{data.name}`", 1),
        Paragraph(data.description or ""),
        Paragraph(
            f"Generated {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} by `iel report`. "
            f"Trials: {counts or 'none'}. Cells: {len(data.cells)}. "
            f"Baseline: {', '.join(f'`{k}={v}`' for k, v in baseline.items()) or 'none'}; arm factors: "
            f"{', '.join(f'`{a}`' for a in data.arm_factors) or 'none'}."
        ),
        *verdict_blocks(data, verdict_basis, verdict_lines),
        Heading("Method", 2),
        Paragraph(
            "Each cell's final metric over its seeds: n, mean, sample standard deviation and a 95 % "
            + (
                "percentile-bootstrap interval (2000 resamples)"
                if bootstrap
                else "t interval (mean ± t·s/√n)"
            )
            + ". A row is a group of cells that differ only in their arm; ★ marks the best arm of each row "
            "(highest mean, lowest for losses and shares). Each arm is compared with the baseline cell of its "
            "row, paired on seed: mean difference Δ (arm − baseline) with its 95 % interval, the paired t-test "
            "and the Wilcoxon signed-rank test (two-sided), both Holm-corrected within each metric's "
            f"comparisons ({n_comparisons} in all), and the effect size d_z = mean(Δ)/sd(Δ). With n "
            "seeds the smallest possible Wilcoxon p-value is 2/2^n."
        ),
        Heading("Results", 2),
    ]
    return blocks


def log_report(settings: Settings, study: str, out_dir: str | Path) -> str | None:
    """Log the report folder under ``report/`` to the study's MLflow parent run; returns its run id,
    or None when the study has no MLflow experiment or parent run."""
    from orchestrator.tracking import Tracker

    tracker = Tracker(settings.mlflow_uri, settings.artifact_root)
    exp = tracker.client.get_experiment_by_name(f"iel/{study}")
    if exp is None:
        return None
    run_id = tracker.find_run(str(exp.experiment_id), {"iel.role": "study"})
    if run_id is None:
        return None
    out = Path(out_dir)
    for rel in manifest_files(out):  # only what `iel report` wrote, never the user's files beside it
        parent = str(Path("report") / Path(rel).parent) if Path(rel).parent != Path(".") else "report"
        tracker.client.log_artifact(run_id, str(out / rel), artifact_path=parent)
    return run_id
