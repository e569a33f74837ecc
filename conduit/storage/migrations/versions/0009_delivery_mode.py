"""delivery mode

Revision ID: 0009_delivery_mode
Revises: 0008_message_store
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_delivery_mode"
down_revision = "0008_message_store"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("webhooks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("delivery_mode", sa.String(length=16), nullable=False,
                                      server_default="queued"))
        batch_op.add_column(sa.Column("sync_timeout_ms", sa.Integer(), nullable=False, server_default="10000"))


def downgrade() -> None:
    with op.batch_alter_table("webhooks", schema=None) as batch_op:
        batch_op.drop_column("sync_timeout_ms")
        batch_op.drop_column("delivery_mode")
