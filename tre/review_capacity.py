"""Changes to who can review, refused when they leave a quorum that cannot be met.

A user stops being able to review when the ``dac`` role is taken from them, when their
account is disabled, when they leave a dataset's committee (`tre.committees.unassign`), or,
for one project's requests, when they join that project (a conflict of interest). Each of
these can leave a dataset's committee with fewer able reviewers than its policy's quorum, or
an open request unable ever to be decided. The admin must learn it at that moment, not from
a request that waits until it expires: `guarded` compares what could meet its quorum before
and after the change, in the same transaction, and refuses the change (``409
quorum-unmeetable``, nothing changed) unless forced; forced, the caller audits what was lost.

Only what the change *newly* breaks is counted: a committee already short before the change
is the subject of `tre admin dac list`, and refusing every unrelated change until it is
fixed would stop an admin from disabling a compromised account.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from tre import committees
from tre.errors import Conflict
from tre.plural import agree, count
from tre.states import OPEN_EGRESS_STATES
from tre.store.models import Dataset, EgressRequest


@dataclass(frozen=True)
class Shortfall:
    """What cannot reach its quorum: dataset committees (before conflicts of interest) and
    open requests (after them: `tre.committees.quorum_shortfall`)."""

    datasets: frozenset[str]
    requests: frozenset[str]

    def __sub__(self, other: Shortfall) -> Shortfall:
        return Shortfall(self.datasets - other.datasets, self.requests - other.requests)

    def __bool__(self) -> bool:
        return bool(self.datasets or self.requests)

    def as_details(self) -> dict[str, list[str]]:
        """For the audit event of a forced change."""
        return {"quorum_lost_datasets": sorted(self.datasets), "quorum_lost_requests": sorted(self.requests)}


def shortfall(session: Session, policies_dir: Path | None, *, project_id: str | None = None) -> Shortfall:
    """Every dataset whose committee cannot meet its quorum (not asked without
    ``policies_dir``) and every open request (of ``project_id`` only, if given) that cannot
    reach its own."""
    datasets: frozenset[str] = frozenset()
    if policies_dir is not None:
        states = (
            committees.committee_state(session, d, policies_dir)
            for d in session.scalars(select(Dataset).order_by(Dataset.id))
        )
        datasets = frozenset(state.dataset_id for state in states if not state.meetable)
    query = select(EgressRequest).where(EgressRequest.state.in_([s.value for s in OPEN_EGRESS_STATES]))
    if project_id is not None:
        query = query.where(EgressRequest.project_id == project_id)
    requests = frozenset(r.id for r in session.scalars(query) if committees.quorum_shortfall(session, r))
    return Shortfall(datasets, requests)


def is_able_reviewer(session: Session, user_id: str) -> bool:
    """Enabled and holding ``dac``: only such a user's change can take review capacity away."""
    return user_id in committees.active_reviewers(session, None)[""]


def guarded(
    session: Session,
    policies_dir: Path | None,
    what: str,
    change: Callable[[], None],
    *,
    force: bool,
    project_id: str | None = None,
) -> Shortfall:
    """Apply ``change`` (flushed) and return what it newly left unable to reach its quorum;
    raise ``409 quorum-unmeetable`` instead when that is anything and not ``force``. The
    caller's transaction rolls the change back with the error. ``what`` names the change in
    the refusal ("disabling 'dana'"). Without ``policies_dir`` only open requests are
    compared (a project membership changes no committee, only conflicts of interest)."""
    before = shortfall(session, policies_dir, project_id=project_id)
    change()
    session.flush()
    lost = shortfall(session, policies_dir, project_id=project_id) - before
    if lost and not force:
        raise Conflict(_refusal(what, lost), slug="quorum-unmeetable", title="Quorum could not be met")
    return lost


def _refusal(what: str, lost: Shortfall) -> str:
    parts = []
    if lost.datasets:
        named = agree(len(lost.datasets), "dataset", "datasets")
        parts.append(f"the committee of {named} {', '.join(sorted(lost.datasets))} without its quorum")
    if lost.requests:
        n = len(lost.requests)
        shown = ", ".join(sorted(lost.requests)[:5]) + (", ..." if n > 5 else "")
        parts.append(f"{count(n, 'open request')} unable to reach theirs ({shown})")
    return (
        f"{what} would leave {' and '.join(parts)}: they could never be decided. Assign another "
        "DAC member first (tre admin dac assign), or force it (--force, ?force=true)"
    )
