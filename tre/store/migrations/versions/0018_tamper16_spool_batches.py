"""Audit: the refusal batches written from the on-disk spool (audit_spool_batches)

Refusal entries whose write failed wait in ``<TRE_HOME>/spool/audit-refusals`` until the
store takes them. A batch found there twice (a copy put back by whoever can write the state
directory, or a crash between the write and the file's removal) was written twice. Each
written batch's digest is kept; a batch already written is not written again.

Revision ID: 0018_tamper16_spool_batches
Revises: 0017_tamper15_node_cp_root
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tre.store.base

revision: str = "0018_tamper16_spool_batches"
down_revision: str | None = "0017_tamper15_node_cp_root"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_spool_batches",
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("written_at", tre.store.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_audit_spool_batches")),
    )


def downgrade() -> None:
    op.drop_table("audit_spool_batches")
