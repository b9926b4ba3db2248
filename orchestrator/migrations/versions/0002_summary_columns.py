"""The view ``iel_trial_summary`` gains ``optuna_trial_number``, ``params`` (the searched parameters),
``error`` and ``failed_epoch`` (appended after ``metrics_json``: the earlier columns keep their order).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _initial() -> ModuleType:
    """Revision 0001 (its view SQL is the base of this one; the file name starts with a digit)."""
    path = Path(__file__).with_name("0001_initial.py")
    spec = importlib.util.spec_from_file_location("iel_migration_0001", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def params_sql(dialect: str) -> str:
    """The searched parameters of a trial as JSON text: for each path under the study's ``search.params``
    (``optimizer.lr``), its value in the trial's resolved configuration; ``{}`` for a study without search."""
    if dialect == "postgresql":
        return (
            "COALESCE((SELECT jsonb_object_agg(p.key, t.config_json::jsonb #> string_to_array(p.key, '.'))::text "
            "FROM jsonb_each(CASE WHEN jsonb_typeof(s.spec_json::jsonb #> '{search,params}') = 'object' "
            "THEN s.spec_json::jsonb #> '{search,params}' ELSE '{}'::jsonb END) p "
            "WHERE t.config_json::jsonb #> string_to_array(p.key, '.') IS NOT NULL), '{}')"
        )
    # SQLite: json_extract with a "$.a.b" path; keys are quoted so a path segment may hold any character.
    path = "'$.\"' || replace(p.key, '.', '\".\"') || '\"'"
    return (
        f"COALESCE((SELECT json_group_object(p.key, json_extract(t.config_json, {path})) "
        "FROM json_each(s.spec_json, '$.search.params') p "
        f"WHERE json_type(t.config_json, {path}) IS NOT NULL), '{{}}')"
    )


def trial_summary_sql(dialect: str) -> str:
    """``CREATE VIEW iel_trial_summary`` at this revision (columns: ``TRIAL_SUMMARY_COLUMNS``)."""
    base = _initial().trial_summary_sql(dialect)
    head, sep, tail = base.partition("\nFROM iel_trials t")
    assert sep, "revision 0001's view SQL changed shape"
    extra = (
        ",\n  t.optuna_trial_number AS optuna_trial_number"
        f",\n  {params_sql(dialect)} AS params"
        ",\n  t.error AS error"
        ",\n  t.failed_epoch AS failed_epoch"
    )
    return head + extra + sep + tail


def upgrade() -> None:
    op.execute("DROP VIEW IF EXISTS iel_trial_summary")
    op.execute(trial_summary_sql(op.get_bind().dialect.name))


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS iel_trial_summary")
    op.execute(_initial().trial_summary_sql(op.get_bind().dialect.name))
