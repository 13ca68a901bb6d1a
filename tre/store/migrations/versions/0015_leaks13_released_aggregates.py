"""Released aggregates (egress_aggregates): the counts each request's files state, marked
released when the DAC approves, so a later request of the same project is compared with them
(differencing across releases, egress_review/checks/released.py)

Revision ID: 0015_leaks13_released_aggregates
Revises: 0014_tes12_federation
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from tre.store.base import UTCDateTime

revision: str = "0015_leaks13_released_aggregates"
down_revision: str | None = "0014_tes12_federation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "egress_aggregates",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "request_id",
            sa.String(32),
            sa.ForeignKey("egress_requests.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("project_id", sa.String(64), sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("threshold", sa.Integer(), nullable=False),
        sa.Column("released_at", UTCDateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("request_id", "key", name="uq_egress_aggregates_request_key"),
    )
    op.create_index("ix_egress_aggregates_request_id", "egress_aggregates", ["request_id"])
    op.create_index(
        "ix_egress_aggregates_project_released", "egress_aggregates", ["project_id", "released_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_egress_aggregates_project_released", table_name="egress_aggregates")
    op.drop_index("ix_egress_aggregates_request_id", table_name="egress_aggregates")
    op.drop_table("egress_aggregates")
