"""The ``iel`` command line: the single place that turns errors into messages and exit codes.

Exit status: 0 success; 1 some trials failed for good (``submit``) or a runtime failure; 2 bad input or an
unusable environment (invalid spec, unreachable database, no GPU, another driver running).  Tracebacks
only with ``--debug``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _settings(args: argparse.Namespace) -> Any:
    from orchestrator.settings import Settings

    return Settings.resolve(
        home=getattr(args, "home", None),
        db=getattr(args, "db", None),
        mlflow=getattr(args, "mlflow", None),
        address=getattr(args, "address", None),
    )


def _db(args: argparse.Namespace, upgrade: bool = True) -> Any:
    from orchestrator.db import ResultsDB

    settings = _settings(args)
    if settings.db_url.startswith("sqlite"):
        path = settings.db_url.split("///", 1)[-1]
        if not os.path.exists(path):
            from ielcore.errors import IELError

            raise IELError(
                f"no results database at {path}; run `iel submit STUDY.yaml` first, or point --db / $IEL_DB_URL "
                "(or --home / $IEL_HOME) at an existing one"
            )
    return ResultsDB(settings.db_url, upgrade=upgrade)


def _print(text: str) -> None:
    print(text, flush=True)


# ------------------------------------------------------------------------------------------ commands
def cmd_train(args: argparse.Namespace) -> int:
    import yaml

    from ielcore.spec import TrialConfig, apply_overrides, load_config_file
    from ielcore.train import train_trial

    raw = load_config_file(args.config)
    overrides = {}
    for item in args.set or []:
        if "=" not in item:
            from ielcore.errors import SpecError

            raise SpecError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        overrides[key] = yaml.safe_load(value)
    cfg = TrialConfig.from_dict(apply_overrides(raw, overrides), source=args.config)

    class _Print:
        def report(self, epoch: int, metrics: Any) -> bool:
            shown = " ".join(
                f"{k}={v:.4f}" for k, v in metrics.items() if k in ("train_loss", "val_loss", "dice", "miou")
            )
            _print(f"epoch {epoch:3d}  {shown}")
            return True

    result = train_trial(cfg, _Print(), out_dir=args.out)
    _print(f"status: {result.status}  device: {result.device}  time: {result.timings['total_s']:.1f}s")
    _print(json.dumps({"metrics": result.final_metrics}, indent=2))
    _print(f"wrote {os.path.join(args.out, 'result.json')}")
    if result.status == "diverged":
        _print(f"the run diverged: {result.error}")
        return EXIT_FAILED
    return EXIT_OK


def cmd_submit(args: argparse.Namespace) -> int:
    from orchestrator.db.engine import redact_url
    from orchestrator.plan import build_plan
    from orchestrator.results import format_rows, results_rows
    from orchestrator.runner import StudyRunner
    from orchestrator.study import load_study

    spec = load_study(args.study)
    if args.dry_run:
        _print(build_plan(spec).describe())
        return EXIT_OK
    settings = _settings(args)
    runner = StudyRunner(
        spec, settings, max_concurrent=args.max_concurrent, allow_cpu=args.allow_cpu, progress=_print
    )
    _print(
        f"study {spec.name}: {runner.plan.n_trials()} trials in {len(runner.plan.cells)} cells; "
        f"results db {redact_url(settings.db_url)}; MLflow {settings.mlflow_uri}"
    )
    outcome = runner.run()
    metric = spec.search.objectives[0].metric if spec.search else "dice"
    db = runner.db
    assert db is not None
    rows = results_rows(db, spec.name, metric=metric, baseline=spec.baseline)
    table = format_rows(rows, "table", metric)
    _print("")
    _print(f"results of study {spec.name} (final {metric}; mean over seeds, 95% t CI; paired vs baseline):")
    _print(table)
    runner.tracker.log_text(runner.study_run, format_rows(rows, "markdown", metric), "results.md")
    runner.tracker.log_text(runner.study_run, format_rows(rows, "csv", metric), "results.csv")
    _print(
        f"trained {outcome.trained}, reused {outcome.reused}, kept {outcome.kept}, failed {outcome.failed} "
        f"in {outcome.wall_s:.1f}s"
    )
    return EXIT_FAILED if outcome.failed else EXIT_OK


def cmd_studies(args: argparse.Namespace) -> int:
    db = _db(args)
    studies = db.studies()
    if not studies:
        _print("no studies yet")
    for s in studies:
        counts = ", ".join(f"{k.lower()} {v}" for k, v in sorted(s.counts.items()) if v)
        _print(f"{s.name}\t{counts}")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    db = _db(args)
    if db.study(args.study) is None:
        from ielcore.errors import IELError

        raise IELError(f"no study named {args.study!r}; `iel studies` lists them")
    counts = db.status_counts(args.study)
    _print(f"study {args.study}: " + ", ".join(f"{k.lower()} {v}" for k, v in sorted(counts.items())))
    for t in db.trials(args.study):
        if t.state.value == "FAILED":
            _print(f"  trial {t.id} ({t.cell_key} seed={t.seed}) FAILED [{t.failure_kind}] {t.error}")
    return EXIT_OK


def cmd_results(args: argparse.Namespace) -> int:
    from orchestrator.results import format_rows, results_rows

    db = _db(args)
    study = db.study(args.study)
    if study is None:
        from ielcore.errors import IELError

        raise IELError(f"no study named {args.study!r}; `iel studies` lists them")
    group_by = [g for g in (args.group_by or "").split(",") if g] or None
    baseline = (study.spec or {}).get("baseline") if not group_by else None
    rows = results_rows(db, args.study, metric=args.metric, group_by=group_by, baseline=baseline)
    _print(format_rows(rows, args.format, args.metric))
    return EXIT_OK


def cmd_query(args: argparse.Namespace) -> int:
    db = _db(args, upgrade=False)
    columns, rows = db.readonly_query(args.sql, limit=args.limit)
    records = [dict(zip(columns, r)) for r in rows]
    from orchestrator.results import format_rows

    if args.format == "json":
        _print(json.dumps(records, indent=2, default=str))
    elif args.format == "csv":
        import csv

        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
    else:
        from orchestrator import results

        saved = results.COLUMNS
        try:
            results.COLUMNS = list(columns)
            _print(format_rows(records, "markdown" if args.format == "markdown" else "table"))
        finally:
            results.COLUMNS = saved
    return EXIT_OK


def cmd_db(args: argparse.Namespace) -> int:
    from orchestrator.db import ResultsDB
    from orchestrator.db.engine import redact_url

    settings = _settings(args)
    settings.ensure_home()
    db = ResultsDB(settings.db_url, upgrade=False)
    db.upgrade()
    _print(f"results database at {redact_url(settings.db_url)} is at the latest schema")
    return EXIT_OK


def cmd_ui(args: argparse.Namespace) -> int:
    from orchestrator.ui import serve_mlflow

    return serve_mlflow(_settings(args), host=args.host, port=args.port)


# ------------------------------------------------------------------ reports and dashboards (report/)
def cmd_report(args: argparse.Namespace) -> int:
    from orchestrator.report import build_report

    settings = _settings(args)
    _db(args, upgrade=False).close()  # a clear error when there is no results database
    arms = [a for a in (args.arm or "").split(",") if a] or None
    heatmap = None
    if args.heatmap:
        parts = [p for p in args.heatmap.split(",") if p]
        if len(parts) != 2:
            from ielcore.errors import SpecError

            raise SpecError(f"--heatmap expects two factor paths X,Y, got {args.heatmap!r}")
        heatmap = (parts[0], parts[1])
    report = build_report(
        settings,
        args.study,
        args.out,
        fmt=args.format,
        bootstrap=args.bootstrap,
        arm_factors=arms,
        heatmap=heatmap,
        log_to_mlflow=False,
    )
    _print(
        f"report of study {args.study}: {report.path} ({len(report.figures)} figures, "
        f"{len(report.prediction_grids)} prediction grids, {len(report.comparisons)} comparisons)"
    )
    if args.no_mlflow:
        return EXIT_OK
    from orchestrator.report import log_report
    from orchestrator.tracking import TrackingUnavailable

    try:
        run_id = log_report(settings, args.study, report.out_dir)
    except TrackingUnavailable as e:
        print(f"error: the report is written but not logged to MLflow: {e}", file=sys.stderr)
        return EXIT_FAILED
    if run_id:
        _print(f"logged under report/ to MLflow run {run_id} (the study's parent run)")
    else:
        _print("not logged to MLflow: the study has no MLflow parent run in this tracking store")
    return EXIT_OK


def cmd_optuna_dashboard(args: argparse.Namespace) -> int:
    from orchestrator.dashboards import serve_optuna_dashboard

    return serve_optuna_dashboard(
        _settings(args), args.study, host=args.host, port=args.port, announce=_print
    )


def _report_parsers(sub: Any, stores: Any) -> None:
    p = sub.add_parser("report", help="statistics, comparisons and figures of a study (Markdown or HTML)")
    p.add_argument("study")
    stores(p)
    p.add_argument("--out", help="output folder (default <home>/reports/STUDY)")
    p.add_argument("--format", choices=("md", "html"), default="md")
    p.add_argument("--bootstrap", action="store_true", help="percentile-bootstrap CIs instead of t intervals")
    p.add_argument("--arm", help="comma-separated arm factors (default: the baseline's keys)")
    p.add_argument(
        "--heatmap", metavar="X,Y", help="the two factors of the heatmap (default: first two varied)"
    )
    p.add_argument("--no-mlflow", action="store_true", help="do not log the report to the study's MLflow run")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("optuna-dashboard", help="optuna-dashboard over a study's cell studies (127.0.0.1)")
    p.add_argument("study")
    stores(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080, help="0 lets the OS choose a free port")
    p.set_defaults(func=cmd_optuna_dashboard)


# ---------------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="iel", description="Ablation studies of inverse evolution layers.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    def stores(p: argparse.ArgumentParser) -> None:
        p.add_argument("--home", help="folder of the embedded stores (default ./iel-runs or $IEL_HOME)")
        p.add_argument("--db", help="results database URL (default sqlite under --home; or $IEL_DB_URL)")
        p.add_argument(
            "--mlflow", help="MLflow tracking URI (default sqlite under --home; or $IEL_MLFLOW_URI)"
        )

    p = sub.add_parser("train", help="train one configuration")
    p.add_argument("config")
    p.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a config value (dotted path)"
    )
    p.add_argument("--out", default="iel-train-out")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("submit", help="run (or resume) a study")
    p.add_argument("study")
    stores(p)
    p.add_argument("--address", help="Ray cluster address (auto | ray://HOST:PORT); default: a local Ray")
    p.add_argument("--max-concurrent", type=int, default=None)
    p.add_argument(
        "--allow-cpu", action="store_true", help="run GPU studies on CPUs when the cluster has no GPU"
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("studies", help="list studies")
    stores(p)
    p.set_defaults(func=cmd_studies)

    p = sub.add_parser("status", help="trial counts of a study")
    p.add_argument("study")
    stores(p)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("results", help="per-cell results table")
    p.add_argument("study")
    stores(p)
    p.add_argument("--group-by", help="comma-separated factor paths")
    p.add_argument("--metric", default="dice")
    p.add_argument("--format", choices=("table", "csv", "json", "markdown"), default="table")
    p.set_defaults(func=cmd_results)

    p = sub.add_parser("query", help="read-only SQL over the results database")
    p.add_argument("sql")
    stores(p)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--format", choices=("table", "csv", "json", "markdown"), default="table")
    p.set_defaults(func=cmd_query)

    p = sub.add_parser("db", help="database administration")
    p.add_argument("action", choices=("upgrade",))
    stores(p)
    p.set_defaults(func=cmd_db)

    p = sub.add_parser("ui", help="MLflow UI on the study store (127.0.0.1)")
    stores(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5000)
    p.set_defaults(func=cmd_ui)
    _report_parsers(sub, stores)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from ielcore.errors import IELError, SpecError

    try:
        return int(args.func(args))
    except SpecError as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except IELError as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(
            "interrupted: running trials were recorded as stopped; `iel submit` again resumes",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
