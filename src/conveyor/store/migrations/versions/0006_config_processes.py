"""config vars and secrets, process counts, process types and one-off commands of instances

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 08:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.add_column(sa.Column("process", sa.String(length=40), nullable=False, server_default="web"))
        batch.add_column(sa.Column("command", sa.Text(), nullable=True))
        batch.add_column(sa.Column("interrupts", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "config_vars",
        sa.Column("env_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("secret", sa.Boolean(), nullable=False),
        sa.Column("value", sa.Text(), nullable=True),
        sa.Column("sealed", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("updated_by", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(["env_id"], ["environments.id"], name=op.f("fk_config_vars_env_id_environments"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("env_id", "key", name="pk_config_vars"),
    )
    op.create_table(
        "process_counts",
        sa.Column("env_id", sa.Integer(), nullable=False),
        sa.Column("process", sa.String(length=40), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("updated_by", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(["env_id"], ["environments.id"], name=op.f("fk_process_counts_env_id_environments"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("env_id", "process", name="pk_process_counts"),
    )
    op.create_table(
        "restarts",
        sa.Column("env_id", sa.Integer(), nullable=False),
        sa.Column("process", sa.String(length=40), nullable=False),
        sa.Column("requested_at", sa.Float(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("requested_by", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(["env_id"], ["environments.id"], name=op.f("fk_restarts_env_id_environments"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("env_id", "process", name="pk_restarts"),
    )


def downgrade() -> None:
    op.drop_table("restarts")
    with op.batch_alter_table("instances") as batch:
        batch.drop_column("interrupts")
        batch.drop_column("command")
        batch.drop_column("process")
    op.drop_table("process_counts")
    op.drop_table("config_vars")
