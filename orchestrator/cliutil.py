"""Helpers of the ``iel`` command line: argument types, checks of names against a study, query output.

Everything here raises :class:`~ielcore.errors.SpecError` (exit 2) or argparse's own errors (exit 2) with a
sentence naming the bad value and the valid ones.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
from collections.abc import Sequence
from typing import Any

from ielcore.errors import SpecError

FORMAT_ALIASES = {"md": "markdown"}
"""Accepted other spellings of an output format (help and messages show only the canonical names)."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: X)`` after each argument's help, unless the help already tells its default or there
    is none to tell (``None``, a flag's ``False``)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in text:
            return text
        return super()._get_help_string(action)


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def nonnegative_int(text: str) -> int:
    """argparse type: a whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def positive_seconds(text: str) -> float:
    """argparse type: a finite number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds > 0, got {text!r}")
    return value


def output_format(text: str) -> str:
    """argparse type: an output format name, ``md`` read as ``markdown``."""
    return FORMAT_ALIASES.get(text, text)


# ---------------------------------------------------------------------------------- names of a study
def check_metric(db: Any, study: str, metric: str) -> None:
    """Raise :class:`SpecError` unless ``metric`` is recorded by the study's trials (or, before any is
    recorded, is a metric of the registry ``ielcore.metric_info``)."""
    from ielcore.metric_info import known_metrics, metric_info

    recorded = sorted({name for t in db.trials(study) for name in t.final_metrics})
    if metric in recorded or (not recorded and metric_info(metric) is not None):
        return
    valid = recorded or [m for m in known_metrics() if m != "..."]
    raise SpecError(
        f"unknown --metric {metric!r} for study {study!r}; "
        f"{'its trials record' if recorded else 'valid metrics'}: {', '.join(valid)}"
    )


def check_group_by(db: Any, study: str, group_by: Sequence[str]) -> None:
    """Raise :class:`SpecError` unless every path of ``group_by`` is a factor of one of the study's cells."""
    factors = sorted({k for c in db.cells(study) for k in c.factors})
    unknown = [g for g in group_by if g not in factors]
    if unknown:
        raise SpecError(
            f"unknown --group-by factor {', '.join(repr(u) for u in unknown)} for study {study!r}; "
            f"its factors: {', '.join(factors) or 'none (a single cell)'}"
        )


# ----------------------------------------------------------------------------------- query output
def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return repr(value)  # full precision: 1e-05 stays 1e-05
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    return str(value)


def render_query(columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str) -> str:
    """The rows of ``iel query`` as ``table``, ``markdown``, ``csv`` or ``json``; numbers at full precision."""
    if fmt == "json":
        return json.dumps([dict(zip(columns, r)) for r in rows], indent=2, default=str)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
        return buf.getvalue().rstrip("\n")
    body = [[_cell(v) for v in r] for r in rows]
    if fmt == "markdown":
        lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in b) + " |" for b in body]
        return "\n".join(lines)
    widths = [max([len(h), *(len(b[i]) for b in body)]) for i, h in enumerate(columns)]
    out = ["  ".join(h.ljust(w) for h, w in zip(columns, widths)), "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(b, widths)).rstrip() for b in body]
    return "\n".join(out)


def silence_broken_pipe() -> int:
    """After a reader such as ``head`` closed our standard output: point it at /dev/null so the final flush
    raises nothing, and return 141 (128 + SIGPIPE, what ``cat`` ends with)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    finally:
        os.close(devnull)
    return 141
