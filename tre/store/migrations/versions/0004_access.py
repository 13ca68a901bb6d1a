"""log budgets: screened log bytes shown per job and per project per day

Revision ID: 0004_access
Revises: 0003_code
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_access"
down_revision: str | None = "0003_code"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "log_reveals",
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("revealed_to", sa.BigInteger(), nullable=False),
        sa.Column("shown_bytes", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_log_reveals_job_id_jobs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_log_reveals")),
    )
    op.create_table(
        "log_budget_days",
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("shown_bytes", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_log_budget_days_project_id_projects"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("project_id", "day", name=op.f("pk_log_budget_days")),
    )


def downgrade() -> None:
    op.drop_table("log_budget_days")
    op.drop_table("log_reveals")
