"""``iel report`` and ``iel optuna-dashboard``: their commands and argument parsers."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from orchestrator.cliutil import output_format

EXIT_OK, EXIT_FAILED = 0, 1


# ------------------------------------------------------------------ reports and dashboards (report/)
def cmd_report(args: argparse.Namespace) -> int:
    from orchestrator.cli import _db, _print, _settings
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
    from orchestrator.cli import _print, _settings
    from orchestrator.dashboards import serve_optuna_dashboard

    return serve_optuna_dashboard(
        _settings(args), args.study, host=args.host, port=args.port, announce=_print
    )


def report_parsers(sub: Any, add: Any, stores: Any) -> None:
    p = add("report", "statistics, comparisons and figures of a study (Markdown or HTML)")
    p.add_argument("study", help="the study's name")
    stores(p)
    p.add_argument(
        "--out",
        help="output folder (default <home>/reports/STUDY); files `iel report` did not write are never touched",
    )
    p.add_argument(
        "--format", type=output_format, choices=("markdown", "html"), default="markdown", help="report format"
    )
    p.add_argument("--bootstrap", action="store_true", help="percentile-bootstrap CIs instead of t intervals")
    p.add_argument("--arm", help="comma-separated arm factors (default: the baseline's keys)")
    p.add_argument(
        "--heatmap", metavar="X,Y", help="the two factors of the heatmap (default: first two varied)"
    )
    p.add_argument("--no-mlflow", action="store_true", help="do not log the report to the study's MLflow run")
    p.set_defaults(func=cmd_report)

    p = add("optuna-dashboard", "optuna-dashboard over a study's cell studies (127.0.0.1)")
    p.add_argument("study", help="the study's name")
    stores(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8080, help="TCP port; 0 lets the OS choose a free port")
    p.set_defaults(func=cmd_optuna_dashboard)
