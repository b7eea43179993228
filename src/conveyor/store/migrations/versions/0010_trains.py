"""deploy trains (batches of commits, bisected on a failed canary) and their steps

Revision ID: 0010_trains
Revises: 0009_hooks
Create Date: 2026-12-02 16:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_trains"
down_revision = "0009_hooks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "trains",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("env_id", sa.Integer(), nullable=False),
        sa.Column("repo_url", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("commits", sa.JSON(), nullable=False),
        sa.Column("max_commits", sa.Integer(), nullable=False),
        sa.Column("trigger", sa.String(length=100), nullable=False),
        sa.Column("culprit", sa.JSON(), nullable=True),
        sa.Column("shipped", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=True),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["env_id"], ["environments.id"], name=op.f("fk_trains_env_id_environments"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trains")),
    )
    op.create_index(op.f("ix_trains_env_id"), "trains", ["env_id"])
    op.create_index(op.f("ix_trains_state"), "trains", ["state"])
    op.create_table(
        "train_steps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("train_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("build_id", sa.Integer(), nullable=True),
        sa.Column("image_digest", sa.String(length=80), nullable=True),
        sa.Column("deployment_id", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["train_id"], ["trains.id"], name=op.f("fk_train_steps_train_id_trains"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_train_steps")),
    )
    op.create_index(op.f("ix_train_steps_train_id"), "train_steps", ["train_id"])
    op.create_index(op.f("ix_train_steps_deployment_id"), "train_steps", ["deployment_id"])


def downgrade() -> None:
    op.drop_table("train_steps")
    op.drop_table("trains")
