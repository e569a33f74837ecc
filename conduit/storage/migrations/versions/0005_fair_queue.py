"""fair queue: per-job recipients, leased jobs by webhook

Revision ID: 0005_fair_queue
Revises: 0004_account_disabled
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_fair_queue"
down_revision = "0004_account_disabled"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("delivery_jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("recipients", sa.JSON(), nullable=False, server_default="[]"))
    # Jobs queued before: their one recipient.
    if op.get_bind().dialect.name == "postgresql":
        op.execute("UPDATE delivery_jobs SET recipients = json_build_array(rcpt_to)")
    else:
        op.execute("UPDATE delivery_jobs SET recipients = json_array(rcpt_to)")
    with op.batch_alter_table("delivery_jobs", schema=None) as batch_op:
        batch_op.alter_column("recipients", server_default=None)
        batch_op.create_index("ix_delivery_jobs_leased", ["webhook_id", "locked_until"], unique=False,
                              sqlite_where=sa.text("locked_until IS NOT NULL"),
                              postgresql_where=sa.text("locked_until IS NOT NULL"))


def downgrade() -> None:
    with op.batch_alter_table("delivery_jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_delivery_jobs_leased")
        batch_op.drop_column("recipients")
