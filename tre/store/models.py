"""The platform's entities. One module so Alembic sees one metadata.

Egress review and audit tables live here too: they share the transaction boundaries of the
jobs they describe, and keeping one ``Base.metadata`` keeps one migration chain.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from tre.states import EgressState, JobState, ReviewStage
from tre.store.base import Base, UTCDateTime, new_id, utcnow

__all__ = ["JobState", "EgressState", "ReviewStage"]  # the states live in tre.states


class Role(StrEnum):
    researcher = "researcher"
    dac = "dac"
    auditor = "auditor"
    admin = "admin"


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Tokens issued before this moment are refused (`tre.auth.generation`): set when the row
    # is made and again when a disabled user is enabled, so neither a user deleted and made
    # again under the same name nor an enable revives tokens of before. NULL (rows made by
    # hand): ``created_at`` is the bound.
    tokens_valid_from: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, default=utcnow)

    roles: Mapped[list[UserRole]] = relationship(back_populates="user", cascade="all, delete-orphan")

    @property
    def role_names(self) -> set[str]:
        return {r.role for r in self.roles}


class UserRole(Base):
    __tablename__ = "user_roles"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    role: Mapped[str] = mapped_column(String(32), primary_key=True)

    user: Mapped[User] = relationship(back_populates="roles")


class RevokedToken(Base):
    """A bearer token signed out before its expiry (panel sign-out, ``tre logout``).

    Keyed by the SHA-256 of the token, not its ``jti``: an OpenID provider's access token
    need not carry one. Kept until the token would have expired anyway (then it is refused
    for that reason), so the table holds only live sign-outs.
    """

    __tablename__ = "revoked_tokens"

    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    revoked_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Quota: the most a single job may ask for, and how many may run at once.
    max_cpu: Mapped[float] = mapped_column(default=2.0)
    max_memory_mb: Mapped[int] = mapped_column(Integer, default=4096)
    max_gpu: Mapped[int] = mapped_column(Integer, default=0)
    max_time_s: Mapped[int] = mapped_column(Integer, default=3600)
    max_output_mb: Mapped[int] = mapped_column(Integer, default=1024)
    max_concurrent_jobs: Mapped[int] = mapped_column(Integer, default=4)
    # Code quota: the most a job's code archive may hold (archive bytes and unpacked bytes,
    # and entries); see tre/code/archive.py.
    max_code_mb: Mapped[int] = mapped_column(Integer, default=50, server_default="50")
    max_code_files: Mapped[int] = mapped_column(Integer, default=10_000, server_default="10000")

    members: Mapped[list[ProjectMember]] = relationship(
        back_populates="project", cascade="all, delete-orphan"
    )


class ProjectMember(Base):
    __tablename__ = "project_members"

    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    added_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    project: Mapped[Project] = relationship(back_populates="members")


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    path: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, default="")
    policy: Mapped[str] = mapped_column(String(128), default="default")
    # Summary of the DICOM content (modalities, series, file count, bytes) gathered at registration.
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Catalogue description set by the admin (tre.catalogue): condition codes such as
    # "icd10:C34", and the EU access-right class (NON_PUBLIC, RESTRICTED or PUBLIC).
    conditions: Mapped[list[str]] = mapped_column(JSON, default=list)
    access_rights: Mapped[str] = mapped_column(String(16), default="NON_PUBLIC")


class DatasetReviewer(Base):
    """A DAC member on a dataset's committee (`tre.committees`): they review, and see, only the
    egress requests of jobs governed by a dataset whose committee they sit on."""

    __tablename__ = "dataset_reviewers"

    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    assigned_by: Mapped[str] = mapped_column(String(64))
    assigned_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DatasetCatalogue(Base):
    """The catalogue facts extracted from a dataset's DICOM headers (tre.catalogue.extract),
    kept so that count queries never read the data; rebuilt when the folder's fingerprint
    (paths, sizes, modification times) changes. Holds no identifiers: subjects and studies
    are numbered, not named."""

    __tablename__ = "dataset_catalogues"

    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(71))
    extracted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    checked_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    facts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class AccessGrant(Base):
    __tablename__ = "access_grants"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    granted_by: Mapped[str] = mapped_column(String(64))
    granted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")

    def active_at(self, when: datetime) -> bool:
        return self.revoked_at is None and self.expires_at > when


class Job(Base):
    __tablename__ = "jobs"
    # Listings are newest first, a page at a time: with these an ordered index scan stops
    # after the page, instead of sorting every visible job on each read (docs/api-load.md).
    __table_args__ = (
        Index("ix_jobs_project_created", "project_id", "created_at", "id"),
        Index("ix_jobs_created", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"), index=True)
    submitted_by: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    image: Mapped[str] = mapped_column(String(512))
    command: Mapped[list[str]] = mapped_column(JSON)
    dataset_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    cpu: Mapped[float] = mapped_column(default=1.0)
    memory_mb: Mapped[int] = mapped_column(Integer, default=1024)
    gpu: Mapped[int] = mapped_column(Integer, default=0)
    time_limit_s: Mapped[int] = mapped_column(Integer, default=600)
    output_limit_mb: Mapped[int] = mapped_column(Integer, default=256)
    max_processes: Mapped[int] = mapped_column(Integer, default=256)
    executor: Mapped[str] = mapped_column(String(32), default="local")
    # SHA-256 of the code archive the job ran (mounted read-only at /code), if any.
    code_hash: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    state: Mapped[str] = mapped_column(String(16), default=JobState.queued.value, index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Which worker holds the job and when it last said so: lets a restarted worker find orphans.
    worker_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # A secret the worker running the job draws when it claims or takes it over, kept here and
    # in its memory only: it seals the end it keeps on disk while the database is away
    # (`tre.jobs.end_spool`), so a file written into the spool by anyone else is not its end.
    # Never shown by the API or written to the audit log.
    end_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    executor_ref: Mapped[str | None] = mapped_column(String(256), nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    outputs: Mapped[list[JobOutput]] = relationship(back_populates="job", cascade="all, delete-orphan")
    # The earlier jobs whose outputs this job reads at /inputs/<id>, and every dataset those
    # outputs derive from (tre.jobs.lineage): written once at admission, never recomputed.
    input_links: Mapped[list[JobInput]] = relationship(
        foreign_keys="JobInput.job_id", order_by="JobInput.position", cascade="all, delete-orphan"
    )
    lineage_links: Mapped[list[JobLineageDataset]] = relationship(
        order_by="JobLineageDataset.dataset_id", cascade="all, delete-orphan"
    )

    @property
    def input_job_ids(self) -> list[str]:
        return [link.input_job_id for link in self.input_links]

    @property
    def lineage_dataset_ids(self) -> list[str]:
        """The datasets the job's inputs derive from (not those it reads directly)."""
        return [link.dataset_id for link in self.lineage_links]

    @property
    def governing_dataset_ids(self) -> list[str]:
        """Every dataset whose grant and policy govern this job's outputs: the ones it reads
        at /data and the ones its inputs derive from, sorted, each once."""
        return sorted({*(self.dataset_ids or []), *self.lineage_dataset_ids})


class JobInput(Base):
    """An earlier job of the same project whose outputs a job reads (read-only, /inputs/<id>)."""

    __tablename__ = "job_inputs"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    input_job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), primary_key=True, index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)


class JobLineageDataset(Base):
    """A dataset a job's inputs derive from (their datasets and, transitively, their inputs'),
    fixed at admission: the grants and policies of these govern the job's outputs too."""

    __tablename__ = "job_lineage_datasets"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"), primary_key=True, index=True)


class JobOutput(Base):
    __tablename__ = "job_outputs"
    # Outputs are listed, paged and named by index in hash order: a range scan of this index
    # for a cohort job's tens of thousands of outputs (tre.api.routers.jobs, egress_review.outputnames).
    __table_args__ = (
        UniqueConstraint("job_id", "path"),
        Index("ix_job_outputs_job_sha256", "job_id", "sha256", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(String(1024))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    job: Mapped[Job] = relationship(back_populates="outputs")


class CodeArchive(Base):
    """A code archive accepted once, stored by the SHA-256 of its bytes (tre/code/store.py)."""

    __tablename__ = "code_archives"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    unpacked_bytes: Mapped[int] = mapped_column(BigInteger)
    entry_count: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CodeUpload(Base):
    """Which project uploaded which archive: a job may only reference its own project's code."""

    __tablename__ = "code_uploads"

    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    sha256: Mapped[str] = mapped_column(ForeignKey("code_archives.sha256"), primary_key=True)
    uploaded_by: Mapped[str] = mapped_column(String(64))
    uploaded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class EgressRequest(Base):
    __tablename__ = "egress_requests"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"), index=True)
    requested_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    justification: Mapped[str] = mapped_column(Text)
    # An EgressState; its moves are tre.states.EGRESS_TRANSITIONS.
    state: Mapped[str] = mapped_column(String(24), default=EgressState.checking.value, index=True)
    policy_name: Mapped[str] = mapped_column(String(128), default="default")
    policy_version: Mapped[str] = mapped_column(String(64), default="")
    required_reviews: Mapped[int] = mapped_column(Integer, default=2)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    disclosure_record: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    files: Mapped[list[EgressFile]] = relationship(back_populates="request", cascade="all, delete-orphan")
    reviews: Mapped[list[Review]] = relationship(back_populates="request", cascade="all, delete-orphan")
    dataset_links: Mapped[list[EgressRequestDataset]] = relationship(
        order_by="EgressRequestDataset.dataset_id", cascade="all, delete-orphan"
    )

    @property
    def dataset_ids(self) -> list[str]:
        """The datasets governing the request's job when it was made (read directly and
        through its inputs): each one's committee must reach the quorum (`tre.committees`)."""
        return [link.dataset_id for link in self.dataset_links]


class EgressRequestDataset(Base):
    """A dataset governing an egress request, fixed when it is made: which committees review
    it and who may see it (an SQL filter for the DAC's queue, not a JSON scan of jobs)."""

    __tablename__ = "egress_request_datasets"

    request_id: Mapped[str] = mapped_column(
        ForeignKey("egress_requests.id", ondelete="CASCADE"), primary_key=True
    )
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"), primary_key=True, index=True)


class EgressFile(Base):
    __tablename__ = "egress_files"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("egress_requests.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(String(1024))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    staged_path: Mapped[str] = mapped_column(Text)
    # Worst outcome over the checks run on this file: pass | flag | block.
    outcome: Mapped[str] = mapped_column(String(8), default="pass")
    checks: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)

    request: Mapped[EgressRequest] = relationship(back_populates="files")


class EgressAggregate(Base):
    """A count one request's file states (`egress_review.checks.released`), kept per project so
    later requests are compared with what was released (differencing across releases).

    ``released_at`` is set, under the project's lock, when the DAC approves the request; rows of
    requests never released only serve the approval-time re-check. Keys are normalised column
    names and row labels, read by the checks only, never shown to a researcher."""

    __tablename__ = "egress_aggregates"
    __table_args__ = (
        UniqueConstraint("request_id", "key", name="uq_egress_aggregates_request_key"),
        Index("ix_egress_aggregates_project_released", "project_id", "released_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("egress_requests.id", ondelete="CASCADE"), index=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"))
    key: Mapped[str] = mapped_column(String(200))
    value: Mapped[float] = mapped_column(Float)
    # the largest small-cell threshold of the request's policies: the approval-time re-check's
    threshold: Mapped[int] = mapped_column(Integer, default=10)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Review(Base):
    __tablename__ = "reviews"
    __table_args__ = (UniqueConstraint("request_id", "reviewer_id", "stage"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("egress_requests.id", ondelete="CASCADE"), index=True)
    reviewer_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    # A ReviewStage: the blinded votes, or the decision on a conflicted request.
    stage: Mapped[str] = mapped_column(String(16), default=ReviewStage.review.value)
    vote: Mapped[str] = mapped_column(String(8))
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    request: Mapped[EgressRequest] = relationship(back_populates="reviews")


class AuditEntry(Base):
    """One leaf of the audit Merkle tree; ``idx`` is the leaf index (0-based, dense)."""

    __tablename__ = "audit_entries"

    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(64), index=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    project_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    dataset_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    job_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    # The canonical JSON bytes that were hashed; the columns above are a search index over it.
    body: Mapped[str] = mapped_column(Text)
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class AuditCheckpoint(Base):
    __tablename__ = "audit_checkpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tree_size: Mapped[int] = mapped_column(BigInteger, index=True)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    note: Mapped[str] = mapped_column(Text)


class AuditState(Base):
    """Single row: the tree size and right-edge subtree hashes, so appends cost O(log n)."""

    __tablename__ = "audit_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tree_size: Mapped[int] = mapped_column(BigInteger, default=0)
    frontier: Mapped[list[str]] = mapped_column(JSON, default=list)


class AuditSpoolBatch(Base):
    """A batch of refusal entries kept on disk (`tre.audit.refusal_spool`) and written to the
    log, by the SHA-256 of its entries: the same batch found again (a copy put back in the
    spool, or a crash between the write and the file's removal) is not written twice."""

    __tablename__ = "audit_spool_batches"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    written_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LogReveal(Base):
    """How much of a job's screened log researchers have been shown: lines ending before
    ``revealed_to`` (a raw byte offset) were charged to the project's daily log budget."""

    __tablename__ = "log_reveals"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    revealed_to: Mapped[int] = mapped_column(BigInteger, default=0)
    shown_bytes: Mapped[int] = mapped_column(BigInteger, default=0)


class LogBudgetDay(Base):
    """Screened log bytes shown to a project's researchers on one UTC day (``YYYY-MM-DD``)."""

    __tablename__ = "log_budget_days"

    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)
    shown_bytes: Mapped[int] = mapped_column(BigInteger, default=0)


class Image(Base):
    """A researcher's container image, imported and verified; content-addressed by the
    digest of its OCI manifest (``sha256:<hex>``), which is also its identity on a registry."""

    __tablename__ = "images"

    digest: Mapped[str] = mapped_column(String(71), primary_key=True)
    # Repository path without the registry host (e.g. ``alice/segmenter``).
    name: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)  # bytes of manifest, config and layer blobs
    unpacked_size: Mapped[int] = mapped_column(BigInteger, default=0)
    layers: Mapped[int] = mapped_column(Integer)
    # Entries of its layers: what the unpacked root costs in inodes (the per-user file quota).
    files: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created: Mapped[str] = mapped_column(String(64), default="")  # the image config's own claim
    # Env/Entrypoint/Cmd/WorkingDir/User from the image config (tre.executors.base.ImageConfig).
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    source_format: Mapped[str] = mapped_column(String(32))
    imported_by: Mapped[str] = mapped_column(String(64))
    imported_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ImageImport(Base):
    """Who imported an image, under which name, when: one row per importer. The image store is
    content-addressed and shared, so a second researcher sending the same bytes gets their own
    row (their name, their time) and never learns who sent them first; each importer's rows
    are what their image quota counts (`Settings.image_max_store_mb_per_user`)."""

    __tablename__ = "image_imports"

    digest: Mapped[str] = mapped_column(ForeignKey("images.digest", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)
    name: Mapped[str] = mapped_column(String(255))
    imported_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ImageApproval(Base):
    """An admin's decision that a project may run an image (ingress review). ``digest`` is not
    a foreign key: an admin may also approve an image that lives only on the registry the
    cluster pulls from (Kubernetes), by its digest-pinned reference."""

    __tablename__ = "image_approvals"
    __table_args__ = (UniqueConstraint("project_id", "digest"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    digest: Mapped[str] = mapped_column(String(71), index=True)
    reference: Mapped[str] = mapped_column(String(512))
    approved_by: Mapped[str] = mapped_column(String(64))
    approved_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class TesTask(Base):
    """What a GA4GH TES client sent for a task that became a tre job (tre.tes).

    The job row holds what runs; this row keeps the TES document's own fields (name, tags,
    the declared inputs and outputs, the executor as written) so the task reads back as it
    was sent, and so listing can filter by name and tags.
    """

    __tablename__ = "tes_tasks"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(256), default="", index=True)
    description: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    inputs: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    outputs: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    executors: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    resources: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    volumes: Mapped[list[str]] = mapped_column(JSON, default=list)
