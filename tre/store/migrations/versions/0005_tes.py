"""GA4GH TES front end: the TES document of each task submitted through /ga4gh/tes/v1

Revision ID: 0005_tes
Revises: 0004_access
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_tes"
down_revision: str | None = "0004_access"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tes_tasks",
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("outputs", sa.JSON(), nullable=False),
        sa.Column("executors", sa.JSON(), nullable=False),
        sa.Column("resources", sa.JSON(), nullable=True),
        sa.Column("volumes", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_tes_tasks_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_tes_tasks")),
    )
    op.create_index(op.f("ix_tes_tasks_name"), "tes_tasks", ["name"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_tes_tasks_name"), table_name="tes_tasks")
    op.drop_table("tes_tasks")
