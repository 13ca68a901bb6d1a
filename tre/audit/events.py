"""What auditors must be able to see, recorded in one place with fixed vocabulary.

* Jobs: every job event carries the facts an auditor asks about (datasets, image and its
  digest, code hash if the job has one, resources); a started job also writes one
  ``dataset.read`` entry per dataset, so ``tre audit search --dataset X`` (or
  ``--action dataset.read``) finds every job that read X.
* Tokens: recorded when issued, with their ``jti`` and expiry, and at their first use each
  hour (``auth.token_used`` with the ``jti``), so a token seen in use can be tied to its issue.
* Reads of logs, outputs, requests and disclosures: recorded, at most once per reader, object
  and kind per window (``tre logs -f`` polls), with the number of reads folded in.
"""

from __future__ import annotations

import json
import threading
import time
from base64 import urlsafe_b64decode
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from tre.audit.log import AuditEvent, record_event, record_events

READ_WINDOW_S = 300.0
_MAX_TRACKED = 10_000


def image_digest(image: str) -> str | None:
    """The ``sha256:...`` digest an image reference pins, if any."""
    _, at, digest = image.partition("@")
    return digest if at and digest.startswith("sha256:") else None


def job_facts(job: Any) -> dict[str, Any]:
    """Fixed facts about a job (a ``tre.store.models.Job``); a job that reads earlier jobs'
    outputs also names them (``input_jobs``) and the datasets they derive from
    (``lineage_datasets``), so the data's path through the project stays in the log."""
    inputs = list(getattr(job, "input_job_ids", None) or [])
    lineage = {"input_jobs": inputs, "lineage_datasets": list(job.lineage_dataset_ids)} if inputs else {}
    return {
        "image": job.image,
        "image_digest": image_digest(job.image),
        "code_hash": getattr(job, "code_hash", None),
        "datasets": list(job.dataset_ids or []),
        "resources": {
            "cpu": job.cpu,
            "memory_mb": job.memory_mb,
            "gpu": job.gpu,
            "time_limit_s": job.time_limit_s,
            "output_limit_mb": job.output_limit_mb,
        },
        **lineage,
    }


def record_job_started(session: Session, job: Any, details: dict[str, Any]) -> None:
    """``job.started`` with the job's facts, and one ``dataset.read`` per dataset it reads:
    at /data (``via: job``) or as earlier jobs' outputs derived from it (``via: input``)."""
    events = [
        AuditEvent("system", "job.started", job.project_id, None, job.id, {**details, **job_facts(job)})
    ]
    direct = list(job.dataset_ids or [])
    events += [
        AuditEvent(job.submitted_by, "dataset.read", job.project_id, ds, job.id, {"via": "job"})
        for ds in direct
    ]
    events += [
        AuditEvent(job.submitted_by, "dataset.read", job.project_id, ds, job.id, {"via": "input"})
        for ds in getattr(job, "lineage_dataset_ids", None) or []
        if ds not in direct
    ]
    record_events(session, events)


def record_job_ended(session: Session, job: Any, details: dict[str, Any]) -> None:
    record_event(
        session,
        actor="system",
        action="job.ended",
        project_id=job.project_id,
        job_id=job.id,
        details={**details, **job_facts(job)},
    )


def _claims(token: str) -> dict[str, Any]:
    """The (already trusted: we just minted it) payload of a JWT, without a JWT library."""
    payload = token.split(".")[1]
    data: dict[str, Any] = json.loads(urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return data


def record_token_issued(session: Session, actor: str, token: str) -> None:
    """``auth.token_issued``: subject, roles, ``jti`` and expiry (never the token itself)."""
    c = _claims(token)
    record_event(
        session,
        actor=actor,
        action="auth.token_issued",
        details={
            "user": c.get("sub"),
            "roles": c.get("roles", []),
            "jti": c.get("jti"),
            "issued_at": datetime.fromtimestamp(int(c.get("iat", 0)), UTC),
            "expires_at": datetime.fromtimestamp(int(c.get("exp", 0)), UTC),
        },
    )


class RecentKeys:
    """Remembers which (reader, action, object) reads were recorded recently, and how often seen."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: OrderedDict[tuple[str, ...], tuple[float, int]] = OrderedDict()

    def pending(self, key: tuple[str, ...], window_s: float) -> bool:
        """Whether `due` would return an entry now; changes nothing (the API's read cache
        asks this to leave a request that must be audited to the full path)."""
        with self.lock:
            last = self.seen.get(key)
            return last is None or time.monotonic() - last[0] >= window_s

    def due(self, key: tuple[str, ...], window_s: float) -> int | None:
        """Reads folded in since the last entry if one is due now, else None (and count it)."""
        now = time.monotonic()
        with self.lock:
            last = self.seen.get(key)
            if last is not None and now - last[0] < window_s:
                self.seen[key] = (last[0], last[1] + 1)
                return None
            self.seen[key] = (now, 0)
            self.seen.move_to_end(key)
            while len(self.seen) > _MAX_TRACKED:
                self.seen.popitem(last=False)
            return 0 if last is None else last[1]


_reads = RecentKeys()


def record_read(
    session: Session,
    *,
    actor: str,
    action: str,
    project_id: str | None = None,
    job_id: str | None = None,
    details: dict[str, Any] | None = None,
    window_s: float = READ_WINDOW_S,
) -> None:
    """Record a read (``job.log_read``, ``job.outputs_read``, ``egress.request_read``...).

    One entry per reader, action and object per window; later reads in the window are counted
    into the next entry (``earlier_reads``). Commits nothing: the caller's transaction does.
    """
    key = (actor, action, project_id or "", job_id or "", json.dumps(details or {}, sort_keys=True))
    earlier = _reads.due(key, window_s)
    if earlier is None:
        return
    record_event(
        session,
        actor=actor,
        action=action,
        project_id=project_id,
        job_id=job_id,
        details={**(details or {}), "earlier_reads": earlier},
    )


TOKEN_USE_WINDOW_S = 3600.0
_token_uses = RecentKeys()


def token_use_pending(jti: str | None) -> bool:
    """Whether `token_use_event` would return an entry for this token now (changes nothing)."""
    return bool(jti) and _token_uses.pending(("token", str(jti)[:64]), TOKEN_USE_WINDOW_S)


def token_use_event(user_id: str, jti: str | None) -> AuditEvent | None:
    """The ``auth.token_used`` entry due for this token now (once per token and hour, per
    process), or None. The API decides in the event loop and appends, in the request's
    transaction, only when one is due."""
    if not jti:
        return None
    earlier = _token_uses.due(("token", jti[:64]), TOKEN_USE_WINDOW_S)
    if earlier is None:
        return None
    return AuditEvent(user_id, "auth.token_used", details={"jti": jti[:64], "earlier_uses": earlier})
