"""leader leases for control-plane replicas

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 21:55:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    leases = op.create_table(
        "leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leases")),
    )
    # The row exists from the start, so taking the lease is one conditional UPDATE (no insert race).
    op.bulk_insert(leases, [{"name": "orchestrator", "holder": "", "expires_at": 0.0}])


def downgrade() -> None:
    op.drop_table("leases")
