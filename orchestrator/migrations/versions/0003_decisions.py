"""Decisions: the table ``iel_comparisons`` (one row per arm-vs-baseline comparison of a study with
``decide:``, rewritten after every finished trial) and the view ``iel_decisions`` over it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DECISIONS_VIEW = """CREATE VIEW iel_decisions AS
SELECT
  s.name AS study,
  c.cell_key AS cell_key,
  b.cell_key AS baseline_key,
  d.metric AS metric,
  d.n AS n,
  d.estimate AS estimate,
  d.cs_low AS cs_low,
  d.cs_high AS cs_high,
  d.decision AS decision,
  d.decided_at_n AS decided_at_n,
  d.method AS method,
  d.alpha AS alpha,
  d.margin AS margin,
  d.updated_at AS updated_at
FROM iel_comparisons d
JOIN iel_cells c ON c.id = d.cell_id
JOIN iel_cells b ON b.id = d.baseline_cell_id
JOIN iel_studies s ON s.id = c.study_id"""


def upgrade() -> None:
    op.create_table(
        "iel_comparisons",
        sa.Column("cell_id", sa.Integer(), nullable=False),
        sa.Column("metric", sa.String(100), nullable=False),
        sa.Column("baseline_cell_id", sa.Integer(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("estimate", sa.Float(), nullable=True),
        sa.Column("cs_low", sa.Float(), nullable=True),
        sa.Column("cs_high", sa.Float(), nullable=True),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("decided_at_n", sa.Integer(), nullable=True),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("alpha", sa.Float(), nullable=False),
        sa.Column("margin", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("cell_id", "metric", name="pk_iel_comparisons"),
        sa.ForeignKeyConstraint(
            ["cell_id"], ["iel_cells.id"], name="fk_iel_comparisons_cell_id_iel_cells", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["baseline_cell_id"],
            ["iel_cells.id"],
            name="fk_iel_comparisons_baseline_cell_id_iel_cells",
            ondelete="CASCADE",
        ),
    )
    op.execute(DECISIONS_VIEW)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS iel_decisions")
    op.drop_table("iel_comparisons")
