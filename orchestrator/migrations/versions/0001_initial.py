"""Initial schema: studies, cells, trials, per-epoch and final metrics, artifacts, driver locks, and the
view ``iel_trial_summary``.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TRIAL_STATES = ("PENDING", "RUNNING", "COMPLETE", "PRUNED", "FAILED")
_SUMMARY_METRICS = ("dice", "miou", "pixel_acc", "val_loss")


def _ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _metric(name: str) -> str:
    return (
        f"(SELECT f.value FROM iel_final_metrics f WHERE f.trial_id = t.id AND f.name = '{name}') AS {name}"
    )


def trial_summary_sql(dialect: str) -> str:
    """``CREATE VIEW iel_trial_summary``: one row per trial (columns documented in
    ``orchestrator.db.models.TRIAL_SUMMARY_COLUMNS``).  The SQL is the same on SQLite and PostgreSQL
    except the JSON aggregate behind ``metrics_json``."""
    if dialect == "postgresql":
        metrics_json = "COALESCE(jsonb_object_agg(f.name, f.value)::text, '{}')"
    else:  # json_group_object would round values to 15 digits; %!.17g round-trips a double exactly
        metrics_json = (
            "COALESCE('{' || group_concat(json_quote(f.name) || ':' || "
            "COALESCE(printf('%!.17g', f.value), 'null'), ',') || '}', '{}')"
        )
    metrics = ",\n  ".join(_metric(m) for m in _SUMMARY_METRICS)
    return f"""CREATE VIEW iel_trial_summary AS
SELECT
  t.id AS trial_id,
  s.name AS study,
  c.cell_key AS cell_key,
  c.factors_json AS factors,
  c.is_baseline AS is_baseline,
  t.seed AS seed,
  t.search_index AS search_index,
  t.state AS state,
  t.failure_kind AS failure_kind,
  t.attempts AS attempts,
  CASE WHEN t.reused_from_id IS NULL THEN 0 ELSE 1 END AS reused,
  t.reused_from_id AS reused_from_id,
  t.trial_hash AS trial_hash,
  t.mlflow_run_id AS mlflow_run_id,
  t.duration_s AS duration_s,
  t.finished_at AS finished_at,
  {metrics},
  (SELECT {metrics_json} FROM iel_final_metrics f WHERE f.trial_id = t.id) AS metrics_json
FROM iel_trials t
JOIN iel_studies s ON s.id = t.study_id
JOIN iel_cells c ON c.id = t.cell_id"""


def upgrade() -> None:
    op.create_table(
        "iel_studies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("spec_json", sa.Text(), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_iel_studies"),
        sa.UniqueConstraint("name", name="uq_iel_studies_name"),
    )
    op.create_table(
        "iel_cells",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("cell_key", sa.String(500), nullable=False),
        sa.Column("factors_json", sa.Text(), nullable=False),
        sa.Column("is_baseline", sa.Boolean(), nullable=False),
        sa.Column("optuna_study_name", sa.String(500), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_iel_cells"),
        sa.ForeignKeyConstraint(
            ["study_id"], ["iel_studies.id"], name="fk_iel_cells_study_id_iel_studies", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("study_id", "cell_key", name="uq_iel_cells_study_id_cell_key"),
    )
    states = ", ".join(f"'{s}'" for s in _TRIAL_STATES)
    op.create_table(
        "iel_trials",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("cell_id", sa.Integer(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("search_index", sa.Integer(), nullable=True),
        sa.Column("trial_hash", sa.String(64), nullable=False),
        sa.Column("config_json", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("failure_kind", sa.String(32), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("failed_epoch", sa.Integer(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("reused_from_id", sa.Integer(), nullable=True),
        sa.Column("optuna_study_name", sa.String(500), nullable=True),
        sa.Column("optuna_trial_number", sa.Integer(), nullable=True),
        sa.Column("mlflow_run_id", sa.String(64), nullable=True),
        sa.Column("host", sa.String(255), nullable=True),
        sa.Column("device", sa.String(255), nullable=True),
        sa.Column("code_version", sa.String(255), nullable=True),
        _ts("created_at"),
        _ts("started_at", nullable=True),
        _ts("finished_at", nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_iel_trials"),
        sa.ForeignKeyConstraint(
            ["study_id"], ["iel_studies.id"], name="fk_iel_trials_study_id_iel_studies", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["cell_id"], ["iel_cells.id"], name="fk_iel_trials_cell_id_iel_cells", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["reused_from_id"],
            ["iel_trials.id"],
            name="fk_iel_trials_reused_from_id_iel_trials",
            ondelete="SET NULL",
        ),
        sa.UniqueConstraint("study_id", "trial_hash", name="uq_iel_trials_study_id_trial_hash"),
        sa.CheckConstraint(f"state IN ({states})", name="ck_iel_trials_state"),
    )
    op.create_index("ix_iel_trials_study_id_state", "iel_trials", ["study_id", "state"])
    op.create_index("ix_iel_trials_cell_id", "iel_trials", ["cell_id"])
    op.create_index("ix_iel_trials_trial_hash", "iel_trials", ["trial_hash"])
    op.create_index("ix_iel_trials_reused_from_id", "iel_trials", ["reused_from_id"])

    def trial_fk(table: str) -> sa.ForeignKeyConstraint:
        return sa.ForeignKeyConstraint(
            ["trial_id"], ["iel_trials.id"], name=f"fk_{table}_trial_id_iel_trials", ondelete="CASCADE"
        )

    op.create_table(
        "iel_epoch_metrics",
        sa.Column("trial_id", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("trial_id", "epoch", "name", name="pk_iel_epoch_metrics"),
        trial_fk("iel_epoch_metrics"),
    )
    op.create_table(
        "iel_final_metrics",
        sa.Column("trial_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("trial_id", "name", name="pk_iel_final_metrics"),
        trial_fk("iel_final_metrics"),
    )
    op.create_table(
        "iel_artifacts",
        sa.Column("trial_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("uri", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("trial_id", "name", name="pk_iel_artifacts"),
        trial_fk("iel_artifacts"),
    )
    op.create_table(
        "iel_driver_locks",
        sa.Column("study_name", sa.String(200), nullable=False),
        sa.Column("owner", sa.String(255), nullable=False),
        _ts("acquired_at"),
        _ts("heartbeat_at"),
        sa.PrimaryKeyConstraint("study_name", name="pk_iel_driver_locks"),
    )
    op.execute(trial_summary_sql(op.get_bind().dialect.name))


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS iel_trial_summary")
    for table in (
        "iel_driver_locks",
        "iel_artifacts",
        "iel_final_metrics",
        "iel_epoch_metrics",
        "iel_trials",
        "iel_cells",
        "iel_studies",
    ):
        op.drop_table(table)
