"""Expiry of open egress requests: none waits for ever.

A request still awaiting votes or a resolution ``TRE_EGRESS_OPEN_TTL_DAYS`` after it was made
moves to ``expired`` (final) with fixed words (`workflow.EXPIRED_REASON`), is audited as
``egress.expired`` and gets its disclosure record; the requester asks again with a new request.

Before that, reviewers and requesters are told: every open request's view and summary carry
its ``expires_at`` (`workflow.expires_at`), ``GET /requests?expiring_within_days=N`` and ``tre egress
list --expiring DAYS`` list those about to expire, and the panel's queue marks each one that
expires within ``TRE_EGRESS_EXPIRY_WARN_DAYS`` and has a tab for them (there is no mail or
push channel in the TRE to remind anyone by; the queue is where reviewers look).

Swept by the job worker (`Worker(periodic=...)`, wired by the composition roots) at most once
per `SWEEP_EVERY_S`. Restart-safe and idempotent: the sweep keeps no state of its own, it
re-reads the open requests older than the cutoff each time. Race-safe: each request is
expired in its own transaction after locking its row and reading its state again, exactly as
a vote locks it, so a vote landing at the same moment either decides the request first (the
sweep then finds it closed and skips it) or finds it expired (``409 voting-closed``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from egress_review import workflow
from tre.config import Settings
from tre.store.base import utcnow
from tre.store.db import session_scope
from tre.store.dbclock import SKEW_TOLERANCE, database_now
from tre.store.models import EgressRequest

log = logging.getLogger(__name__)
SWEEP_EVERY_S = 60.0
BATCH = 200


def made_before_for_expiring(
    ttl_days: float, within_days: float, now: datetime | None = None
) -> datetime | None:
    """The creation time before which an open request expires within ``within_days`` (None:
    requests never expire, so none is about to)."""
    if ttl_days <= 0:
        return None
    return (now or utcnow()) - timedelta(days=max(ttl_days - within_days, 0))


def overdue_ids(session: Session, cutoff: datetime, limit: int = BATCH) -> list[str]:
    """Open requests made before ``cutoff``, oldest first."""
    return list(
        session.scalars(
            select(EgressRequest.id)
            .where(EgressRequest.state.in_(workflow.OPEN_STATES), EgressRequest.created_at < cutoff)
            .order_by(EgressRequest.created_at, EgressRequest.id)
            .limit(limit)
        )
    )


def expire_one(session: Session, request_id: str, ttl: timedelta, now: datetime | None = None) -> bool:
    """Expire one request if it is still open and older than ``ttl`` by both clocks: this
    host's (``now``) and the database's (`tre.store.dbclock`); row locked first, the caller's
    transaction commits it. False: decided, withdrawn or expired meanwhile, or younger than
    ``ttl`` by either clock, and nothing is written.

    Why two clocks: by this host's alone, a step of its wall clock forward (an NTP step, a
    resumed virtual machine) expired requests days early, on a deadline no monotonic clock
    can keep across restarts. One host's jump now expires nothing early; a disagreement of
    the two beyond `SKEW_TOLERANCE` is logged (and `tre admin doctor` reports it), so a
    request is held past its time only while an operator is told why. The audit entry says
    which clock decided (the later to agree) and both readings."""
    host_now = now or utcnow()
    req = workflow.load_request(session, request_id, lock=True)
    if req.state not in workflow.OPEN_STATES:
        return False
    db_now = database_now(session)
    created = _aware(req.created_at)
    if abs(host_now - db_now) > SKEW_TOLERANCE:
        log.warning(
            "egress request %s: this host's clock (%s) and the database's (%s) disagree; "
            "expired only once both say it is %s old",
            request_id,
            host_now.isoformat(),
            db_now.isoformat(),
            ttl,
        )
    if host_now - created < ttl or db_now - created < ttl:
        return False
    was = req.state
    decided_by = "database" if db_now - created <= host_now - created else "host"
    workflow.expire(
        session,
        req,
        clock={"decided_by": decided_by, "host": host_now.isoformat(), "database": db_now.isoformat()},
    )
    log.info("egress request %s expired (was %s; by the %s clock)", request_id, was, decided_by)
    return True


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def sweep(engine: Engine, ttl: timedelta, now: datetime | None = None) -> list[str]:
    """Expire every overdue open request, one transaction each; the ids expired. ``now``:
    this host's clock (the database's is read in each transaction)."""
    host_now = now or utcnow()
    cutoff = host_now - ttl
    done: list[str] = []
    while True:
        with session_scope(engine) as s:
            ids = overdue_ids(s, cutoff)
        progressed = False
        for request_id in ids:
            with session_scope(engine) as s:
                if expire_one(s, request_id, ttl, host_now):
                    done.append(request_id)
                    progressed = True
        if len(ids) < BATCH or not progressed:
            return done


def sweeper(
    engine: Engine, settings: Settings, clock: Callable[[], float] = time.monotonic
) -> Callable[[], None]:
    """The worker's periodic hook: a sweep at most every `SWEEP_EVERY_S` (none when the
    setting is 0: requests never expire)."""
    last: list[float] = []

    def run() -> None:
        days = settings.egress_open_ttl_days
        if days <= 0:
            return
        now = clock()
        if last and now - last[0] < SWEEP_EVERY_S:
            return
        last[:] = [now]
        sweep(engine, timedelta(days=days))

    return run
