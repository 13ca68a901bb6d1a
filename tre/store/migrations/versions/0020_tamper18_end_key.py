"""Jobs: the key that seals a job's end kept on disk (jobs.end_key)

A job's end kept in the job-end spool while the database was away was written as the job's
end when it had a worker's form and the running job's worker id, which is no secret (it is
in the API's and the log's words): whoever could write the state directory could end a
running job as they liked. The worker now draws a key when it claims or takes over a job,
kept in this column and in its memory, and seals the spooled end with it (HMAC-SHA-256);
an end whose seal is not the row's is not written (`tre.jobs.end_spool`). Existing rows
have none: a job claimed before the upgrade is taken over (and given one) or ended as lost.

Revision ID: 0020_tamper18_end_key
Revises: 0019_tamper17_token_epoch
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020_tamper18_end_key"
down_revision: str | None = "0019_tamper17_token_epoch"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A nullable column is added in place on SQLite (no table rebuild).
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("end_key", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("end_key")
