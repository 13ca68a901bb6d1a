"""The airlock's JSON API (``/api/v1/egress``): request, review, resolve, download.

A thin layer: every rule lives in `egress_review.workflow`; this module only maps roles,
bodies and errors. Refusals the workflow audited are committed before the problem document
is returned, so a refused self-approval or a tampered download leaves its trace.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from typing import Annotated, Any, BinaryIO, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from egress_review import workflow
from egress_review.errors import EgressError
from egress_review.staging import CHUNK
from tre.api.deps import get_session, get_settings_dep, require_roles
from tre.api.problems import Problem
from tre.audit.events import record_read
from tre.auth.principal import Principal
from tre.config import Settings

router = APIRouter(prefix="/api/v1/egress", tags=["egress"])

AnyRole = Annotated[Principal, Depends(require_roles("researcher", "dac", "admin", "auditor"))]
Researcher = Annotated[Principal, Depends(require_roles("researcher"))]
Reviewer = Annotated[Principal, Depends(require_roles("dac"))]
Resolver = Annotated[Principal, Depends(require_roles("dac", "admin"))]
DbSession = Annotated[Session, Depends(get_session)]


class CreateRequest(BaseModel):
    job_id: str = Field(min_length=1, max_length=64)
    # 1024: the longest output path a job can have recorded (tre.jobs.outputs.MAX_PATH_CHARS).
    files: list[Annotated[str, Field(max_length=1024)]] = Field(min_length=1, max_length=workflow.MAX_FILES)
    justification: str = Field(min_length=1, max_length=10_000)


class VoteBody(BaseModel):
    vote: Literal["approve", "reject"]
    comment: str = Field(default="", max_length=10_000)


class ResolutionBody(BaseModel):
    decision: Literal["approve", "reject"]
    comment: str = Field(min_length=1, max_length=10_000)


def to_problem(session: Session, exc: EgressError) -> Problem:
    """Commit an audited refusal, then turn it into an RFC 9457 problem."""
    if exc.audited:
        session.commit()
    return Problem(exc.status, exc.title, exc.detail, exc.slug)


@router.post("/requests", status_code=201)
def create(body: CreateRequest, principal: Researcher, session: DbSession,
           settings: Annotated[Settings, Depends(get_settings_dep)]) -> dict[str, Any]:
    """Ask for release of outputs of a succeeded job; they are frozen and checked at once."""
    try:
        req = workflow.create_request(session, settings, principal, job_id=body.job_id, paths=body.files,
                                      justification=body.justification, pause=session.commit)
    except EgressError as exc:
        raise to_problem(session, exc) from exc
    return workflow.request_view(session, req, principal)


@router.get("/requests")
def list_requests(principal: AnyRole, session: DbSession,
                  state: Annotated[str | None, Query(max_length=24)] = None,
                  limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> list[dict[str, Any]]:
    """Reviewers, admins and auditors see every request; researchers their projects' ones."""
    return [workflow.summary_view(session, r, principal)
            for r in workflow.list_requests(session, principal, state, limit)]


@router.get("/requests/{request_id}")
def get_request(request_id: str, principal: AnyRole, session: DbSession) -> dict[str, Any]:
    try:
        req = workflow.visible_request(session, request_id, principal)
    except EgressError as exc:
        raise to_problem(session, exc) from exc
    record_read(session, actor=principal.user_id, action="egress.request_read", project_id=req.project_id,
                job_id=req.job_id, details={"request_id": req.id})
    return workflow.request_view(session, req, principal)


@router.post("/requests/{request_id}/votes", status_code=201)
def vote(request_id: str, body: VoteBody, principal: Reviewer, session: DbSession) -> dict[str, Any]:
    """A blind vote; the answer shows the caller's own vote and the vote count, nothing more."""
    try:
        req = workflow.cast_vote(session, principal, request_id, vote=body.vote, comment=body.comment)
    except EgressError as exc:
        raise to_problem(session, exc) from exc
    return workflow.request_view(session, req, principal)


@router.post("/requests/{request_id}/resolution", status_code=201)
def resolution(request_id: str, body: ResolutionBody, principal: Resolver,
               session: DbSession) -> dict[str, Any]:
    try:
        req = workflow.resolve(session, principal, request_id, decision=body.decision, comment=body.comment)
    except EgressError as exc:
        raise to_problem(session, exc) from exc
    return workflow.request_view(session, req, principal)


@router.get("/requests/{request_id}/disclosure")
def disclosure(request_id: str, principal: AnyRole, session: DbSession) -> dict[str, Any]:
    """The machine-readable disclosure record, once the request has reached a final state."""
    try:
        req = workflow.visible_request(session, request_id, principal)
    except EgressError as exc:
        raise to_problem(session, exc) from exc
    if req.disclosure_record is None:
        raise Problem(409, "No disclosure record yet",
                      f"request {request_id} is {req.state}; the record is written when it is decided",
                      "not-decided")
    record_read(session, actor=principal.user_id, action="egress.disclosure_read", project_id=req.project_id,
                job_id=req.job_id, details={"request_id": req.id})
    return dict(req.disclosure_record)


def _stream(fh: BinaryIO) -> Iterator[bytes]:
    try:
        yield from iter(lambda: fh.read(CHUNK), b"")
    finally:
        fh.close()


def digest_headers(sha256_hex: str) -> dict[str, str]:
    b64 = base64.b64encode(binascii.unhexlify(sha256_hex)).decode()
    return {"Repr-Digest": f"sha-256=:{b64}:", "X-Content-SHA256": sha256_hex}


@router.get("/requests/{request_id}/files/{file_id}")
def download(request_id: str, file_id: int, principal: Researcher, session: DbSession,
             settings: Annotated[Settings, Depends(get_settings_dep)]) -> StreamingResponse:
    """Stream one released file after re-verifying its hash against the request."""
    try:
        f, fh = workflow.open_release_file(session, settings, principal, request_id, file_id)
    except EgressError as exc:
        raise to_problem(session, exc) from exc
    # Commit the download record now and release the database before a long transfer.
    try:
        session.commit()
    except BaseException:
        fh.close()
        raise
    name = f.path.rsplit("/", 1)[-1]
    headers = {
        "Content-Length": str(f.size),
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}",
        "X-Egress-Path": quote(f.path),
        **digest_headers(f.sha256),
    }
    return StreamingResponse(_stream(fh), media_type="application/octet-stream", headers=headers)
