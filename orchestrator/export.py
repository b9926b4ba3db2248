"""``iel export``: one row per trial of a study, as CSV or Parquet, for pandas, R or a spreadsheet.

Columns, in this order: the trial's record (``trial_id``, ``cell_key``, ``seed``, ``state``, ``error``, ...),
``factor.<path>`` (the cell's factor values), ``param.<path>`` (the searched parameters, from the study's
``search.params``), ``metric.<name>`` (final metrics) and ``config.<path>`` (the resolved configuration,
flattened: ``config.iel.dt``).  A list value is written as JSON text.  Parquet needs ``pyarrow``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ielcore.errors import IELError, SpecError
from orchestrator.db.records import TrialRecord

EXPORT_FORMATS = ("csv", "parquet")

RECORD_COLUMNS = (
    "trial_id",
    "study",
    "cell_key",
    "is_baseline",
    "seed",
    "search_index",
    "optuna_trial_number",
    "state",
    "failure_kind",
    "error",
    "failed_epoch",
    "attempts",
    "reused_from_id",
    "trial_hash",
    "mlflow_run_id",
    "duration_s",
    "started_at",
    "finished_at",
)


@dataclass(frozen=True)
class ExportTable:
    """Rows of one study's trials: ``columns`` in order, ``rows`` as dicts (a missing key is empty)."""

    columns: tuple[str, ...]
    rows: tuple[dict[str, Any], ...]


def flatten(value: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"iel": {"dt": 0.1}}`` -> ``{"iel.dt": 0.1}``; lists and tuples become JSON text."""
    out: dict[str, Any] = {}
    for key, v in value.items():
        path = f"{prefix}{key}"
        if isinstance(v, Mapping):
            out.update(flatten(v, path + "."))
        elif isinstance(v, list | tuple):
            out[path] = json.dumps(v, sort_keys=True, default=str)
        else:
            out[path] = v
    return out


def _at(config: Mapping[str, Any], path: str) -> tuple[bool, Any]:
    node: Any = config
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def searched_paths(spec: Mapping[str, Any]) -> list[str]:
    """The dotted paths under the study spec's ``search.params`` (empty without search)."""
    search = spec.get("search")
    params = search.get("params") if isinstance(search, Mapping) else None
    return [str(p) for p in params] if isinstance(params, Mapping) else []


def _record_values(t: TrialRecord) -> dict[str, Any]:
    values: dict[str, Any] = {
        "trial_id": t.id,
        "study": t.study_name,
        "cell_key": t.cell_key,
        "is_baseline": t.is_baseline,
        "seed": t.seed,
        "search_index": t.search_index,
        "optuna_trial_number": t.optuna_trial_number,
        "state": t.state.value,
        "failure_kind": None if t.failure_kind is None else str(t.failure_kind),
        "error": t.error,
        "failed_epoch": t.failed_epoch,
        "attempts": t.attempts,
        "reused_from_id": t.reused_from_id,
        "trial_hash": t.trial_hash,
        "mlflow_run_id": t.mlflow_run_id,
        "duration_s": t.duration_s,
        "started_at": None if t.started_at is None else t.started_at.isoformat(),
        "finished_at": None if t.finished_at is None else t.finished_at.isoformat(),
    }
    return values


def export_table(trials: Sequence[TrialRecord], spec: Mapping[str, Any]) -> ExportTable:
    """The export of ``trials`` (one study's, in id order) with the searched parameters of ``spec``."""
    paths = searched_paths(spec)
    rows: list[dict[str, Any]] = []
    groups: dict[str, set[str]] = {"factor.": set(), "param.": set(), "metric.": set(), "config.": set()}
    for t in sorted(trials, key=lambda r: r.id):
        row = _record_values(t)
        extra: dict[str, Any] = {}
        extra.update({f"factor.{k}": v for k, v in flatten(t.factors).items()})
        for p in paths:
            found, v = _at(t.config, p)
            if found:
                extra[f"param.{p}"] = json.dumps(v) if isinstance(v, list | tuple | Mapping) else v
        extra.update({f"metric.{k}": v for k, v in t.final_metrics.items()})
        extra.update({f"config.{k}": v for k, v in flatten(t.config).items()})
        for name in extra:
            groups[name[: name.index(".") + 1]].add(name)
        rows.append(row | extra)
    columns = list(RECORD_COLUMNS)
    for names in groups.values():  # each group sorted (the database stores the spec with sorted keys)
        columns += sorted(names)
    return ExportTable(tuple(columns), tuple(rows))


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # full precision: 1e-05 stays 1e-05
    return value


def to_csv(table: ExportTable) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(table.columns)
    for row in table.rows:
        writer.writerow([_csv_cell(row.get(c)) for c in table.columns])
    return buf.getvalue()


def _column_type(values: Iterable[Any]) -> str:
    """``bool``, ``int``, ``float`` or ``string``: the narrowest type that holds every non-null value."""
    kinds = {type(v) for v in values if v is not None}
    if not kinds:
        return "string"
    if kinds == {bool}:
        return "bool"
    if kinds <= {int}:
        return "int"
    if kinds <= {int, float}:
        return "float"
    return "string"


def _as_string(v: Any) -> str | None:
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, float) and not math.isfinite(v):
        return repr(v)
    return json.dumps(v, default=str)


def _require_pyarrow() -> None:
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise SpecError(
            "--format parquet needs the pyarrow package, which is not installed; "
            "install it with `pip install pyarrow`, or use --format csv"
        ) from None


def to_parquet(table: ExportTable, path: Path) -> None:
    """Write ``table`` to ``path`` as Parquet (typed columns: bool, int64, float64 or string)."""
    _require_pyarrow()
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays = {}
    for c in table.columns:
        values = [r.get(c) for r in table.rows]
        kind = _column_type(values)
        if kind == "bool":
            arrays[c] = pa.array(values, type=pa.bool_())
        elif kind == "int":
            arrays[c] = pa.array(values, type=pa.int64())
        elif kind == "float":
            arrays[c] = pa.array([None if v is None else float(v) for v in values], type=pa.float64())
        else:
            arrays[c] = pa.array([_as_string(v) for v in values], type=pa.string())
    pq.write_table(pa.table(arrays), path)


def _write_atomic(path: Path, write: Any) -> None:
    """Write via a temporary file in the same folder, renamed over ``path`` once complete."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def export_study(db: Any, study: str, fmt: str, out: str | None) -> tuple[str | None, int]:
    """Export ``study`` from the results database ``db``; returns (CSV text when ``out`` is None, rows).

    Bad input (unknown study or format, Parquet to standard output, a missing output folder) raises
    before anything is written."""
    if fmt not in EXPORT_FORMATS:
        raise SpecError(
            f"unknown --format {fmt!r} for iel export; valid formats: {', '.join(EXPORT_FORMATS)}"
        )
    record = db.study(study)
    if record is None:
        raise IELError(f"no study named {study!r}; `iel studies` lists them")
    if fmt == "parquet" and out is None:
        raise SpecError("--format parquet writes a binary file: give --out FILE (e.g. --out trials.parquet)")
    path = None if out is None else Path(out)
    if path is not None and not path.parent.is_dir():
        raise SpecError(
            f"--out {out}: the folder {path.parent} does not exist; create it or choose another path"
        )
    if fmt == "parquet":  # checked before reading the trials, so a missing pyarrow costs nothing
        _require_pyarrow()
    table = export_table(db.trials(study), record.spec or {})
    if path is None:
        return to_csv(table), len(table.rows)
    if fmt == "csv":
        _write_atomic(path, lambda p: p.write_text(to_csv(table), encoding="utf-8"))
    else:
        _write_atomic(path, lambda p: to_parquet(table, p))
    return None, len(table.rows)
