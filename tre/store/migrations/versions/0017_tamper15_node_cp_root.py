"""Federation: the root of the largest node checkpoint the hub verified
(fed_nodes.checkpoint_root)

The hub kept only the size of the largest checkpoint of a node's audit log it had verified, so
a second checkpoint of that size with another root (the node's log forked: two histories, one
shown to the hub with one release and another with the next) was taken. The root is kept
beside the size; a checkpoint of the same size must carry it.

Revision ID: 0017_tamper15_node_cp_root
Revises: 0016_ops14_node_key_rotation
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017_tamper15_node_cp_root"
down_revision: str | None = "0016_ops14_node_key_rotation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("fed_nodes") as batch:
        batch.add_column(sa.Column("checkpoint_root", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("fed_nodes") as batch:
        batch.drop_column("checkpoint_root")
