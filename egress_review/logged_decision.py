"""A request's decision is honoured as the signed audit log recorded it, not as its row says.

The airlock's tables (a request's state, its files' hashes, its votes, its disclosure
record) can be edited by anyone who can write the database, with no key, and the log still
verifies: it was never touched (tamper round 19). A request flipped to ``approved`` was
downloaded; a released file's hash moved to a staged file the committee withheld was served
(the bytes matched the edited hash); a vote row written straight into ``reviews`` counted
towards the quorum; a record edited after the decision was served as the disclosure record.

So every step that acts on a decision first finds the signed entry that made it
(`tre.audit.attest`: the body hashes to its leaf, the leaf is proven under the newest
checkpoint the log signed): a download and the disclosure record need the request's
``egress.released`` (or ``egress.closed``) entry with the stored state, the record's
SHA-256 and, for a file, its path and hash; the quorum counts only votes with their
``egress.vote`` entry; a resolution needs the ``egress.decided`` entry that made the request
conflicted. Each function returns why the stored decision is not the logged one (None: it
is), and the caller refuses with that reason; CRITICAL on ``tre.audit.alert``, as for the
log's own damage.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy.orm import Session

from egress_review.disclosure import record_digest
from tre.audit.attest import signed_entries
from tre.states import EgressState
from tre.store.models import EgressFile, EgressRequest, Review

ALERT = logging.getLogger("tre.audit.alert")
ALERT.addHandler(logging.NullHandler())


def _details(body: dict[str, object], req: EgressRequest) -> dict[str, object] | None:
    """The entry's details if it is about ``req`` (its id, project and job), else None."""
    details = body.get("details")
    if not isinstance(details, dict) or details.get("request_id") != req.id:
        return None
    return details if body.get("project_id") == req.project_id else None


def _alert(req: EgressRequest, why: str) -> str:
    ALERT.critical("egress request %s: %s; the database was changed behind the audit log", req.id, why)
    return why


def unlogged_decision(session: Session, req: EgressRequest, file: EgressFile | None = None) -> str | None:
    """Why ``req``'s stored decision (state, disclosure record, and ``file`` if given) is not
    the one its signed ``egress.released`` / ``egress.closed`` entry states; None if it is."""
    if req.disclosure_record is None:
        return _alert(req, f"it is {req.state} with no disclosure record")
    approved = req.state == EgressState.approved
    action = "egress.released" if approved else "egress.closed"
    digest = record_digest(req.disclosure_record)

    def same(body: dict[str, object]) -> bool:
        details = _details(body, req)
        return (
            details is not None
            and details.get("state") == str(req.state)
            and details.get("disclosure_sha256") == digest
        )

    entries = signed_entries(session, action, req.job_id, same)
    if not entries:
        return _alert(
            req, f"the audit log holds no signed {action} entry with its state and disclosure record"
        )
    if file is not None:
        files = _details(entries[-1].fields, req) or {}
        released = files.get("files")
        if not isinstance(released, dict) or released.get(file.path) != file.sha256:
            return _alert(req, f"file {file.id} is not among the files and hashes its signed release names")
    return None


def unlogged_votes(session: Session, req: EgressRequest, votes: Sequence[Review]) -> str | None:
    """Why some of ``votes`` (the stored review-stage votes) have no signed ``egress.vote``
    entry of their reviewer with their vote; None if every one has."""
    if not votes:
        return None
    proven = signed_entries(session, "egress.vote", req.job_id, lambda b: _details(b, req) is not None)
    logged = {(e.fields.get("actor"), (_details(e.fields, req) or {}).get("vote")) for e in proven}
    missing = [r for r in votes if (r.reviewer_id, r.vote) not in logged]
    if not missing:
        return None
    who = ", ".join(sorted({r.reviewer_id for r in missing}))
    votes_of, has = ("the vote", "has") if len(missing) == 1 else ("the votes", "have")
    return _alert(req, f"{votes_of} of {who} stored for it {has} no signed egress.vote entry")


def unlogged_conflict(session: Session, req: EgressRequest) -> str | None:
    """Why ``req``'s stored ``conflicted`` state has no signed ``egress.decided`` entry that
    made it so; None if it has."""

    def conflicted(body: dict[str, object]) -> bool:
        details = _details(body, req)
        return details is not None and details.get("state") == str(EgressState.conflicted)

    if signed_entries(session, "egress.decided", req.job_id, conflicted):
        return None
    return _alert(req, "it is conflicted, but the audit log holds no signed decision that made it so")
