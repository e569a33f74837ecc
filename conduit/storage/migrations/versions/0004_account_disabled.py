"""account disabled

Revision ID: 0004_account_disabled
Revises: 0003
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import conduit.storage.base

revision = "0004_account_disabled"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("disabled_at", conduit.storage.base.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("disabled_at")
