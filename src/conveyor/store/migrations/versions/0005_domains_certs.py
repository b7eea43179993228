"""domains and their certificates

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 08:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "domains",
        sa.Column("name", sa.String(length=253), nullable=False),
        sa.Column("env_id", sa.Integer(), nullable=False),
        sa.Column("redirect", sa.Boolean(), nullable=False),
        sa.Column("hsts_max_age", sa.Integer(), nullable=False),
        sa.Column("cert_status", sa.String(length=32), nullable=False),
        sa.Column("cert_error", sa.Text(), nullable=False),
        sa.Column("acme", sa.Boolean(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.Float(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(
            ["env_id"], ["environments.id"], name=op.f("fk_domains_env_id_environments"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_domains")),
    )
    op.create_index(op.f("ix_domains_env_id"), "domains", ["env_id"], unique=False)
    op.create_table(
        "certificates",
        sa.Column("domain", sa.String(length=253), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("cert_pem", sa.Text(), nullable=False),
        sa.Column("key_sealed", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("names", sa.JSON(), nullable=False),
        sa.Column("issuer", sa.Text(), nullable=False),
        sa.Column("not_before", sa.Float(), nullable=False),
        sa.Column("not_after", sa.Float(), nullable=False),
        sa.Column("added_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["domain"], ["domains.name"], name=op.f("fk_certificates_domain_domains"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("domain", name=op.f("pk_certificates")),
    )

    op.create_table(
        "acme_challenges",
        sa.Column("token", sa.String(length=200), nullable=False),
        sa.Column("domain", sa.String(length=253), nullable=False),
        sa.Column("key_authorization", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["domain"], ["domains.name"], name=op.f("fk_acme_challenges_domain_domains"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("token", name=op.f("pk_acme_challenges")),
    )


def downgrade() -> None:
    op.drop_table("acme_challenges")
    op.drop_table("certificates")
    op.drop_index(op.f("ix_domains_env_id"), table_name="domains")
    op.drop_table("domains")
