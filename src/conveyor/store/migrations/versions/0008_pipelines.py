"""pipelines: a deployment's pending approval; deploy locks and freeze windows

Revision ID: 0008_pipelines
Revises: 0007_git
Create Date: 2026-12-02 16:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_pipelines"
down_revision = "0007_git"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deployments") as batch:
        batch.add_column(sa.Column("approval", sa.JSON(), nullable=True))
    op.create_table(
        "locks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("app_id", sa.Integer(), nullable=False),
        sa.Column("env", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("deployment_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["app_id"], ["apps.id"], name=op.f("fk_locks_app_id_apps"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_locks"),
        sa.UniqueConstraint("app_id", "env", "kind", name="uq_locks_app_env_kind"),
    )
    op.create_table(
        "freezes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("app_id", sa.Integer(), nullable=False),
        sa.Column("env", sa.String(length=40), nullable=False),
        sa.Column("spec", sa.String(length=100), nullable=False),
        sa.Column("tz", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["app_id"], ["apps.id"], name=op.f("fk_freezes_app_id_apps"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_freezes"),
    )
    op.create_index(op.f("ix_freezes_app_id"), "freezes", ["app_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_freezes_app_id"), table_name="freezes")
    op.drop_table("freezes")
    op.drop_table("locks")
    with op.batch_alter_table("deployments") as batch:
        batch.drop_column("approval")
