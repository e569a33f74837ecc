"""refusals: mail refused at SMTP time per account, capped per hour; the receiver's headers in
delivery logs

Revision ID: 0007_refusals
Revises: 0006_spam_policy
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import conduit.storage.base

revision = "0007_refusals"
down_revision = "0006_spam_policy"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "refusals",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("refused_at", conduit.storage.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("reply_code", sa.Integer(), nullable=False),
        sa.Column("reply_text", sa.String(length=512), nullable=False),
        sa.Column("sender", sa.String(length=320), nullable=False),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("client_ip", sa.String(length=64), nullable=False),
        sa.Column("webhook_id", sa.String(length=40), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_refusals_account_id_accounts"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refusals")),
    )
    with op.batch_alter_table("refusals", schema=None) as batch_op:
        batch_op.create_index("ix_refusals_account_refused", ["account_id", "refused_at", "id"], unique=False)
        batch_op.create_index(batch_op.f("ix_refusals_refused_at"), ["refused_at"], unique=False)
    op.create_table(
        "refusal_windows",
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("window_start", conduit.storage.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("recorded", sa.Integer(), nullable=False),
        sa.Column("dropped", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"],
                                name=op.f("fk_refusal_windows_account_id_accounts"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("account_id", "window_start", name=op.f("pk_refusal_windows")),
    )
    with op.batch_alter_table("delivery_logs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("response_retry_after", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("response_content_type", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("delivery_logs", schema=None) as batch_op:
        batch_op.drop_column("response_content_type")
        batch_op.drop_column("response_retry_after")
    op.drop_table("refusal_windows")
    with op.batch_alter_table("refusals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_refusals_refused_at"))
        batch_op.drop_index("ix_refusals_account_refused")
    op.drop_table("refusals")
