"""The ``iel`` command line: the single place that turns errors into messages and exit codes.

Exit status: 0 success; 1 some trials failed for good (``submit``) or a runtime failure; 2 bad input or an
unusable environment (invalid spec, unreachable database, no GPU, another driver running).  Tracebacks
only with ``--debug``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from orchestrator import early_signals
from orchestrator.cli_report import report_parsers
from orchestrator.cli_train import cmd_train
from orchestrator.cliutil import (
    HelpFormatter,
    nonnegative_int,
    output_format,
    positive_int,
    positive_seconds,
    silence_broken_pipe,
)
from orchestrator.db.readonly import DEFAULT_MAX_ROWS, DEFAULT_TIMEOUT_S

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
    from orchestrator.db.engine import sqlite_is_readonly
    from orchestrator.settings import sqlite_file

    settings = _settings(args)
    path = sqlite_file(settings.db_url)
    if path is not None:
        if not path.exists():
            from ielcore.errors import IELError

            raise IELError(
                f"no results database at {path}; run `iel submit STUDY.yaml` first, or point --db / $IEL_DB_URL "
                "(or --home / $IEL_HOME) at an existing one"
            )
        upgrade = upgrade and not sqlite_is_readonly(path)  # a read-only home is read as it is
    return ResultsDB(settings.db_url, upgrade=upgrade)


def _print(text: str) -> None:
    print(text, flush=True)


# ------------------------------------------------------------------------------------------ commands
def cmd_submit(args: argparse.Namespace) -> int:
    from orchestrator.db.engine import redact_url
    from orchestrator.driver import StudyRunner
    from orchestrator.plan import build_plan
    from orchestrator.results import format_rows, results_rows
    from orchestrator.study import load_study
    from orchestrator.study_version import rename
    from orchestrator.tracking import Tracker

    spec = load_study(args.study, args.overrides)
    if args.as_name:
        spec = rename(spec, args.as_name)
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
    with _db(args) as db:
        rows = results_rows(db, spec.name, metric=metric, baseline=spec.baseline)
    table = format_rows(rows, "table", metric)
    _print("")
    _print(f"results of study {spec.name} (final {metric}; mean over seeds, 95% t CI; paired vs baseline):")
    _print(table)
    if spec.decide is not None:
        d = spec.decide
        _print("")
        _print(f"decisions ({d.metric} by {d.score}, margin {d.margin}, alpha {d.alpha}, method {d.method}):")
        for line in _decision_lines(args, spec):
            _print(f"  {line}")
    tracker = Tracker(settings.mlflow_uri, settings.artifact_root)
    tracker.log_text(outcome.study_run_id, format_rows(rows, "markdown", metric), "results.md")
    tracker.log_text(outcome.study_run_id, format_rows(rows, "csv", metric), "results.csv")
    _print(
        f"trained {outcome.trained}, reused {outcome.reused}, kept {outcome.kept}, failed {outcome.failed} "
        f"in {outcome.wall_s:.1f}s"
    )
    return EXIT_FAILED if outcome.failed else EXIT_OK


def _decision_lines(args: argparse.Namespace, spec: Any) -> list[str]:
    """One line per comparison of a study with ``decide:`` (from :mod:`orchestrator.decisions`)."""
    from orchestrator.decisions import arm_labels, describe, study_decisions

    with _db(args) as db:
        labels = arm_labels(db, spec.name)
        return [describe(d, labels) for d in study_decisions(db, spec.name, spec.decide)]


def cmd_studies(args: argparse.Namespace) -> int:
    with _db(args) as db:
        studies = db.studies()
        if not studies:
            _print("no studies yet")
        for s in studies:
            counts = ", ".join(f"{k.lower()} {v}" for k, v in sorted(s.counts.items()) if v)
            _print(f"{s.name}\t{counts}")
        return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    with _db(args) as db:
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

    with _db(args) as db:
        study = db.study(args.study)
        if study is None:
            from ielcore.errors import IELError

            raise IELError(f"no study named {args.study!r}; `iel studies` lists them")
        from orchestrator.cliutil import check_group_by, check_metric

        group_by = [g for g in (args.group_by or "").split(",") if g] or None
        check_metric(db, args.study, args.metric)
        if group_by:
            check_group_by(db, args.study, group_by)
        baseline = (study.spec or {}).get("baseline") if not group_by else None
        rows = results_rows(db, args.study, metric=args.metric, group_by=group_by, baseline=baseline)
        _print(format_rows(rows, args.format, args.metric))
        if args.format in ("table", "markdown") and not group_by:
            _print_stored_decisions(db, args.study)
        return EXIT_OK


def _print_stored_decisions(db: Any, study: str) -> None:
    """The decisions the driver stored (view ``iel_decisions``), one line each, after the table."""
    from orchestrator.db.comparisons import load_decisions
    from orchestrator.decisions import arm_labels, describe_row

    stored = load_decisions(db, study)
    if stored:
        labels = arm_labels(db, study)
        _print("")
        _print(
            f"decisions ({stored[0].metric}, margin {stored[0].margin}, per-comparison alpha {stored[0].alpha:.4g}):"
        )
        for r in stored:
            _print(f"  {describe_row(r, labels)}")


def cmd_export(args: argparse.Namespace) -> int:
    from orchestrator.export import export_study

    with _db(args) as db:
        text, n = export_study(db, args.study, args.format, args.out)
    if text is not None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        print(f"wrote {n} trials of study {args.study} to {args.out} ({args.format})", file=sys.stderr)
    return EXIT_OK


def cmd_query(args: argparse.Namespace) -> int:
    from orchestrator.cliutil import render_query
    from orchestrator.db.engine import run_readonly_query

    db = _db(args, upgrade=False)
    try:
        result = run_readonly_query(db.engine, args.sql, timeout_s=args.timeout, max_rows=args.max_rows)
    finally:
        db.close()
    _print(render_query(result.columns, result.rows, args.format))
    if result.cut:
        print(f"note: {result.cut}", file=sys.stderr, flush=True)
    return EXIT_OK


def cmd_db(args: argparse.Namespace) -> int:
    from orchestrator.db import ResultsDB
    from orchestrator.db.engine import redact_url

    settings = _settings(args)
    settings.home.mkdir(parents=True, exist_ok=True)
    with ResultsDB(settings.db_url, upgrade=False) as db:
        db.upgrade()
    _print(f"results database at {redact_url(settings.db_url)} is at the latest schema")
    return EXIT_OK


def cmd_ui(args: argparse.Namespace) -> int:
    from orchestrator.ui import serve_mlflow

    return serve_mlflow(_settings(args), host=args.host, port=args.port, study=args.study, announce=_print)


# ---------------------------------------------------------------------------------------------- main
FORMATS = ("table", "csv", "json", "markdown")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"iel {version('iel-ablation')}"
    except PackageNotFoundError:
        return "iel (version unknown)"


def build_parser() -> argparse.ArgumentParser:
    fmt = HelpFormatter
    parser = argparse.ArgumentParser(
        prog="iel", description="Ablation studies of inverse evolution layers.", formatter_class=fmt
    )
    parser.add_argument(
        "--debug", action="store_true", help="show tracebacks (also accepted after the command)"
    )
    parser.add_argument("--version", action="version", version=_version())
    # --debug after the command too; SUPPRESS keeps the value given before the command
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help: str) -> argparse.ArgumentParser:  # noqa: A002
        return sub.add_parser(name, help=help, description=help, parents=[common], formatter_class=fmt)  # type: ignore[no-any-return]

    def stores(p: argparse.ArgumentParser) -> None:
        p.add_argument("--home", help="folder of the embedded stores (default ./iel-runs or $IEL_HOME)")
        p.add_argument("--db", help="results database URL (default sqlite under --home; or $IEL_DB_URL)")
        p.add_argument(
            "--mlflow", help="MLflow tracking URI (default sqlite under --home; or $IEL_MLFLOW_URI)"
        )

    p = add("train", "train one configuration")
    p.add_argument("config", help="a trial configuration (YAML)")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a config value (dotted path); repeatable",
    )
    p.add_argument("--out", default="iel-train-out", help="output folder (result.json, checkpoint, figures)")
    p.add_argument(
        "--mlflow",
        metavar="URI",
        help="track the run in MLflow like a study trial (params, per-epoch metrics, status, artifacts)",
    )
    p.add_argument("--experiment", metavar="NAME", help="MLflow experiment of the run (default: iel/train)")
    p.set_defaults(func=cmd_train)

    p = add("submit", "run (or resume) a study")
    p.add_argument("study", help="the study file (YAML)")
    stores(p)
    p.add_argument("--address", help="Ray cluster address (auto | ray://HOST:PORT); default: a local Ray")
    p.add_argument(
        "--max-concurrent",
        type=positive_int,
        default=None,
        metavar="N",
        help="trials at once, at least 1 (default: the study's max_concurrent)",
    )
    p.add_argument(
        "--allow-cpu", action="store_true", help="run GPU studies on CPUs when the cluster has no GPU"
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change the study document without editing the file, e.g. --set base.epochs=2 (repeatable)",
    )
    p.add_argument(
        "--as",
        dest="as_name",
        metavar="NEW_NAME",
        default=None,
        help="submit the study under another name (e.g. an edited copy whose results must not mix)",
    )
    p.set_defaults(func=cmd_submit)

    p = add("studies", "list studies")
    stores(p)
    p.set_defaults(func=cmd_studies)

    p = add("status", "trial counts of a study")
    p.add_argument("study", help="the study's name")
    stores(p)
    p.set_defaults(func=cmd_status)

    p = add("results", "per-cell results table")
    p.add_argument("study", help="the study's name")
    stores(p)
    p.add_argument("--group-by", metavar="FACTOR[,FACTOR]", help="pool cells by these factor paths")
    p.add_argument("--metric", default="dice", help="the final metric to summarise")
    p.add_argument("--format", type=output_format, choices=FORMATS, default="table", help="output format")
    p.set_defaults(func=cmd_results)

    p = add(
        "export", "one row per trial (record, factors, searched params, metrics, config) as CSV or Parquet"
    )
    p.add_argument("study", help="the study's name")
    stores(p)
    p.add_argument("--format", choices=("csv", "parquet"), default="csv", help="file format")
    p.add_argument("--out", metavar="FILE", help="output file (default: CSV to standard output)")
    p.set_defaults(func=cmd_export)

    p = add("query", "read-only SQL over the results database (bounded in time and rows)")
    p.add_argument("sql", help="one SQL statement (reads only)")
    stores(p)
    p.add_argument(
        "--max-rows", "--limit", dest="max_rows", type=nonnegative_int, default=DEFAULT_MAX_ROWS,
        metavar="N", help="rows shown at most (more are cut, with a note on stderr)",
    )  # fmt: skip
    p.add_argument(
        "--timeout", type=positive_seconds, default=DEFAULT_TIMEOUT_S, metavar="S",
        help="seconds the statement may run before it is stopped",
    )  # fmt: skip
    p.add_argument("--format", type=output_format, choices=FORMATS, default="table", help="output format")
    p.set_defaults(func=cmd_query)

    p = add("db", "database administration")
    p.add_argument("action", choices=("upgrade",), help="upgrade: apply schema migrations (Alembic)")
    stores(p)
    p.set_defaults(func=cmd_db)

    p = add("ui", "MLflow UI on the study store (127.0.0.1)")
    p.add_argument("study", nargs="?", help="open on this study's experiment (default: the experiments list)")
    stores(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=5000, help="TCP port")
    p.set_defaults(func=cmd_ui)
    report_parsers(sub, add, stores)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _dispatch(args)
    except BrokenPipeError:  # e.g. `iel results S | head -3`: the reader left, nothing more to say
        return silence_broken_pipe()


def _dispatch(args: argparse.Namespace) -> int:
    from ielcore.errors import IELError, SpecError

    try:
        if early_signals.pending() is not None:  # a Ctrl-C during start-up that an import swallowed
            raise KeyboardInterrupt
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
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM in a driver (orchestrator.driver.cluster.Interrupted)
        print(
            f"{'terminated' if getattr(e, 'exit_status', 130) == 143 else 'interrupted'}: running trials were "
            "recorded as stopped; `iel submit` again resumes",
            file=sys.stderr,
        )
        return int(getattr(e, "exit_status", 130))


if __name__ == "__main__":
    sys.exit(main())
