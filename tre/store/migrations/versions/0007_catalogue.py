"""Dataset catalogue: condition codes and access rights on datasets, and the cached facts
extracted from each dataset's DICOM headers (tre.catalogue)

Revision ID: 0007_catalogue
Revises: 0006_federation
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from tre.store.base import UTCDateTime

revision: str = "0007_catalogue"
down_revision: str | None = "0006_federation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.add_column(sa.Column("conditions", sa.JSON(), nullable=False, server_default=sa.text("'[]'")))
        batch.add_column(
            sa.Column("access_rights", sa.String(length=16), nullable=False, server_default="NON_PUBLIC")
        )
    op.create_table(
        "dataset_catalogues",
        sa.Column("dataset_id", sa.String(length=64), nullable=False),
        sa.Column("fingerprint", sa.String(length=71), nullable=False),
        sa.Column("extracted_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("checked_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("facts", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["datasets.id"],
            name=op.f("fk_dataset_catalogues_dataset_id_datasets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("dataset_id", name=op.f("pk_dataset_catalogues")),
    )


def downgrade() -> None:
    op.drop_table("dataset_catalogues")
    with op.batch_alter_table("datasets") as batch:
        batch.drop_column("access_rights")
        batch.drop_column("conditions")
