"""Signed-out bearer tokens: revoked_tokens

A sign-out (the panel's, ``tre logout``) makes its token unusable before it expires; the
API refuses a token whose SHA-256 is listed here until its own expiry.

Revision ID: 0011_revoked_tokens
Revises: 0010_outputs_scale
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from tre.store.base import UTCDateTime

revision: str = "0011_revoked_tokens"
down_revision: str | None = "0010_outputs_scale"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "revoked_tokens",
        sa.Column("token_sha256", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.String(64), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("revoked_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", UTCDateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_revoked_tokens_user_id", "revoked_tokens", ["user_id"])
    op.create_index("ix_revoked_tokens_expires_at", "revoked_tokens", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_revoked_tokens_expires_at", table_name="revoked_tokens")
    op.drop_index("ix_revoked_tokens_user_id", table_name="revoked_tokens")
    op.drop_table("revoked_tokens")
