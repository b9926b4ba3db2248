"""One command line: ``--debug`` anywhere, ``--version``, help and default for every argument, one spelling of
each format, unknown names (``--metric``, ``--group-by``) and impossible numbers (``--max-concurrent 0``)
refused with exit 2 naming the valid values, and no traceback when a reader such as ``head`` leaves early."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ielcore.errors import SpecError
from orchestrator import cli
from tests.studyfiles import noop_study, write_study
from tests.test_stores import _populated

ROOT = Path(__file__).resolve().parent.parent


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_argument_has_help_and_shows_its_default() -> None:
    parser = cli.build_parser()
    missing, defaults_hidden = [], []
    for name, sub in _subparsers(parser).items():
        text = sub.format_help()
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            label = f"{name} {action.option_strings or action.dest}"
            if not action.help:
                missing.append(label)
            has_default = action.default not in (None, False, argparse.SUPPRESS) and action.option_strings
            if has_default and f"(default: {action.default})" not in " ".join(text.split()):
                defaults_hidden.append(label)
    assert not missing, f"arguments without help: {missing}"
    assert not defaults_hidden, f"defaults not shown in help: {defaults_hidden}"
    query = " ".join(_subparsers(parser)["query"].format_help().split())
    assert "(default: 10000)" in query and "(default: 30.0)" in query


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr()[0].startswith("iel ")


def test_formats_have_one_spelling_and_md_is_read_as_markdown() -> None:
    parser = cli.build_parser()
    for name, sub in _subparsers(parser).items():
        for action in sub._actions:
            if action.dest == "format":
                assert "md" not in action.choices, name
                # every text output offers markdown; `iel export` writes data files only (csv, parquet)
                assert ("markdown" in action.choices) == (name != "export"), name
    assert parser.parse_args(["results", "s", "--format", "md"]).format == "markdown"
    assert parser.parse_args(["query", "SELECT 1", "--format", "md"]).format == "markdown"
    assert parser.parse_args(["report", "s", "--format", "md"]).format == "markdown"
    assert parser.parse_args(["report", "s"]).format == "markdown"


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_is_accepted_before_and_after_the_command(tmp_path: Path, iel_home: Path, where: str) -> None:
    path = str(tmp_path / "bad.yaml")
    Path(path).write_text("version: 1\nname: bad\ncolour: red\nbase: {kind: noop}\n")
    argv = ["--debug", "submit", path] if where == "before" else ["submit", path, "--debug"]
    with pytest.raises(SpecError):  # the traceback is shown: the error propagates
        cli.main(argv)
    assert cli.main(["submit", path]) == 2  # without --debug: a message and exit 2
    assert cli.build_parser().parse_args(["studies"]).debug is False


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_max_concurrent_below_one_exits_2(
    tmp_path: Path, iel_home: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    path = str(write_study(tmp_path, noop_study("mc")))
    with pytest.raises(SystemExit) as info:
        cli.main(["submit", path, "--max-concurrent", value])
    assert info.value.code == 2
    err = capsys.readouterr()[1]
    assert "--max-concurrent" in err and value in err
    assert not iel_home.exists()  # nothing written


def test_unknown_metric_or_group_by_exits_2_naming_the_valid_ones(
    iel_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _populated(iel_home)
    capsys.readouterr()
    assert cli.main(["results", "ro", "--metric", "dcie"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "unknown --metric 'dcie'" in err and "its trials record: dice" in err
    assert cli.main(["results", "ro", "--group-by", "noise.rate,iel.tpye"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "unknown --group-by factor 'iel.tpye'" in err and "its factors: noise.rate" in err
    assert cli.main(["results", "ro", "--metric", "dice", "--group-by", "noise.rate", "--format", "csv"]) == 0
    out = capsys.readouterr()[0]
    assert len(out.strip().splitlines()) == 3  # header + one row per noise rate


def _iel(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from orchestrator.cli import main; sys.exit(main())", *args]


def test_no_traceback_when_the_reader_leaves_early(iel_home: Path) -> None:
    """`iel query ... | head -1` with a real pipe: the output (~700 KB) outgrows the pipe's buffer."""
    _populated(iel_home)
    sql = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        _iel("query", sql, "--max-rows", "100000"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()  # what `head -1` does after its line
    err = proc.stderr.read().decode()
    code = proc.wait(timeout=120)
    assert first.split() == [b"x"]
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err, err
    assert code == 141
    done = subprocess.run(
        ["bash", "-c", 'iel_cmd "$@" | head -2; echo "${PIPESTATUS[0]}"', "_", *_iel("results", "ro")],
        capture_output=True,
        text=True,
        env={**env, "BASH_FUNC_iel_cmd%%": '() { "$@"; }'},
        timeout=120,
    )
    assert done.stderr == "" and len(done.stdout.splitlines()) == 3
