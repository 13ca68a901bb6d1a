"""Job inputs: the earlier jobs a job reads, and the datasets their outputs derive from

Revision ID: 0009_job_inputs
Revises: 0008_job_listing_indexes
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_job_inputs"
down_revision: str | None = "0008_job_listing_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "job_inputs",
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("input_job_id", sa.String(length=32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["input_job_id"], ["jobs.id"]),
        sa.PrimaryKeyConstraint("job_id", "input_job_id"),
    )
    op.create_index("ix_job_inputs_input_job_id", "job_inputs", ["input_job_id"])
    op.create_table(
        "job_lineage_datasets",
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("dataset_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"]),
        sa.PrimaryKeyConstraint("job_id", "dataset_id"),
    )
    op.create_index("ix_job_lineage_datasets_dataset_id", "job_lineage_datasets", ["dataset_id"])


def downgrade() -> None:
    op.drop_index("ix_job_lineage_datasets_dataset_id", table_name="job_lineage_datasets")
    op.drop_table("job_lineage_datasets")
    op.drop_index("ix_job_inputs_input_job_id", table_name="job_inputs")
    op.drop_table("job_inputs")
