"""The airlock's JSON API (``/api/v1/egress``): request, review, resolve, download.

A thin layer: every rule lives in `egress_review.workflow`; this module only maps roles and
bodies. Refusals are domain errors (`tre.errors`) that the API's problem handlers map once;
those the workflow audited are kept by the request's transaction (`tre.store.db.settle`).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from typing import Annotated, Any, BinaryIO, Literal
from urllib.parse import quote

from anyio import from_thread
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import Field
from sqlalchemy.orm import Session

from egress_review import expiry, outputnames, workflow
from egress_review.outputnames import NameView
from egress_review.panel.cards import warm_after_commit
from egress_review.schemas import DisclosureRecord, EgressRequestOut, EgressSummary
from egress_review.staging import CHUNK
from tre.access import sees_raw_output_names
from tre.api.bounds import RowId
from tre.api.deps import (
    DbSession,
    get_settings_dep,
    require_roles,
    works_before_writing,
    write_unit,
)
from tre.api.openapi import body_of
from tre.api.schemas import In
from tre.audit.events import record_read
from tre.auth.principal import Principal
from tre.config import Settings
from tre.states import OPEN_EGRESS_STATES, EgressState
from tre.store.models import EgressRequest

router = APIRouter(prefix="/api/v1/egress", tags=["egress"])

AnyRole = Annotated[Principal, Depends(require_roles("researcher", "dac", "admin", "auditor"))]
Researcher = Annotated[Principal, Depends(require_roles("researcher"))]
Reviewer = Annotated[Principal, Depends(require_roles("dac"))]
Resolver = Annotated[Principal, Depends(require_roles("dac", "admin"))]
AppSettings = Annotated[Settings, Depends(get_settings_dep)]


class CreateRequest(In):
    job_id: str = Field(min_length=1, max_length=64)
    # 1024: the longest output path a job can have recorded (tre.jobs.outputs.MAX_PATH_CHARS).
    files: list[Annotated[str, Field(min_length=1, max_length=1024)]] = Field(
        min_length=1, max_length=workflow.MAX_FILES
    )
    justification: str = Field(min_length=1, max_length=10_000)


class VoteBody(In):
    vote: Literal["approve", "reject"]
    comment: str = Field(default="", max_length=10_000)


class ResolutionBody(In):
    decision: Literal["approve", "reject"]
    comment: str = Field(min_length=1, max_length=10_000)


class WithdrawalBody(In):
    reason: str = Field(default="", max_length=2_000)


@router.post("/requests", status_code=201, response_model=EgressRequestOut)
@works_before_writing
def create(
    body: CreateRequest,
    principal: Researcher,
    session: DbSession,
    settings: Annotated[Settings, Depends(get_settings_dep)],
    request: Request,
) -> dict[str, Any]:
    """Ask for release of outputs of a succeeded job; they are frozen and checked at once.

    The checks run in the request's read-only snapshot and the request is written in a short
    unit of work after them (`workflow.prepare_request` says why). Once committed, the review
    panel's file cards are rendered ahead of the first reviewer
    (`egress_review.panel.cards.warm_after_commit`)."""
    write = workflow.prepare_request(
        session,
        settings,
        principal,
        job_id=body.job_id,
        paths=body.files,
        justification=body.justification,
    )

    def record(s: Session) -> dict[str, Any]:
        req = write(s)
        s.flush()
        warm_after_commit(s, request.app.state.engine, settings, req.id)
        return _view(s, settings, principal, req)

    return from_thread.run(write_unit, request, record)


def _names(session: Session, settings: Settings, principal: Principal, job_id: str) -> NameView:
    return outputnames.request_name_view(session, settings, principal, job_id)


def _view(session: Session, settings: Settings, principal: Principal, req: EgressRequest) -> dict[str, Any]:
    """The request as ``principal`` may see it, the same whichever route answers (a vote's or a
    withdrawal's answer once lacked the file names or the changed-policy notice a GET shows)."""
    return workflow.request_view(
        session,
        req,
        principal,
        _names(session, settings, principal, req.job_id),
        keys_dir=settings.keys_dir,
        policies_dir=settings.resolved_policies_dir,
        open_ttl_days=settings.egress_open_ttl_days,
    )


@router.get("/requests", response_model=list[EgressSummary])
def list_requests(
    principal: AnyRole,
    session: DbSession,
    settings: AppSettings,
    # An enum, not free text: a misspelt state (`awaiting-review`, as the panel prints it)
    # was answered with an empty list, as though no request were in it.
    state: Annotated[EgressState | None, Query(description="Only requests in this state.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    id_prefix: Annotated[
        str | None,
        Query(
            pattern=r"^[0-9a-f]{1,32}$",
            description="Only requests whose id starts with this (lower-case hex); the CLI "
            "resolves a shortened id with it, however many requests there are.",
        ),
    ] = None,
    expiring_within_days: Annotated[
        float | None,
        Query(
            ge=0,
            le=3650,
            description="Only open requests that expire within this many days "
            "(TRE_EGRESS_OPEN_TTL_DAYS; none when requests never expire), soonest first.",
        ),
    ] = None,
) -> list[dict[str, Any]]:
    """Admins and auditors see every request; DAC members their committees' datasets';
    researchers their projects' ones."""
    ttl = settings.egress_open_ttl_days
    made_before = None
    if expiring_within_days is not None:
        made_before = expiry.made_before_for_expiring(ttl, expiring_within_days)
        if made_before is None or (state is not None and state not in OPEN_EGRESS_STATES):
            return []  # requests never expire, or a final state was asked for
    states = state.value if state is not None else (workflow.OPEN_STATES if made_before else None)
    reqs = workflow.list_requests(
        session, principal, states, limit, id_prefix=id_prefix, made_before=made_before
    )
    if expiring_within_days is not None:
        reqs.reverse()  # soonest to expire first
    facts = workflow.viewer_facts(session, reqs, principal)  # no statements per request
    return [
        workflow.summary_view(
            session, r, principal, keys_dir=settings.keys_dir, facts=facts, open_ttl_days=ttl
        )
        for r in reqs
    ]


@router.get("/requests/{request_id}", response_model=EgressRequestOut)
def get_request(
    request_id: str, principal: AnyRole, session: DbSession, settings: AppSettings
) -> dict[str, Any]:
    req = workflow.visible_request(session, request_id, principal)
    record_read(
        session,
        actor=principal.user_id,
        action="egress.request_read",
        project_id=req.project_id,
        job_id=req.job_id,
        details={"request_id": req.id},
    )
    return _view(session, settings, principal, req)


@router.post("/requests/{request_id}/votes", status_code=201, response_model=EgressRequestOut)
def vote(
    request_id: str, body: VoteBody, principal: Reviewer, session: DbSession, settings: AppSettings
) -> dict[str, Any]:
    """A blind vote; the answer shows the caller's own vote and the vote count, nothing more."""
    req = workflow.cast_vote(
        session,
        principal,
        request_id,
        vote=body.vote,
        comment=body.comment,
        policies_dir=settings.resolved_policies_dir,
    )
    return _view(session, settings, principal, req)


@router.post("/requests/{request_id}/resolution", status_code=201, response_model=EgressRequestOut)
def resolution(
    request_id: str, body: ResolutionBody, principal: Resolver, session: DbSession, settings: AppSettings
) -> dict[str, Any]:
    req = workflow.resolve(
        session,
        principal,
        request_id,
        decision=body.decision,
        comment=body.comment,
        policies_dir=settings.resolved_policies_dir,
    )
    return _view(session, settings, principal, req)


@router.post("/requests/{request_id}/withdrawal", status_code=201, response_model=EgressRequestOut)
def withdrawal(
    request_id: str, body: WithdrawalBody, principal: Researcher, session: DbSession, settings: AppSettings
) -> dict[str, Any]:
    """The requester withdraws an open request (final; votes cast so far stay blind)."""
    req = workflow.withdraw(session, principal, request_id, reason=body.reason)
    return _view(session, settings, principal, req)


@router.get("/requests/{request_id}/disclosure", response_model=DisclosureRecord)
def disclosure(
    request_id: str, principal: AnyRole, session: DbSession, settings: AppSettings
) -> dict[str, Any]:
    """The machine-readable disclosure record, once the request has reached a final state."""
    req = workflow.visible_request(session, request_id, principal)
    stored = workflow.logged_record(session, principal, req)
    record_read(
        session,
        actor=principal.user_id,
        action="egress.disclosure_read",
        project_id=req.project_id,
        job_id=req.job_id,
        details={"request_id": req.id},
    )
    names = _names(session, settings, principal, req.job_id)
    # Withheld names stay withheld here too (the full record is the auditors'; its digest in
    # the audit log covers the unmasked one).
    released = req.state == EgressState.approved
    hashes = outputnames.hash_view(
        session, settings.keys_dir, principal, req.project_id, req.job_id, released=released
    )
    record = outputnames.masked_record(stored, list(req.files), names, hashes)
    if req.state == EgressState.approved or sees_raw_output_names(session, principal, req.project_id):
        return record
    # A blocked or rejected request released nothing: its sizes stay rounded for the requester
    # as in `tre outputs` (tre.jobs.shown_size), or its record would give them back exactly.
    return outputnames.rounded_sizes(record)


def _stream(fh: BinaryIO) -> Iterator[bytes]:
    try:
        yield from iter(lambda: fh.read(CHUNK), b"")
    finally:
        fh.close()


def digest_headers(sha256_hex: str) -> dict[str, str]:
    b64 = base64.b64encode(binascii.unhexlify(sha256_hex)).decode()
    return {"Repr-Digest": f"sha-256=:{b64}:", "X-Content-SHA256": sha256_hex}


@router.get(
    "/requests/{request_id}/files/{file_id}",
    responses=body_of("application/octet-stream", "The released file's bytes."),
)
def download(
    request_id: str,
    file_id: RowId,
    principal: Researcher,
    session: DbSession,
    settings: Annotated[Settings, Depends(get_settings_dep)],
) -> StreamingResponse:
    """Stream one released file after re-verifying its hash against the request."""
    f, fh = workflow.open_release_file(session, settings, principal, request_id, file_id)
    try:
        # A name withheld from the researcher stays withheld in the download's headers.
        path = workflow.shown_path(
            f, principal, _names(session, settings, principal, f.request.job_id), settings.keys_dir
        )
        size, sha256 = f.size, f.sha256
        # Commit the download record now and release the database before a long transfer.
        session.commit()
    except BaseException:
        fh.close()
        raise
    name = path.rsplit("/", 1)[-1]
    headers = {
        "Content-Length": str(size),
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}",
        "X-Egress-Path": quote(path),
        **digest_headers(sha256),
    }
    return StreamingResponse(_stream(fh), media_type="application/octet-stream", headers=headers)
