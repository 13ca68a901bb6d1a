"""The project's record of released counts, for differencing across releases (leaks13).

Every request stores the counts its files state (`checks.released.extract_aggregates`) as
`EgressAggregate` rows; approving it marks them released. A new request's checks compare its
files with the released rows of its own project only (comparing across projects would itself
tell one project about another's outputs).

Race-safety: two requests of a project can both be checked before either is released, and
neither then saw the other. So the approval that releases a request takes the project's row
lock (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite's writers already run ``BEGIN
IMMEDIATE``) and compares its counts again with everything released since it was checked:
a difference under the threshold refuses the approval (`released_since`), and the requester
asks again, so the checks flag it and the reviewers judge it knowingly.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from egress_review.checks.released import Released, differences, small_shares
from tre.store.base import utcnow
from tre.store.models import EgressAggregate, EgressRequest, Project

MAX_RELEASED_ROWS = 100_000
"""The most released rows loaded for one request's checks (the newest first)."""


def released_for(session: Session, project_id: str) -> dict[str, list[Released]]:
    """The project's released counts by key, newest release first."""
    rows = session.execute(
        select(EgressAggregate.key, EgressAggregate.value, EgressAggregate.request_id)
        .where(EgressAggregate.project_id == project_id, EgressAggregate.released_at.is_not(None))
        .order_by(EgressAggregate.released_at.desc(), EgressAggregate.id.desc())
        .limit(MAX_RELEASED_ROWS)
    )
    out: dict[str, list[Released]] = defaultdict(list)
    for key, value, request_id in rows:
        out[key].append(Released(float(value), request_id))
    return dict(out)


def store(
    session: Session, req: EgressRequest, per_file: Mapping[str, Mapping[str, float]], threshold: int
) -> None:
    """Keep the counts of a new request's files (one row per key: the first file's wins)."""
    seen: dict[str, float] = {}
    for counts in per_file.values():
        for key, value in counts.items():
            seen.setdefault(key, value)
    session.add_all(
        EgressAggregate(
            request_id=req.id, project_id=req.project_id, key=key, value=value, threshold=threshold
        )
        for key, value in seen.items()
    )


def lock_project(session: Session, project_id: str) -> None:
    """Serialise the releases of one project (a no-op on SQLite, whose writers are serial)."""
    session.execute(select(Project.id).where(Project.id == project_id).with_for_update())


def released_since(session: Session, req: EgressRequest) -> list[str]:
    """Ids of other released requests whose counts are within ``req``'s threshold of its own
    and that its checks did not already name (released after they ran): the reviewers were
    never shown them. Call under `lock_project`."""
    mine = session.execute(
        select(EgressAggregate.key, EgressAggregate.value, EgressAggregate.threshold).where(
            EgressAggregate.request_id == req.id
        )
    ).all()
    if not mine:
        return []
    threshold = max(int(t) for _, _, t in mine)
    # every released row of the project, not only those of the same keys: a count compares with
    # another column name (`canonical_key`) and with a share of a total (leaks14b)
    released = {
        key: kept
        for key, values in released_for(session, req.project_id).items()
        if (kept := [r for r in values if r.request_id != req.id])
    }
    counts = {k: float(v) for k, v, _ in mine}
    found = {r for _, r in differences(counts, released, threshold)}
    # and a share that a total released since turns into a small count (leaks16)
    found |= {r for _, r in small_shares(counts, released, threshold)}
    return sorted(found - _named_by_checks(req))


def _named_by_checks(req: EgressRequest) -> set[str]:
    """Earlier requests the request's own checks flagged (shown to its reviewers)."""
    named: set[str] = set()
    for f in req.files:
        for c in f.checks or []:
            ids = (c.get("evidence") or {}).get("released_requests") if isinstance(c, dict) else None
            if isinstance(ids, list):
                named.update(str(i) for i in ids)
    return named


def mark_released(session: Session, req: EgressRequest) -> None:
    """The request's counts are now the project's released counts."""
    session.execute(
        update(EgressAggregate).where(EgressAggregate.request_id == req.id).values(released_at=utcnow())
    )
