"""Federation: revoked nodes (fed_nodes.revoked_at, revoked_by) and cancelled federated jobs
(fed_jobs.cancel_requested_at, cancel_requested_by)

A hub admin revokes a node whose key leaked or that left the federation (`tre hub node
revoke`): its signed requests are refused from then on, and its open children are shown as
belonging to a revoked node. The row stays, since children and results refer to it.
A federated job's submitter (or an admin) cancels it at the hub; each node is told with its
next poll and cancels its local job.

Revision ID: 0014_tes12_federation
Revises: 0013_dac12_dataset_committees
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from tre.store.base import UTCDateTime

revision: str = "0014_tes12_federation"
down_revision: str | None = "0013_dac12_dataset_committees"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("fed_nodes") as batch:
        batch.add_column(sa.Column("revoked_at", UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("revoked_by", sa.String(64), nullable=True))
    with op.batch_alter_table("fed_jobs") as batch:
        batch.add_column(sa.Column("cancel_requested_at", UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("cancel_requested_by", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("fed_jobs") as batch:
        batch.drop_column("cancel_requested_by")
        batch.drop_column("cancel_requested_at")
    with op.batch_alter_table("fed_nodes") as batch:
        batch.drop_column("revoked_by")
        batch.drop_column("revoked_at")
