"""Image imports per importer: who sent an image, under which name, when

The image store is shared and content-addressed; ``images.imported_by`` named only the first
importer, and a second researcher sending the same bytes was shown that person. One row per
importer keeps each their own record and is what the per-user image quota counts. Existing
images get the row of their first importer. ``images.files`` (layer entries, each an inode
once unpacked) lets the quota bound inodes too; images imported before count 0.

Revision ID: 0012_image_imports
Revises: 0011_revoked_tokens
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tre.store.base

revision: str = "0012_image_imports"
down_revision: str | None = "0011_revoked_tokens"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "image_imports",
        sa.Column("digest", sa.String(length=71), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("imported_at", tre.store.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["digest"], ["images.digest"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("digest", "user_id"),
    )
    op.create_index("ix_image_imports_user_id", "image_imports", ["user_id"])
    op.add_column("images", sa.Column("files", sa.Integer(), server_default="0", nullable=False))
    op.execute(
        "INSERT INTO image_imports (digest, user_id, name, imported_at) "
        "SELECT digest, imported_by, name, imported_at FROM images"
    )


def downgrade() -> None:
    with op.batch_alter_table("images") as batch:
        batch.drop_column("files")
    op.drop_index("ix_image_imports_user_id", table_name="image_imports")
    op.drop_table("image_imports")
