"""hosts drained by `conveyor hosts drain` (who, since when)

Revision ID: 0011_capacity
Revises: 0006
Create Date: 2026-12-02 16:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_capacity"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("hosts") as batch:
        batch.add_column(sa.Column("drained_at", sa.Float(), nullable=True))
        batch.add_column(sa.Column("drained_by", sa.String(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("hosts") as batch:
        batch.drop_column("drained_by")
        batch.drop_column("drained_at")
