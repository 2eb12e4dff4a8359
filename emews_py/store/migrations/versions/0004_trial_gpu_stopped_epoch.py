"""GPUs and early stopping: trials.gpu (the CUDA_VISIBLE_DEVICES a trial ran with) and
trials.stopped_epoch (the epoch at which an early stopper ended it; its status is 'stopped').

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""
from alembic import op
import sqlalchemy as sa

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("trials") as b:
        b.add_column(sa.Column("gpu", sa.String(64), nullable=True))
        b.add_column(sa.Column("stopped_epoch", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("trials") as b:
        b.drop_column("stopped_epoch")
        b.drop_column("gpu")
