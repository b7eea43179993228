"""web sessions survive a restart

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 21:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "web_sessions",
        sa.Column("id_hash", sa.String(length=64), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id_hash", name=op.f("pk_web_sessions")),
    )
    op.create_index(op.f("ix_web_sessions_started_at"), "web_sessions", ["started_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_web_sessions_started_at"), table_name="web_sessions")
    op.drop_table("web_sessions")
