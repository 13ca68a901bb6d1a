"""The disclosure record: what left (or was refused), why, under which rules, decided by whom.

It is built once, when a request reaches a final state, from rows that can no longer change,
and stored on the request. Its SHA-256 over canonical JSON goes into the signed audit log,
so an auditor can later prove the record shown to them is the one written at decision time.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from sqlalchemy.orm import object_session

from egress_review.checking import for_requester, policies_of
from tre.store.base import utcnow
from tre.store.models import EgressRequest, Job

SCHEMA = "tre.egress.disclosure/1"
DOWNLOAD_CONDITIONS = (
    "the downloader holds the researcher role and is an enabled user",
    "the downloader is a member of the requesting project at the time of download",
    "the project holds an unexpired, unrevoked access grant for every dataset the job read, "
    "directly or through its input jobs' outputs, at the time of download",
    "the staged file still has the SHA-256 recorded here",
)


def _ts(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _job_section(req: EgressRequest) -> dict[str, Any]:
    """What produced the files: the job's image and the exact code it ran (SHA-256 of the archive)."""
    session = object_session(req)
    job = session.get(Job, req.job_id) if session is not None else None
    return {
        "id": req.job_id,
        "image": job.image if job is not None else None,
        "code_hash": job.code_hash if job is not None else None,
        "command": list(job.command) if job is not None else None,
        # A job that read earlier jobs' outputs: which, and the datasets they derive from.
        **(
            {"input_jobs": job.input_job_ids, "lineage_datasets": job.lineage_dataset_ids}
            if job is not None and job.input_job_ids
            else {}
        ),
    }


def build_record(req: EgressRequest, withdrawal: dict[str, Any] | None = None) -> dict[str, Any]:
    """The record of a final request. A withdrawn one (``withdrawal``: who, why, when) was
    withdrawn before its votes were all in: they stay blind for good (only their count), or
    withdrawing after one vote would tell the requester how that reviewer voted."""
    reviews = sorted(req.reviews, key=lambda r: (r.stage != "review", r.created_at, r.id or 0))
    votes_in = sum(1 for r in reviews if r.stage == "review")
    if req.state in ("withdrawn", "expired"):
        reviews = []  # never decided by votes: those cast stay blind for good
    resolution = next((r for r in reviews if r.stage == "resolution"), None)
    if req.state == "withdrawn":
        decided_by = "requester"
    elif req.state == "expired":
        decided_by = "expiry"
    else:
        decided_by = "resolution" if resolution else ("checks" if req.state == "blocked" else "votes")
    return {
        "schema": SCHEMA,
        "request": {
            "id": req.id,
            "job_id": req.job_id,
            "project_id": req.project_id,
            "requested_by": req.requested_by,
            "justification": req.justification,
            "requested_at": _ts(req.created_at),
        },
        "job": _job_section(req),
        "outcome": req.state,
        "released": req.state == "approved",
        "decided_at": _ts(req.decided_at),
        "decided_by": decided_by,
        "policies": policies_of(req.files),
        "required_reviews": req.required_reviews,
        "files": [
            {
                "path": f.path,
                "sha256": f.sha256,
                "size": f.size,
                "outcome": f.outcome,
                # reviewer-only evidence quotes the job's own text: the record is shown to requesters
                "checks": for_requester(list(f.checks or [])),
            }
            for f in sorted(req.files, key=lambda f: f.path)
        ],
        # What every later download re-checks (egress_review.workflow.open_release_file).
        "download_conditions": list(DOWNLOAD_CONDITIONS) if req.state == "approved" else [],
        "reviewers": sorted({r.reviewer_id for r in reviews}),
        "decisions": [
            {
                "reviewer": r.reviewer_id,
                "stage": r.stage,
                "vote": r.vote,
                "comment": r.comment,
                "at": _ts(r.created_at),
            }
            for r in reviews
        ],
        **(
            {"withdrawal": {**withdrawal, "at": _ts(req.decided_at)}, "votes_in": votes_in}
            if withdrawal is not None
            else {}
        ),
        **(
            {"expiry": {"reason": "no-decision-in-time", "at": _ts(req.decided_at)}, "votes_in": votes_in}
            if req.state == "expired"
            else {}
        ),
        "generated_at": _ts(utcnow()),
    }


def canonical_bytes(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def record_digest(record: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_bytes(record)).hexdigest()
