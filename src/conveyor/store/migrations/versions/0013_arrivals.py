"""requests that arrived per metrics point (completions plus the change of the routers' in-flight
gauge), for the autoscaler: completions alone understate the load while instances are saturated
and overstate it while a backlog drains

Revision ID: 0013_arrivals
Revises: 0012_instance_counts
Create Date: 2026-12-03 02:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_arrivals"
down_revision = "0012_instance_counts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("metric_points") as batch:
        batch.add_column(sa.Column("arrivals", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("metric_points") as batch:
        batch.drop_column("arrivals")
