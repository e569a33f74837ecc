"""message store

Revision ID: 0008_message_store
Revises: 0007_refusals
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_message_store"
down_revision = "0007_refusals"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("subject", sa.String(length=998), nullable=False, server_default=""))
    # A message's attempts, for GET /messages/{id}: found by the message, not by scanning a webhook's logs.
    op.create_index("ix_delivery_logs_smtp_message_id", "delivery_logs", ["smtp_message_id"])


def downgrade() -> None:
    op.drop_index("ix_delivery_logs_smtp_message_id", table_name="delivery_logs")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("subject")
