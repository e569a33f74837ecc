"""spam policy

Revision ID: 0006_spam_policy
Revises: 0004_account_disabled
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_spam_policy"
down_revision = "0005_fair_queue"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("smtp_policies", schema=None) as batch_op:
        batch_op.add_column(sa.Column("spam_action", sa.String(length=16), nullable=False, server_default="deliver"))
        batch_op.add_column(sa.Column("spam_threshold", sa.Float(), nullable=True))
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("spam", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("spam")
    with op.batch_alter_table("smtp_policies", schema=None) as batch_op:
        batch_op.drop_column("spam_threshold")
        batch_op.drop_column("spam_action")
