"""Federation tables (tre.federation): the hub's and a node's side, in one metadata.

A hub and a node are both full tre deployments with their own database; a hub fills the
``fed_*`` hub tables, a node the ``fed_node_*`` tables. Keeping them on the platform's one
``Base.metadata`` keeps one migration chain (0006_federation).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tre.store.base import Base, UTCDateTime, new_id, utcnow

# -- hub side ------------------------------------------------------------------------------


class FedNode(Base):
    """A data holder registered at the hub by the hub's admin: its agent's Ed25519 key (it
    signs every request) and its audit log's verifier key (it signs the checkpoints the node
    sends with released results)."""

    __tablename__ = "fed_nodes"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    public_key: Mapped[str] = mapped_column(String(120))
    audit_key: Mapped[str] = mapped_column(Text)
    added_by: Mapped[str] = mapped_column(String(64))
    added_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The largest tree size of the node's audit log the hub has verified a checkpoint for: a
    # later release must not come with a smaller one (the node's log cannot shrink).
    checkpoint_size: Mapped[int] = mapped_column(BigInteger, default=0)
    # Its root (hex): another checkpoint of that size must have it, else the log forked.
    checkpoint_root: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Set by `tre hub node revoke`: from then on every request signed by the node is refused.
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Set by `tre hub node rotate-key`: the key replaced, still taken until the overlap ends.
    previous_public_key: Mapped[str | None] = mapped_column(String(120), nullable=True)
    previous_key_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class FedProjectNode(Base):
    """Which nodes a federated project (a hub ``projects`` row) spans."""

    __tablename__ = "fed_project_nodes"

    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    node: Mapped[str] = mapped_column(ForeignKey("fed_nodes.name", ondelete="CASCADE"), primary_key=True)


class FedJob(Base):
    """One submission at the hub: it fans out into one `FedChild` per node of its project."""

    __tablename__ = "fed_jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"), index=True)
    submitted_by: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    # The job body each node receives (tre.federation.wire.ChildSpec without the ids).
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Set when the submitter (or an admin) cancels it: each node still running its child is
    # told so with its next poll (`Work.cancels`).
    cancel_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    cancel_requested_by: Mapped[str | None] = mapped_column(String(64), nullable=True)


class FedChild(Base):
    """The part of a federated job one node runs. ``id`` is derived from the parent's id and
    the node's name (tre.federation.wire.child_id), so a retried delivery is the same child."""

    __tablename__ = "fed_children"
    __table_args__ = (UniqueConstraint("job_id", "node"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("fed_jobs.id", ondelete="CASCADE"), index=True)
    node: Mapped[str] = mapped_column(ForeignKey("fed_nodes.name"), index=True)
    # tre.federation.vocabulary.ChildState; ``pending`` until the node acknowledges it.
    state: Mapped[str] = mapped_column(String(24), default="pending", index=True)
    reason: Mapped[str] = mapped_column(String(64), default="")
    deliveries: Mapped[int] = mapped_column(Integer, default=0)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # What the node sent with its released files: its disclosure record and the signed
    # audit checkpoint (a C2SP note) that was verified against the node's registered key.
    disclosure_record: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    checkpoint: Mapped[str | None] = mapped_column(Text, nullable=True)


class FedUpload(Base):
    """A file a node uploaded for a child, stored by SHA-256 once its bytes matched it."""

    __tablename__ = "fed_uploads"

    child_id: Mapped[str] = mapped_column(ForeignKey("fed_children.id", ondelete="CASCADE"), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class FedResultFile(Base):
    """A released file of a child, as the node's DAC released it (name as the researcher sees it)."""

    __tablename__ = "fed_result_files"
    __table_args__ = (UniqueConstraint("child_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    child_id: Mapped[str] = mapped_column(ForeignKey("fed_children.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)


class FedNonce(Base):
    """Request nonces seen from each node within the signature window: a replay is refused."""

    __tablename__ = "fed_nonces"

    node: Mapped[str] = mapped_column(String(63), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class FedSearch(Base):
    """A researcher's count query, fanned out to every registered node."""

    __tablename__ = "fed_searches"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    query: Mapped[dict[str, Any]] = mapped_column(JSON)
    asked_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class FedSearchAnswer(Base):
    """One node's answer to a search: counts only (``pending`` until it answers)."""

    __tablename__ = "fed_search_answers"

    search_id: Mapped[str] = mapped_column(
        ForeignKey("fed_searches.id", ondelete="CASCADE"), primary_key=True
    )
    node: Mapped[str] = mapped_column(String(63), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    answer: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


# -- node side -----------------------------------------------------------------------------


class FedNodeProject(Base):
    """A node admin's decision: federated project ``fed_project`` runs here as local
    project ``project_id`` on these datasets (the local grants still apply)."""

    __tablename__ = "fed_node_projects"

    fed_project: Mapped[str] = mapped_column(String(64), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    dataset_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Site policy: when set, a child runs only code whose SHA-256 this node's admin approved
    # for the project (`FedNodeCodeApproval`), on top of the image approval every child needs.
    code_review: Mapped[bool] = mapped_column(Boolean, default=False)
    mapped_by: Mapped[str] = mapped_column(String(64))
    mapped_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class FedNodeCodeApproval(Base):
    """A node admin's approval of one code archive (by SHA-256) for a federated project."""

    __tablename__ = "fed_node_code_approvals"

    fed_project: Mapped[str] = mapped_column(
        ForeignKey("fed_node_projects.fed_project", ondelete="CASCADE"), primary_key=True
    )
    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    approved_by: Mapped[str] = mapped_column(String(64))
    approved_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class FedNodeChild(Base):
    """The agent's persistent record of a child job it received: survives restarts, so a
    redelivered child never makes a second local job and unreported states are sent later."""

    __tablename__ = "fed_node_children"

    child_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    fed_job_id: Mapped[str] = mapped_column(String(32))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    local_job_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    egress_request_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(24), default="queued")
    reason: Mapped[str] = mapped_column(String(64), default="")
    # The (state, reason) the hub last acknowledged; differs from the above until sent.
    reported: Mapped[str] = mapped_column(String(96), default="")
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
