"""Federation: the hub's nodes, federated jobs and their children, released results,
searches, request nonces; a node's project mappings and received children (tre.federation)

Revision ID: 0006_federation
Revises: 0005_tes
Create Date: 2026-11-29 16:49:08.673958
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tre.store.base

revision: str = "0006_federation"
down_revision: str | None = "0005_tes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "fed_node_children",
        sa.Column("child_id", sa.String(length=64), nullable=False),
        sa.Column("fed_job_id", sa.String(length=32), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("local_job_id", sa.String(length=32), nullable=True),
        sa.Column("egress_request_id", sa.String(length=32), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=24), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("reported", sa.String(length=96), nullable=False),
        sa.Column("received_at", tre.store.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("child_id", name=op.f("pk_fed_node_children")),
    )
    with op.batch_alter_table("fed_node_children", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_fed_node_children_local_job_id"), ["local_job_id"], unique=False)

    op.create_table(
        "fed_nodes",
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("public_key", sa.String(length=120), nullable=False),
        sa.Column("audit_key", sa.Text(), nullable=False),
        sa.Column("added_by", sa.String(length=64), nullable=False),
        sa.Column("added_at", tre.store.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", tre.store.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("checkpoint_size", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_fed_nodes")),
    )
    op.create_table(
        "fed_nonces",
        sa.Column("node", sa.String(length=63), nullable=False),
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("seen_at", tre.store.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("node", "nonce", name=op.f("pk_fed_nonces")),
    )
    with op.batch_alter_table("fed_nonces", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_fed_nonces_seen_at"), ["seen_at"], unique=False)

    op.create_table(
        "fed_searches",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("query", sa.JSON(), nullable=False),
        sa.Column("asked_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", tre.store.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fed_searches")),
    )
    op.create_table(
        "fed_jobs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("submitted_by", sa.String(length=64), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("created_at", tre.store.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_fed_jobs_project_id_projects")
        ),
        sa.ForeignKeyConstraint(["submitted_by"], ["users.id"], name=op.f("fk_fed_jobs_submitted_by_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fed_jobs")),
    )
    with op.batch_alter_table("fed_jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_fed_jobs_project_id"), ["project_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_fed_jobs_submitted_by"), ["submitted_by"], unique=False)

    op.create_table(
        "fed_node_projects",
        sa.Column("fed_project", sa.String(length=64), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("dataset_ids", sa.JSON(), nullable=False),
        sa.Column("code_review", sa.Boolean(), nullable=False),
        sa.Column("mapped_by", sa.String(length=64), nullable=False),
        sa.Column("mapped_at", tre.store.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_fed_node_projects_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("fed_project", name=op.f("pk_fed_node_projects")),
    )
    op.create_table(
        "fed_node_code_approvals",
        sa.Column("fed_project", sa.String(length=64), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("approved_by", sa.String(length=64), nullable=False),
        sa.Column("approved_at", tre.store.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["fed_project"],
            ["fed_node_projects.fed_project"],
            name=op.f("fk_fed_node_code_approvals_fed_project_fed_node_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("fed_project", "code_hash", name=op.f("pk_fed_node_code_approvals")),
    )
    op.create_table(
        "fed_project_nodes",
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("node", sa.String(length=63), nullable=False),
        sa.ForeignKeyConstraint(
            ["node"], ["fed_nodes.name"], name=op.f("fk_fed_project_nodes_node_fed_nodes"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_fed_project_nodes_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("project_id", "node", name=op.f("pk_fed_project_nodes")),
    )
    op.create_table(
        "fed_search_answers",
        sa.Column("search_id", sa.String(length=32), nullable=False),
        sa.Column("node", sa.String(length=63), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("answer", sa.JSON(), nullable=True),
        sa.Column("delivered_at", tre.store.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("answered_at", tre.store.base.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["search_id"],
            ["fed_searches.id"],
            name=op.f("fk_fed_search_answers_search_id_fed_searches"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("search_id", "node", name=op.f("pk_fed_search_answers")),
    )
    op.create_table(
        "fed_children",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("node", sa.String(length=63), nullable=False),
        sa.Column("state", sa.String(length=24), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("deliveries", sa.Integer(), nullable=False),
        sa.Column("delivered_at", tre.store.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", tre.store.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("disclosure_record", sa.JSON(), nullable=True),
        sa.Column("checkpoint", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"], ["fed_jobs.id"], name=op.f("fk_fed_children_job_id_fed_jobs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["node"], ["fed_nodes.name"], name=op.f("fk_fed_children_node_fed_nodes")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fed_children")),
        sa.UniqueConstraint("job_id", "node", name=op.f("uq_fed_children_job_id")),
    )
    with op.batch_alter_table("fed_children", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_fed_children_job_id"), ["job_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_fed_children_node"), ["node"], unique=False)
        batch_op.create_index(batch_op.f("ix_fed_children_state"), ["state"], unique=False)

    op.create_table(
        "fed_result_files",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("child_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["child_id"],
            ["fed_children.id"],
            name=op.f("fk_fed_result_files_child_id_fed_children"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fed_result_files")),
        sa.UniqueConstraint("child_id", "name", name=op.f("uq_fed_result_files_child_id")),
    )
    with op.batch_alter_table("fed_result_files", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_fed_result_files_child_id"), ["child_id"], unique=False)

    op.create_table(
        "fed_uploads",
        sa.Column("child_id", sa.String(length=64), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("received_at", tre.store.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["child_id"],
            ["fed_children.id"],
            name=op.f("fk_fed_uploads_child_id_fed_children"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("child_id", "sha256", name=op.f("pk_fed_uploads")),
    )


def downgrade() -> None:
    op.drop_table("fed_uploads")
    with op.batch_alter_table("fed_result_files", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fed_result_files_child_id"))

    op.drop_table("fed_result_files")
    with op.batch_alter_table("fed_children", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fed_children_state"))
        batch_op.drop_index(batch_op.f("ix_fed_children_node"))
        batch_op.drop_index(batch_op.f("ix_fed_children_job_id"))

    op.drop_table("fed_children")
    op.drop_table("fed_search_answers")
    op.drop_table("fed_project_nodes")
    op.drop_table("fed_node_code_approvals")
    op.drop_table("fed_node_projects")
    with op.batch_alter_table("fed_jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fed_jobs_submitted_by"))
        batch_op.drop_index(batch_op.f("ix_fed_jobs_project_id"))

    op.drop_table("fed_jobs")
    op.drop_table("fed_searches")
    with op.batch_alter_table("fed_nonces", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fed_nonces_seen_at"))

    op.drop_table("fed_nonces")
    op.drop_table("fed_nodes")
    with op.batch_alter_table("fed_node_children", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fed_node_children_local_job_id"))

    op.drop_table("fed_node_children")
