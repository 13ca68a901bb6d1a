"""Index job outputs in index order: (job_id, sha256, id)

A job's outputs are listed, paged and named (``#index``, ``sha256:``) in the order of their
hash; a cohort job records tens of thousands, so each page or lookup is an index range scan.

Revision ID: 0010_outputs_scale
Revises: 0009_job_inputs
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010_outputs_scale"
down_revision: str | None = "0009_job_inputs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_job_outputs_job_sha256", "job_outputs", ["job_id", "sha256", "id"])


def downgrade() -> None:
    op.drop_index("ix_job_outputs_job_sha256", table_name="job_outputs")
