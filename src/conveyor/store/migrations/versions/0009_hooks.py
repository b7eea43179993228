"""webhooks in (app repositories, deliveries) and notifications out (targets, outbox)

Revision ID: 0009_hooks
Revises: 0008_pipelines
Create Date: 2026-12-02 16:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_hooks"
down_revision = "0008_pipelines"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "app_repos",
        sa.Column("app_id", sa.Integer(), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("branch", sa.String(length=200), nullable=False),
        sa.Column("env", sa.String(length=40), nullable=False),
        sa.Column("secret_sealed", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(["app_id"], ["apps.id"], name=op.f("fk_app_repos_app_id_apps"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("app_id", name=op.f("pk_app_repos")),
    )
    op.create_table(
        "hook_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("app_id", sa.Integer(), nullable=False),
        sa.Column("delivery", sa.String(length=100), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("event", sa.String(length=40), nullable=False),
        sa.Column("sha", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("build_id", sa.Integer(), nullable=True),
        sa.Column("deployment_id", sa.Integer(), nullable=True),
        sa.Column("at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["app_id"], ["apps.id"], name=op.f("fk_hook_deliveries_app_id_apps"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hook_deliveries")),
        sa.UniqueConstraint("app_id", "delivery", name="uq_hook_deliveries_app_delivery"),
    )
    op.create_table(
        "notify_targets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("app_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("url_sealed", sa.Text(), nullable=False),
        sa.Column("url_shown", sa.String(length=2000), nullable=False),
        sa.Column("secret_sealed", sa.Text(), nullable=True),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("cursor", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(["app_id"], ["apps.id"], name=op.f("fk_notify_targets_app_id_apps"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notify_targets")),
    )
    op.create_index(op.f("ix_notify_targets_app_id"), "notify_targets", ["app_id"])
    op.create_table(
        "notify_outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("target_id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_at", sa.Float(), nullable=True),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("last_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["target_id"], ["notify_targets.id"], name=op.f("fk_notify_outbox_target_id_notify_targets"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notify_outbox")),
        sa.UniqueConstraint("target_id", "event_id", name="uq_notify_outbox_target_event"),
    )
    op.create_index(op.f("ix_notify_outbox_target_id"), "notify_outbox", ["target_id"])
    op.create_index(op.f("ix_notify_outbox_next_at"), "notify_outbox", ["next_at"])


def downgrade() -> None:
    op.drop_table("notify_outbox")
    op.drop_table("notify_targets")
    op.drop_table("hook_deliveries")
    op.drop_table("app_repos")
