"""Pydantic request/response models of the core API (jobs, projects, datasets, users)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class MeOut(BaseModel):
    user_id: str
    roles: list[str]
    projects: list[str]


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=63)
    roles: list[str] = Field(min_length=1)
    display_name: str = ""
    email: str | None = None


class UserRolesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    roles: list[str]


class UserOut(Out):
    id: str
    display_name: str
    disabled: bool
    roles: list[str]


class QuotaIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_cpu: float | None = Field(default=None, gt=0)
    max_memory_mb: int | None = Field(default=None, gt=0)
    max_gpu: int | None = Field(default=None, ge=0)
    max_time_s: int | None = Field(default=None, gt=0)
    max_output_mb: int | None = Field(default=None, gt=0)
    max_concurrent_jobs: int | None = Field(default=None, gt=0)
    # Code archives: bytes (archive and unpacked) and entries; 1 GiB is the upload ceiling.
    max_code_mb: int | None = Field(default=None, gt=0, le=1024)
    max_code_files: int | None = Field(default=None, gt=0, le=1_000_000)


class ProjectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=63)
    name: str = ""
    description: str = ""
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


class MemberIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: str


class DatasetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=63)
    path: str
    name: str = ""
    description: str = ""
    policy: str = "default"


class DatasetOut(Out):
    id: str
    name: str
    description: str
    policy: str
    meta: dict[str, Any]
    created_at: datetime


class GrantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    project_id: str
    dataset_id: str
    expires_at: datetime | None = None
    days: int | None = Field(default=None, gt=0)
    reason: str = ""


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


class RevokeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = ""


# What a job submission may carry. A submission is audited even when it is refused, and the
# audit log can never shrink, so nothing a caller sends into it may be unbounded. The command
# bound stays well inside what execve accepts (MAX_ARG_STRLEN is 128 KiB per argument).
MAX_COMMAND_ARGS = 4096
MAX_COMMAND_ARG_CHARS = 65_536
MAX_COMMAND_CHARS = 256 * 1024
MAX_JOB_DATASETS = 64
Slug = Annotated[str, Field(min_length=1, max_length=63)]


class JobIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    project_id: Slug
    image: str = Field(min_length=1, max_length=512)
    command: list[Annotated[str, Field(max_length=MAX_COMMAND_ARG_CHARS)]] = Field(
        min_length=1, max_length=MAX_COMMAND_ARGS
    )
    dataset_ids: list[Slug] = Field(default_factory=list, max_length=MAX_JOB_DATASETS)
    # SHA-256 of a code archive uploaded to the project (POST /api/v1/code), run at /code.
    code_hash: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")

    @field_validator("command")
    @classmethod
    def _command_size(cls, value: list[str]) -> list[str]:
        if sum(len(a) for a in value) > MAX_COMMAND_CHARS:
            raise ValueError(f"the command is longer than {MAX_COMMAND_CHARS} characters in all")
        return value
    cpu: float = Field(default=1.0, gt=0)
    memory_mb: int = Field(default=1024, gt=0)
    gpu: int = Field(default=0, ge=0)
    time_limit_s: int = Field(default=600, gt=0)
    output_limit_mb: int = Field(default=256, gt=0)


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


class JobOutputOut(Out):
    path: str
    size: int
    sha256: str


class CodeOut(BaseModel):
    """An accepted upload: use ``sha256`` as ``code_hash`` when submitting a job."""

    sha256: str
    size: int
    entries: int
    unpacked_bytes: int
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
