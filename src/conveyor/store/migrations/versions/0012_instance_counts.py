"""instance counts over time (ready instances and the count in force, per process type), for the
metrics page's graph of instance count against load

Revision ID: 0012_instance_counts
Revises: 0011_capacity
Create Date: 2026-12-02 23:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_instance_counts"
down_revision = "0011_capacity"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "instance_counts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("env_id", sa.Integer(), nullable=False),
        sa.Column("process", sa.String(length=40), nullable=False),
        sa.Column("t", sa.Float(), nullable=False),
        sa.Column("ready", sa.Integer(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["env_id"], ["environments.id"], name=op.f("fk_instance_counts_env_id_environments"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instance_counts")),
        sa.UniqueConstraint("env_id", "process", "t", name="uq_instance_counts_key"),
    )


def downgrade() -> None:
    op.drop_table("instance_counts")
