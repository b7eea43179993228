"""git push: each app's deploy branch (git_remotes) and every push with its commits (git_pushes)

Revision ID: 0007_git
Revises: 0006
Create Date: 2026-12-02 16:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_git"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "git_remotes",
        sa.Column("app_id", sa.Integer(), nullable=False),
        sa.Column("deploy_branch", sa.String(length=200), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("updated_by", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(["app_id"], ["apps.id"], name=op.f("fk_git_remotes_app_id_apps"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("app_id", name="pk_git_remotes"),
    )
    op.create_table(
        "git_pushes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("app_id", sa.Integer(), nullable=False),
        sa.Column("ref", sa.String(length=200), nullable=False),
        sa.Column("old_sha", sa.String(length=64), nullable=False),
        sa.Column("new_sha", sa.String(length=64), nullable=False),
        sa.Column("commits", sa.JSON(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("detach", sa.Boolean(), nullable=False),
        sa.Column("build_id", sa.Integer(), nullable=True),
        sa.Column("deployment_id", sa.Integer(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("pushed_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["app_id"], ["apps.id"], name=op.f("fk_git_pushes_app_id_apps"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_git_pushes"),
    )
    op.create_index("ix_git_pushes_app_id", "git_pushes", ["app_id"])
    op.create_index("ix_git_pushes_deployment_id", "git_pushes", ["deployment_id"])


def downgrade() -> None:
    op.drop_index("ix_git_pushes_deployment_id", table_name="git_pushes")
    op.drop_index("ix_git_pushes_app_id", table_name="git_pushes")
    op.drop_table("git_pushes")
    op.drop_table("git_remotes")
