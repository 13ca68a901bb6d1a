"""What crosses the network between researchers, the hub and nodes (pydantic models).

Each model holds only what its direction needs: a node receives the job body and the
submitter's id; the hub receives states and reasons from `tre.federation.vocabulary`,
counts, and released files with their hashes, disclosure record and signed checkpoint.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tre.api.schemas import JobCommand, JobIn, Slug
from tre.federation.bounded_json import MAX_DISCLOSURE_RECORD_BYTES, MAX_SEARCH_ANSWER_BYTES, bounded
from tre.federation.names import FILE_NAME, is_file_name
from tre.federation.vocabulary import ChildState, Reason, fits

SHA256 = r"^[0-9a-f]{64}$"
NAME = r"^[a-z0-9][a-z0-9-]{0,62}$"


def child_id(job_id: str, node: str) -> str:
    """The same parent and node always give the same child id: redeliveries never duplicate."""
    return hashlib.sha256(f"{job_id}/{node}".encode()).hexdigest()[:32]


# The outputs a federated job asks each node to release: as the hub takes them, and as a
# node takes a child.
ReleaseNames = Annotated[list[Annotated[str, Field(min_length=1, max_length=1024)]], Field(max_length=100)]


class FederatedJobIn(JobIn):
    """A submission at the hub: the body `tre submit` sends to a tre API (tre.api.schemas.JobIn),
    plus which outputs to ask each node's airlock to release. Datasets are each node's choice
    (its admin maps the federated project to local datasets), so none may be named here."""

    dataset_ids: list[str] = Field(default_factory=list, max_length=0)
    release: ReleaseNames = Field(
        default_factory=list,
        description="Output files each node's airlock is asked to release (names); empty: all.",
    )


class ChildSpec(BaseModel):
    """One child job as a node receives it."""

    child_id: str
    job_id: str
    project_id: str
    submitted_by: str
    image: str
    command: list[str]
    cpu: float
    memory_mb: int
    gpu: int = 0
    time_limit_s: int
    output_limit_mb: int
    code_hash: str | None = None
    release: list[str] = Field(default_factory=list)


class ReceivedChild(ChildSpec):
    """A child as a node takes it: bounded like a local submission (`JobIn`). The node keeps
    the spec in its store and its audit log (which never shrinks) and runs the child as the
    local user ``submitted_by`` names (a user id is a slug), so a hub sending more (a 100 KB
    user id, a million-argument command) is refused child by child, not stored."""

    child_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    job_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    project_id: Slug
    submitted_by: Slug
    image: str = Field(min_length=1, max_length=512)
    command: JobCommand
    code_hash: str | None = Field(default=None, pattern=SHA256)
    release: ReleaseNames = Field(default_factory=list)


class SearchWork(BaseModel):
    search_id: str
    query: dict[str, Any]
    asked_by: str = Field(description="The hub's researcher: the node records who asked.")


class Work(BaseModel):
    """The hub's answer to a poll: what this node should do now."""

    children: list[ChildSpec] = Field(default_factory=list)
    searches: list[SearchWork] = Field(default_factory=list)
    # This node's children whose federated job was cancelled at the hub, until each is final.
    cancels: list[Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]] = Field(
        default_factory=list, max_length=1000
    )


class PollIn(BaseModel):
    wait_s: float = Field(default=10.0, ge=0, le=30)


class StateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: ChildState
    reason: Reason = Reason.none

    @model_validator(mode="after")
    def _reason_fits_state(self) -> StateIn:
        if self.state != ChildState.pending and not fits(self.state, self.reason):
            raise ValueError(f"reason {self.reason.value!r} does not go with state {self.state.value!r}")
        return self


class ReleasedFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=FILE_NAME)

    @field_validator("name")
    @classmethod
    def _one_segment(cls, value: str) -> str:
        if not is_file_name(value):
            raise ValueError("a released file's name is one path segment, not only dots")
        return value

    sha256: str = Field(pattern=SHA256)
    size: int = Field(ge=0, le=1 << 40)


class ReleaseIn(BaseModel):
    """A node's released results for one child: files already uploaded by hash."""

    model_config = ConfigDict(extra="forbid")

    files: list[ReleasedFile] = Field(min_length=1, max_length=1000)
    disclosure_record: Annotated[dict[str, Any], bounded("disclosure record", MAX_DISCLOSURE_RECORD_BYTES)]
    checkpoint: str = Field(min_length=1, max_length=20_000)


# A node's screened log of a child's local job: what the node's researcher screening showed
# the submitter (`egress_review.joblog.researcher_log`), within the per-job budget (256 KiB
# by default) and its notices. The hub takes no more than this, whatever the node's policy.
MAX_SCREENED_LOG_CHARS = 320 * 1024


class ScreenedLogIn(BaseModel):
    """A child's log as its submitter may see it at the node, and the local job's exit code
    (which the node shows them too). Never the raw log: the node screens it before sending."""

    model_config = ConfigDict(extra="forbid")

    exit_code: int | None = Field(default=None, ge=-255, le=255)
    log: str = Field(max_length=MAX_SCREENED_LOG_CHARS)


class SearchAnswerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: str = Field(pattern=r"^(answered|no_answer)$")
    answer: Annotated[dict[str, Any], bounded("search answer", MAX_SEARCH_ANSWER_BYTES)] | None = None


class SearchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    modality: str | None = Field(default=None, max_length=16)
    body_part: str | None = Field(default=None, max_length=64)
    condition: str | None = Field(default=None, max_length=64)
