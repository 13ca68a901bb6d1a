"""Indexes for newest-first job listings: (project_id, created_at, id) and (created_at, id)

Revision ID: 0008_job_listing_indexes
Revises: 0007_catalogue
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008_job_listing_indexes"
down_revision: str | None = "0007_catalogue"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_jobs_project_created", "jobs", ["project_id", "created_at", "id"])
    op.create_index("ix_jobs_created", "jobs", ["created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_jobs_created", table_name="jobs")
    op.drop_index("ix_jobs_project_created", table_name="jobs")
