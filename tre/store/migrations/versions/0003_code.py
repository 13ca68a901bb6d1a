"""code submission: code archives, their uploads per project, jobs.code_hash, code quota

Revision ID: 0003_code
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tre.store.base

revision: str = "0003_code"
down_revision: str | None = "0002_images"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "code_archives",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("unpacked_bytes", sa.BigInteger(), nullable=False),
        sa.Column("entry_count", sa.Integer(), nullable=False),
        sa.Column("created_at", tre.store.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_code_archives")),
    )
    op.create_table(
        "code_uploads",
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("uploaded_by", sa.String(length=64), nullable=False),
        sa.Column("uploaded_at", tre.store.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_code_uploads_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["sha256"], ["code_archives.sha256"], name=op.f("fk_code_uploads_sha256_code_archives")
        ),
        sa.PrimaryKeyConstraint("project_id", "sha256", name=op.f("pk_code_uploads")),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("code_hash", sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f("ix_jobs_code_hash"), ["code_hash"], unique=False)
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.add_column(sa.Column("max_code_mb", sa.Integer(), server_default="50", nullable=False))
        batch_op.add_column(sa.Column("max_code_files", sa.Integer(), server_default="10000", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.drop_column("max_code_files")
        batch_op.drop_column("max_code_mb")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jobs_code_hash"))
        batch_op.drop_column("code_hash")
    op.drop_table("code_uploads")
    op.drop_table("code_archives")
