"""Per-dataset data access committees: who reviews which dataset's egress requests.

A TRE's committees belong to its data holders: a DAC member sits on the committee of some
datasets and reviews (and sees) only the requests of jobs governed by one of them. Deny by
default: a dataset with no committee has no reviewers, and a DAC member on no committee sees
no request. A request over several datasets must reach the quorum in *every* one of their
committees (the strictest wins; `quorum_shortfall`).

Assignments are admin acts, audited (``admin.dac_assigned`` / ``admin.dac_unassigned``). A
removal that leaves a committee smaller than its dataset's quorum is refused unless forced,
and `committee_report` lists every dataset whose quorum cannot be met, so an admin learns it
where they make the change, not from a request that waits for ever.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from tre.access import former_member_ids
from tre.audit import record_event
from tre.errors import Conflict, NotFound, Unprocessable
from tre.policy import PolicyUnavailable, policies_for_datasets
from tre.store.models import Dataset, DatasetReviewer, EgressRequest, Job, ProjectMember, User, UserRole

# The two-person rule: no policy can ask for fewer reviews than this (egress_review.checking).
MIN_REVIEWS = 2
REVIEWER_ROLE = "dac"


def committee(session: Session, dataset_id: str) -> list[str]:
    """Everyone assigned to the dataset's committee (whatever their roles now), sorted."""
    return list(
        session.scalars(
            select(DatasetReviewer.user_id)
            .where(DatasetReviewer.dataset_id == dataset_id)
            .order_by(DatasetReviewer.user_id)
        )
    )


def reviewer_dataset_ids(session: Session, user_id: str) -> frozenset[str]:
    """The datasets on whose committees ``user_id`` sits."""
    return frozenset(
        session.scalars(select(DatasetReviewer.dataset_id).where(DatasetReviewer.user_id == user_id))
    )


def active_reviewers(session: Session, dataset_ids: Iterable[str] | None) -> dict[str, frozenset[str]]:
    """Per dataset, the committee members who can review now: enabled users holding the
    ``dac`` role. ``None`` asks for the platform's DAC (every such user): the committee of a
    request whose job read no dataset."""
    able = set(
        session.scalars(
            select(User.id)
            .join(UserRole, UserRole.user_id == User.id)
            .where(UserRole.role == REVIEWER_ROLE, User.disabled.is_(False))
        )
    )
    if dataset_ids is None:
        return {"": frozenset(able)}
    wanted = sorted(set(dataset_ids))
    found: dict[str, set[str]] = {d: set() for d in wanted}
    if wanted:
        for dataset_id, user_id in session.execute(
            select(DatasetReviewer.dataset_id, DatasetReviewer.user_id).where(
                DatasetReviewer.dataset_id.in_(wanted)
            )
        ):
            if user_id in able:
                found[dataset_id].add(user_id)
    return {d: frozenset(users) for d, users in found.items()}


def dataset_quorum(dataset: Dataset, policies_dir: Path) -> int | None:
    """How many reviews a request over this dataset needs (its policy's ``required_reviews``,
    never under two); None when the policy cannot be loaded (nothing can be approved then)."""
    try:
        applied = policies_for_datasets([dataset], policies_dir)
    except PolicyUnavailable:
        return None
    return max([MIN_REVIEWS, *(a.describe()["required_reviews"] for a in applied)])


@dataclass(frozen=True)
class CommitteeState:
    """One dataset's committee against its quorum."""

    dataset_id: str
    policy: str
    members: list[str]
    able: int
    quorum: int | None

    @property
    def meetable(self) -> bool:
        return self.quorum is not None and self.able >= self.quorum

    def as_dict(self) -> dict[str, object]:
        return {
            "dataset_id": self.dataset_id,
            "policy": self.policy,
            "members": self.members,
            "able_reviewers": self.able,
            "quorum": self.quorum,
            "quorum_meetable": self.meetable,
        }


def committee_state(session: Session, dataset: Dataset, policies_dir: Path) -> CommitteeState:
    able = active_reviewers(session, [dataset.id])[dataset.id]
    return CommitteeState(
        dataset.id,
        dataset.policy or "default",
        committee(session, dataset.id),
        len(able),
        dataset_quorum(dataset, policies_dir),
    )


def committee_report(session: Session, policies_dir: Path) -> list[CommitteeState]:
    """Every dataset's committee, with whether its quorum can be met at all (before conflicts
    of interest, which depend on the request: see `quorum_shortfall`)."""
    datasets = session.scalars(select(Dataset).order_by(Dataset.id))
    return [committee_state(session, d, policies_dir) for d in datasets]


def assign(session: Session, actor: str, dataset_id: str, user_id: str, policies_dir: Path) -> CommitteeState:
    """Put a DAC member on a dataset's committee (admin). Only a user holding the ``dac``
    role: a researcher on a committee would review their colleagues' work."""
    from tre.registry import get_dataset, get_user  # registry imports this module (review_capacity)

    ds = get_dataset(session, dataset_id)
    user = get_user(session, user_id, REVIEWER_ROLE)
    if REVIEWER_ROLE not in user.role_names:
        raise Unprocessable(
            f"{user_id!r} does not hold the dac role; only DAC members sit on a committee",
            slug="not-a-dac-member",
            title="Not a DAC member",
        )
    if session.get(DatasetReviewer, (dataset_id, user_id)) is not None:
        raise Conflict(
            f"{user_id!r} already sits on the committee of {dataset_id!r}", slug="already-assigned"
        )
    session.add(DatasetReviewer(dataset_id=dataset_id, user_id=user_id, assigned_by=actor))
    session.flush()
    state = committee_state(session, ds, policies_dir)
    record_event(
        session,
        actor=actor,
        action="admin.dac_assigned",
        details={"dataset": dataset_id, "user": user_id, "quorum_meetable": state.meetable},
    )
    return state


def unassign(
    session: Session, actor: str, dataset_id: str, user_id: str, policies_dir: Path, *, force: bool = False
) -> CommitteeState:
    """Take a member off a dataset's committee (admin). Refused (``409 quorum-unmeetable``)
    when the committee would then be smaller than the dataset's quorum, unless ``force``:
    the dataset's requests could then never be decided. Forced, it is audited as such."""
    from tre import review_capacity  # it builds on this module
    from tre.registry import get_dataset  # registry imports this module (review_capacity)

    ds = get_dataset(session, dataset_id)
    row = session.get(DatasetReviewer, (dataset_id, user_id))
    if row is None:
        raise NotFound(f"{user_id!r} does not sit on the committee of {dataset_id!r}")
    # Open requests too: a committee that still meets its quorum on paper may not for a
    # request whose project counts some of its members (conflicts of interest).
    lost = review_capacity.guarded(
        session,
        None,
        f"taking {user_id!r} off the committee of {dataset_id!r}",
        lambda: session.delete(row),
        force=force,
    )
    state = committee_state(session, ds, policies_dir)
    if not state.meetable and not force:
        raise Conflict(
            f"without {user_id!r} the committee of dataset {dataset_id!r} has {state.able} able reviewers "
            f"and its policy needs {state.quorum if state.quorum is not None else 'an unloadable number of'} "
            "reviews: its requests could never be decided. Assign another DAC member first, or force it",
            slug="quorum-unmeetable",
            title="Quorum could not be met",
        )
    details: dict[str, object] = {
        "dataset": dataset_id,
        "user": user_id,
        "quorum_meetable": state.meetable and not lost,
        "forced": force,
    }
    if lost:
        details["quorum_lost_requests"] = sorted(lost.requests)
    record_event(session, actor=actor, action="admin.dac_unassigned", details=details)
    return state


# Here, not in the airlock, because core admin acts (roles, disabling, memberships: see
# tre.review_capacity) must weigh what they take from open requests' quorums.
def conflicted_user_ids(session: Session, req: EgressRequest) -> frozenset[str]:
    """Everyone who may never review ``req`` (the airlock's `_reviewer_conflicts` refuses them):
    its requester, the job's submitter, its project's members and former members."""
    job = session.get(Job, req.job_id)
    members = session.scalars(select(ProjectMember.user_id).where(ProjectMember.project_id == req.project_id))
    return frozenset(
        {req.requested_by, *([job.submitted_by] if job is not None else []), *members}
        | former_member_ids(session, req.project_id)
    )


def quorum_shortfall(session: Session, req: EgressRequest) -> list[str]:
    """The datasets whose committee cannot reach the request's quorum: fewer able reviewers
    (enabled, holding ``dac``, on the committee) who are not conflicted than the required
    reviews. ``""`` stands for the platform DAC of a request over no dataset. Empty: every
    committee can still decide."""
    able = active_reviewers(session, req.dataset_ids or None)
    conflicted = conflicted_user_ids(session, req)
    return [d for d, users in sorted(able.items()) if len(users - conflicted) < req.required_reviews]
