"""hosts drained by `conveyor hosts drain` (who, since when); autoscalers (`conveyor autoscale`)

Revision ID: 0011_capacity
Revises: 0010_trains
Create Date: 2026-12-02 16:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_capacity"
down_revision = "0010_trains"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("hosts") as batch:
        batch.add_column(sa.Column("drained_at", sa.Float(), nullable=True))
        batch.add_column(sa.Column("drained_by", sa.String(length=100), nullable=True))
    op.create_table(
        "autoscalers",
        sa.Column("env_id", sa.Integer(), nullable=False),
        sa.Column("process", sa.String(length=40), nullable=False),
        sa.Column("policy", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("updated_by", sa.String(length=100), nullable=False),
        sa.Column("decided_at", sa.Float(), nullable=True),
        sa.Column("decision", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["env_id"], ["environments.id"], name=op.f("fk_autoscalers_env_id_environments"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("env_id", "process", name="pk_autoscalers"),
    )


def downgrade() -> None:
    op.drop_table("autoscalers")
    with op.batch_alter_table("hosts") as batch:
        batch.drop_column("drained_by")
        batch.drop_column("drained_at")
