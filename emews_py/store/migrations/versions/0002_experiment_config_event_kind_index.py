"""experiments.config (the run's RunConfig, to resume campaigns) and an index on events(trial_id,
kind) for learning-curve queries.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""
from alembic import op
import sqlalchemy as sa

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Batch mode: a plain ALTER TABLE ADD COLUMN on SQLite and PostgreSQL alike (no table copy).
    with op.batch_alter_table("experiments") as b:
        b.add_column(sa.Column("config", sa.JSON(), nullable=True))
    op.create_index("ix_events_trial_kind", "events", ["trial_id", "kind"])


def downgrade() -> None:
    op.drop_index("ix_events_trial_kind", table_name="events")
    # SQLite cannot always drop a column in place: batch mode copies the table without it.
    with op.batch_alter_table("experiments") as b:
        b.drop_column("config")
