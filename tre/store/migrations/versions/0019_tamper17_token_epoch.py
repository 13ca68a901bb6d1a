"""Users: the moment before which the user's tokens are refused (users.tokens_valid_from)

A bearer token names its user by id only, and ids are names: a user deleted and made again
under the same name accepted the old user's unexpired tokens, and a disabled user enabled
again accepted every token issued before the disable. Each user row now carries the moment
its tokens start to count: set when the row is made and again when the user is enabled;
authentication refuses a token whose ``iat`` is earlier (`tre.auth.generation`).
Existing rows take their ``created_at``.

Revision ID: 0019_tamper17_token_epoch
Revises: 0018_tamper16_spool_batches
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tre.store.base

revision: str = "0019_tamper17_token_epoch"
down_revision: str | None = "0018_tamper16_spool_batches"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A nullable column is added in place on SQLite (no table rebuild, which other tables'
    # foreign keys to users would make delicate); rows made before take their created_at.
    with op.batch_alter_table("users") as batch:
        batch.add_column(
            sa.Column("tokens_valid_from", tre.store.base.UTCDateTime(timezone=True), nullable=True)
        )
    op.execute("UPDATE users SET tokens_valid_from = created_at")


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("tokens_valid_from")
