"""Pydantic request/response models of the core API (jobs, projects, datasets, users)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from tre.api.bounds import (
    MAX_CPU,
    MAX_GPU,
    MAX_GRANT_DAYS,
    MAX_JOBS,
    MAX_MEMORY_MB,
    MAX_OUTPUT_MB,
    MAX_TEXT_CHARS,
    MAX_TIME_S,
    unsafe_text,
)
from tre.catalogue.vocabulary import CONDITION_PATTERN, normalise_condition
from tre.jobs.admission import MAX_COMMAND_ARG_CHARS, MAX_COMMAND_ARGS, MAX_COMMAND_CHARS
from tre.jobs.lineage import MAX_INPUT_JOBS

# Rules the services enforce, stated in the schema so generated clients know them up front
# (`tre.registry.check_slug`, `tre.store.models.Role`, `tre.images.reference`).
SLUG_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"
IMAGE_REF_PATTERN = r"^(\S[^\n]*@)?sha256:[0-9a-f]{64}$"


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class In(BaseModel):
    """Base of every request body: unknown keys, non-finite numbers and text the store cannot
    hold (NUL bytes, lone surrogates) are refused with a 422 before any handler runs."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @model_validator(mode="after")
    def _storable_text(self) -> In:
        for name in type(self).model_fields:
            why = unsafe_text(getattr(self, name))
            if why:
                raise ValueError(f"{name}: {why}")
        return self


class MeOut(BaseModel):
    user_id: str
    roles: list[str]
    projects: list[str]


Role = Literal["researcher", "dac", "auditor", "admin"]


class UserIn(In):
    id: str = Field(min_length=1, max_length=63, pattern=SLUG_PATTERN)
    roles: list[Role] = Field(min_length=1, max_length=8)
    display_name: str = Field(default="", max_length=200)
    email: str | None = Field(default=None, max_length=320)


class UserRolesIn(In):
    roles: list[Role] = Field(max_length=8)


class UserOut(Out):
    id: str
    display_name: str
    disabled: bool
    roles: list[str]


class QuotaIn(In):
    max_cpu: float | None = Field(default=None, gt=0, le=MAX_CPU)
    max_memory_mb: int | None = Field(default=None, gt=0, le=MAX_MEMORY_MB)
    max_gpu: int | None = Field(default=None, ge=0, le=MAX_GPU)
    max_time_s: int | None = Field(default=None, gt=0, le=MAX_TIME_S)
    max_output_mb: int | None = Field(default=None, gt=0, le=MAX_OUTPUT_MB)
    max_concurrent_jobs: int | None = Field(default=None, gt=0, le=MAX_JOBS)
    # Code archives: bytes (archive and unpacked) and entries; 1 GiB is the upload ceiling.
    max_code_mb: int | None = Field(default=None, gt=0, le=1024)
    max_code_files: int | None = Field(default=None, gt=0, le=1_000_000)


class ProjectIn(In):
    id: str = Field(min_length=1, max_length=63, pattern=SLUG_PATTERN)
    name: str = Field(default="", max_length=200)
    description: str = Field(default="", max_length=MAX_TEXT_CHARS)
    quota: QuotaIn = Field(default_factory=QuotaIn)


class ProjectOut(Out):
    id: str
    name: str
    description: str
    max_cpu: float
    max_memory_mb: int
    max_gpu: int
    max_time_s: int
    max_output_mb: int
    max_concurrent_jobs: int
    max_code_mb: int
    max_code_files: int
    members: list[str] = []


class MemberIn(In):
    user_id: str = Field(min_length=1, max_length=63, pattern=SLUG_PATTERN)


ABSOLUTE_PATH_PATTERN = r"^/"


class DatasetIn(In):
    id: str = Field(min_length=1, max_length=63, pattern=SLUG_PATTERN)
    # Absolute only: a relative path would be resolved against wherever the server was
    # started, and the refusal would then name the server's working directory.
    path: str = Field(
        min_length=1,
        max_length=4096,
        pattern=ABSOLUTE_PATH_PATTERN,
        description="The folder's absolute path on the server (the CLI resolves a relative one).",
    )
    name: str = Field(default="", max_length=200)
    description: str = Field(default="", max_length=MAX_TEXT_CHARS)
    policy: str = Field(default="default", min_length=1, max_length=128)
    conditions: list[
        Annotated[str, Field(min_length=1, max_length=64, json_schema_extra={"pattern": CONDITION_PATTERN})]
    ] = Field(
        default_factory=list,
        max_length=32,
        description="Condition codes SYSTEM:CODE (icd10, snomed, orpha) for the catalogue, e.g. icd10:C34.",
    )
    access_rights: Literal["PUBLIC", "RESTRICTED", "NON_PUBLIC"] = Field(
        default="NON_PUBLIC", description="EU access-right class shown in the catalogue."
    )

    @field_validator("conditions")
    @classmethod
    def _conditions_are_codes(cls, value: list[str]) -> list[str]:
        return sorted({normalise_condition(c) for c in value})


class DatasetOut(Out):
    id: str
    name: str
    description: str
    policy: str
    meta: dict[str, Any]
    conditions: list[str]
    access_rights: str
    created_at: datetime


class GrantIn(In):
    project_id: str = Field(min_length=1, max_length=63, pattern=SLUG_PATTERN)
    dataset_id: str = Field(min_length=1, max_length=63, pattern=SLUG_PATTERN)
    expires_at: datetime | None = None
    days: int | None = Field(default=None, gt=0, le=MAX_GRANT_DAYS)
    reason: str = Field(default="", max_length=MAX_TEXT_CHARS)

    @field_validator("expires_at")
    @classmethod
    def _expiry_in_range(cls, value: datetime | None) -> datetime | None:
        """Naive times are UTC; no grant outlives MAX_GRANT_DAYS (and date arithmetic on
        year 9999 cannot overflow)."""
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        try:
            value = value.astimezone(UTC)
        except (OverflowError, ValueError) as exc:
            raise ValueError("expiry is out of range") from exc
        if value > datetime.now(UTC) + timedelta(days=MAX_GRANT_DAYS):
            raise ValueError(f"a grant lasts at most {MAX_GRANT_DAYS} days")
        return value


class GrantOut(Out):
    id: str
    project_id: str
    dataset_id: str
    granted_by: str
    granted_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    revoked_by: str | None
    reason: str


class RevokeIn(In):
    reason: str = Field(default="", max_length=MAX_TEXT_CHARS)


# What a job submission may carry. A submission is audited even when it is refused, and the
# audit log can never shrink, so nothing a caller sends into it may be unbounded. The command
# bounds (tre.jobs.admission) stay well inside what execve accepts.
MAX_JOB_DATASETS = 64
JobId = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
Slug = Annotated[str, Field(min_length=1, max_length=63, pattern=SLUG_PATTERN)]


def _command_within_total(value: list[str]) -> list[str]:
    if sum(len(a) for a in value) > MAX_COMMAND_CHARS:
        raise ValueError(f"the command is longer than {MAX_COMMAND_CHARS} characters in all")
    return value


# A job's command as every way in bounds it: the API's submission (JobIn) and a federation
# node taking a child from the hub (tre.federation.wire.ReceivedChild).
JobCommand = Annotated[
    list[Annotated[str, Field(max_length=MAX_COMMAND_ARG_CHARS)]],
    Field(min_length=1, max_length=MAX_COMMAND_ARGS),
    AfterValidator(_command_within_total),
]


class JobIn(In):
    project_id: Slug
    image: str = Field(min_length=1, max_length=512)
    command: JobCommand
    dataset_ids: list[Slug] = Field(default_factory=list, max_length=MAX_JOB_DATASETS)
    # SHA-256 of a code archive uploaded to the project (POST /api/v1/code), run at /code.
    code_hash: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    # Succeeded jobs of the same project whose outputs the job reads at /inputs/<id>
    # (tre.jobs.lineage): full ids; the CLI resolves prefixes first.
    input_job_ids: list[JobId] = Field(default_factory=list, max_length=MAX_INPUT_JOBS)
    # An ended job of the same project that this one carries on (`tre preprocess --resume`):
    # read at /inputs/<id> like an input job, but also when it failed, timed out or was
    # cancelled, which is when a cohort is resumed (tre.jobs.lineage).
    resume_job_id: JobId | None = None

    cpu: float = Field(default=1.0, gt=0, le=MAX_CPU)
    memory_mb: int = Field(default=1024, gt=0, le=MAX_MEMORY_MB)
    gpu: int = Field(default=0, ge=0, le=MAX_GPU)
    time_limit_s: int = Field(default=600, gt=0, le=MAX_TIME_S)
    output_limit_mb: int = Field(default=256, gt=0, le=MAX_OUTPUT_MB)


class JobOut(Out):
    id: str
    project_id: str
    submitted_by: str
    image: str
    command: list[str]
    dataset_ids: list[str]
    cpu: float
    memory_mb: int
    gpu: int
    time_limit_s: int
    output_limit_mb: int
    executor: str
    code_hash: str | None = None
    state: str
    reason: str
    exit_code: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    # True while a job shown "running" has in fact ended and its end waits on this server's
    # disk for the database (`tre.jobs.end_spool`): how it ended is not said until recorded.
    end_pending: bool = False


class JobViewOut(JobOut):
    """One job as its own page shows it: also the earlier jobs it reads (``/inputs/<id>``)
    and the datasets their outputs derive from, whose grants and policies govern it too."""

    input_job_ids: list[str] = Field(default_factory=list)
    lineage_dataset_ids: list[str] = Field(default_factory=list)


class JobOutputOut(BaseModel):
    """One output file. ``path`` is None when the name is withheld from the caller (see
    egress_review.outputnames); ``index`` names it in an egress request as ``#<index>``, and
    ``sha256`` as ``sha256:<hex>``."""

    index: int
    path: str | None
    name_withheld: bool
    size: int = Field(description="Bytes; rounded up (at most 25 %) for researchers, exact for staff.")
    size_rounded: bool = False
    sha256: str = Field(
        description="Staff: the file's SHA-256. Researchers: a keyed handle in its place "
        "(``sha256_keyed``), HMAC-SHA256 over (job id, SHA-256) under a server key: stable for "
        "the job and content, usable as ``sha256:<handle>`` in an egress request, not invertible."
    )
    sha256_keyed: bool = Field(default=False, description="True when ``sha256`` is a keyed handle.")


class CodeOut(BaseModel):
    """An accepted upload: use ``sha256`` as ``code_hash`` when submitting a job."""

    sha256: str
    size: int
    entries: int
    unpacked_bytes: int
    # Whether this project had already uploaded the same archive (never about other projects).
    already_stored: bool


class CodeEntryOut(BaseModel):
    path: str
    kind: str
    size: int
    target: str | None = None


class CodeListingOut(BaseModel):
    job_id: str
    code_hash: str
    entries: list[CodeEntryOut]
