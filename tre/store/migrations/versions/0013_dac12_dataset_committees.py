"""Per-dataset DAC committees, and the datasets each egress request is reviewed under

Until now every DAC member reviewed every dataset's requests. ``dataset_reviewers`` names the
committee of each dataset; ``egress_request_datasets`` fixes, per request, the datasets that
governed its job (read directly or through its inputs) when it was made.

Upgrade path (docs/egress.md, "Committees"): so that nothing changes for a running
deployment on the day it upgrades, every user then holding the ``dac`` role is put on the
committee of every dataset then registered (``assigned_by`` = ``migration-0013``); the admin
then narrows each committee with ``tre admin dac unassign``. Datasets registered later start
with an empty committee (deny by default). Existing requests get their job's datasets.

Revision ID: 0013_dac12_dataset_committees
Revises: 0012_image_imports
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from tre.store.base import UTCDateTime, utcnow

revision: str = "0013_dac12_dataset_committees"
down_revision: str | None = "0012_image_imports"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MIGRATION_ACTOR = "migration-0013"


def upgrade() -> None:
    op.create_table(
        "dataset_reviewers",
        sa.Column("dataset_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("assigned_by", sa.String(length=64), nullable=False),
        sa.Column("assigned_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name=op.f("fk_dataset_reviewers_dataset_id_datasets"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_dataset_reviewers_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("dataset_id", "user_id", name=op.f("pk_dataset_reviewers")),
    )
    op.create_index(op.f("ix_dataset_reviewers_user_id"), "dataset_reviewers", ["user_id"])
    op.create_table(
        "egress_request_datasets",
        sa.Column("request_id", sa.String(length=32), nullable=False),
        sa.Column("dataset_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["egress_requests.id"],
            name=op.f("fk_egress_request_datasets_request_id_egress_requests"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name=op.f("fk_egress_request_datasets_dataset_id_datasets")
        ),
        sa.PrimaryKeyConstraint("request_id", "dataset_id", name=op.f("pk_egress_request_datasets")),
    )
    op.create_index(op.f("ix_egress_request_datasets_dataset_id"), "egress_request_datasets", ["dataset_id"])

    bind = op.get_bind()
    datasets = {row[0] for row in bind.execute(sa.text("SELECT id FROM datasets"))}
    reviewers = sorted({row[0] for row in bind.execute(sa.text("SELECT user_id FROM user_roles WHERE role = 'dac'"))})
    now = utcnow()
    committee = sa.table(
        "dataset_reviewers",
        sa.column("dataset_id", sa.String),
        sa.column("user_id", sa.String),
        sa.column("assigned_by", sa.String),
        sa.column("assigned_at", UTCDateTime(timezone=True)),
    )
    rows = [
        {"dataset_id": d, "user_id": u, "assigned_by": MIGRATION_ACTOR, "assigned_at": now}
        for d in sorted(datasets)
        for u in reviewers
    ]
    if rows:
        op.bulk_insert(committee, rows)

    jobs = sa.table("jobs", sa.column("id", sa.String), sa.column("dataset_ids", sa.JSON))
    requests = sa.table("egress_requests", sa.column("id", sa.String), sa.column("job_id", sa.String))
    lineage: dict[str, set[str]] = {}
    for job_id, dataset_id in bind.execute(sa.text("SELECT job_id, dataset_id FROM job_lineage_datasets")):
        lineage.setdefault(job_id, set()).add(dataset_id)
    links = []
    query = sa.select(requests.c.id, requests.c.job_id, jobs.c.dataset_ids).join(jobs, jobs.c.id == requests.c.job_id)
    for request_id, job_id, dataset_ids in bind.execute(query):
        for dataset_id in sorted({*(dataset_ids or []), *lineage.get(job_id, set())} & datasets):
            links.append({"request_id": request_id, "dataset_id": dataset_id})
    if links:
        op.bulk_insert(
            sa.table("egress_request_datasets", sa.column("request_id", sa.String), sa.column("dataset_id", sa.String)),
            links,
        )


def downgrade() -> None:
    op.drop_index(op.f("ix_egress_request_datasets_dataset_id"), table_name="egress_request_datasets")
    op.drop_table("egress_request_datasets")
    op.drop_index(op.f("ix_dataset_reviewers_user_id"), table_name="dataset_reviewers")
    op.drop_table("dataset_reviewers")
