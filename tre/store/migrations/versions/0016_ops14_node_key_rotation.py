"""Federation: a node's agent key rotates with an overlap (fed_nodes.previous_public_key,
previous_key_until)

`tre hub node rotate-key` registers a node's new key; the old one is still taken until the
overlap ends, so the node's agent switches (a restart) without a refused request, and the
node keeps its name, children and results. Before this a key changed only by revoking the
node and registering it under a new name.

Revision ID: 0016_ops14_node_key_rotation
Revises: 0015_leaks13_released_aggregates
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from tre.store.base import UTCDateTime

revision: str = "0016_ops14_node_key_rotation"
down_revision: str | None = "0015_leaks13_released_aggregates"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("fed_nodes") as batch:
        batch.add_column(sa.Column("previous_public_key", sa.String(120), nullable=True))
        batch.add_column(sa.Column("previous_key_until", UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("fed_nodes") as batch:
        batch.drop_column("previous_key_until")
        batch.drop_column("previous_public_key")
