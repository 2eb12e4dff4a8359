"""Campaigns: the segments table (one row per job of an experiment), the EQ transcript
(eq_messages, replayed by a resume), experiments.heartbeat_at and trials.attempts.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""
from alembic import op
import sqlalchemy as sa

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("experiments") as b:
        b.add_column(sa.Column("heartbeat_at", sa.DateTime(), nullable=True))
    with op.batch_alter_table("trials") as b:
        b.add_column(sa.Column("attempts", sa.Integer(), nullable=True))
    op.create_table(
        "segments",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("experiment_id", sa.Integer(), sa.ForeignKey("experiments.id"), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("run_dir", sa.Text()),
        sa.Column("host", sa.String(255)),
        sa.Column("pid", sa.Integer()),
        sa.Column("procs", sa.Integer()),
        sa.Column("workers", sa.Integer()),
        sa.Column("started_at", sa.DateTime()),
        sa.Column("heartbeat_at", sa.DateTime()),
        sa.Column("ended_at", sa.DateTime()),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("error", sa.Text()),
    )
    op.create_index("ix_segments_experiment", "segments", ["experiment_id", "number"])
    op.create_table(
        "eq_messages",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("experiment_id", sa.Integer(), sa.ForeignKey("experiments.id"), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("direction", sa.String(3), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime()),
    )
    op.create_index("ix_eq_messages_experiment", "eq_messages", ["experiment_id", "seq"])


def downgrade() -> None:
    op.drop_index("ix_eq_messages_experiment", table_name="eq_messages")
    op.drop_table("eq_messages")
    op.drop_index("ix_segments_experiment", table_name="segments")
    op.drop_table("segments")
    with op.batch_alter_table("trials") as b:
        b.drop_column("attempts")
    with op.batch_alter_table("experiments") as b:
        b.drop_column("heartbeat_at")
