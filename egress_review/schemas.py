"""The airlock API's response bodies, so its OpenAPI schema says what the routes return.

The workflow builds plain dicts (`workflow.request_view`, `summary_view`); these models are
the contract clients are generated from, and FastAPI validates every answer against them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from tre.states import CheckOutcome, EgressState, Vote


class CheckResultOut(BaseModel):
    policy: str = ""
    policy_version: str = ""
    policy_digest: str = ""
    check: str
    outcome: CheckOutcome
    reason: str
    evidence: dict[str, Any] = Field(default_factory=dict)


class EgressFileOut(BaseModel):
    """A file of a request. A researcher sees a name the screening withheld as a placeholder
    (``name_withheld``) and no check results for it."""

    id: int
    path: str
    sha256: str = Field(
        description="Staff, and the requester once approved: the file's SHA-256. Otherwise a "
        "keyed handle in its place (``sha256_keyed``; see the job outputs listing)."
    )
    sha256_keyed: bool = False
    size: int = Field(description="Bytes; rounded up (at most 25 %) for the requester until approval.")
    size_rounded: bool = False
    outcome: CheckOutcome
    name_withheld: bool = False
    checks: list[CheckResultOut]


class ReviewOut(BaseModel):
    reviewer: str
    vote: Vote
    comment: str
    at: str | None


class PolicyRef(BaseModel):
    name: str
    version: str
    digest: str


class EgressSummary(BaseModel):
    id: str
    job_id: str
    project_id: str
    requested_by: str
    # The requester's reason, whole: reviewers choose what to open by it (`tre egress list`).
    justification: str
    state: EgressState
    policy_name: str
    required_reviews: int
    votes_in: int
    outcome: CheckOutcome
    created_at: str | None
    decided_at: str | None
    # When an open request expires (TRE_EGRESS_OPEN_TTL_DAYS); None once final or if never.
    expires_at: str | None = None
    can_vote: bool
    can_resolve: bool
    file_count: int


class EgressRequestOut(BaseModel):
    """A request as the caller may see it: votes stay hidden until every required vote is in."""

    id: str
    job_id: str
    project_id: str
    requested_by: str
    justification: str
    state: EgressState
    policy_name: str
    policies: list[PolicyRef]
    required_reviews: int
    votes_in: int
    votes_revealed: bool
    votes: list[ReviewOut]
    my_vote: ReviewOut | None
    resolution: ReviewOut | None
    can_vote: bool
    can_resolve: bool
    can_download: bool
    created_at: str | None
    decided_at: str | None
    # When an open request expires (TRE_EGRESS_OPEN_TTL_DAYS); None once final or if never.
    expires_at: str | None = None
    outcome: CheckOutcome
    files: list[EgressFileOut]
    disclosure_available: bool
    # Fixed words (egress_review.workflow): quorum unmeetable, policy changed, expired.
    quorum_unmeetable: bool = False
    policy_changed: bool = False
    notices: list[str] = []


class DisclosureRecord(BaseModel):
    """The signed-off record of a decided request (free-form beyond these fields: it is
    versioned and hashed into the audit log as written)."""

    model_config = {"extra": "allow"}
