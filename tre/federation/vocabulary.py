"""The fixed words a node may say about a child job, and how the hub sums them up.

Nothing a job controls crosses the network as text: a node reports one of these states and
one of these reasons, never its local job's reason, log or file names it did not release.
"""

from __future__ import annotations

from enum import StrEnum


class ChildState(StrEnum):
    pending = "pending"  # at the hub, not yet acknowledged by the node
    queued = "queued"
    running = "running"
    awaiting_review = "awaiting_review"
    released = "released"
    refused = "refused"
    failed = "failed"

    @property
    def final(self) -> bool:
        return self in (ChildState.released, ChildState.refused, ChildState.failed)


class Reason(StrEnum):
    none = ""
    project_not_mapped = "project_not_mapped"  # the node's admin has not taken the project on
    not_admitted = "not_admitted"  # the node's own admission refused (membership, grant, quota)
    image_not_approved = "image_not_approved"  # the node's admin has not approved the image
    code_not_approved = "code_not_approved"  # code review is on here and this code is not approved
    code_unavailable = "code_unavailable"  # the code archive could not be fetched or verified
    job_failed = "job_failed"
    job_timed_out = "job_timed_out"
    job_cancelled = "job_cancelled"
    outputs_not_found = "outputs_not_found"  # the files to release are not among the outputs
    egress_blocked = "egress_blocked"  # the node's automated airlock checks blocked them
    dac_rejected = "dac_rejected"  # the node's data access committee rejected the release
    release_withdrawn = "release_withdrawn"  # the release request was withdrawn on the node
    release_expired = "release_expired"  # the release request waited past the node's review time
    release_interrupted = "release_interrupted"  # the local job was lost in a crash, retried


# Which reasons go with which state: a report pairing them otherwise is not one a node makes
# (`tre.federation.node.children`), so the hub refuses it rather than show the researcher
# e.g. "queued: dac_rejected". ``release_interrupted`` is said only in the node's audit log.
REASONS: dict[ChildState, frozenset[Reason]] = {
    ChildState.queued: frozenset({Reason.none}),
    ChildState.running: frozenset({Reason.none}),
    ChildState.awaiting_review: frozenset({Reason.none}),
    ChildState.released: frozenset({Reason.none}),
    ChildState.refused: frozenset(
        {
            Reason.project_not_mapped,
            Reason.not_admitted,
            Reason.image_not_approved,
            Reason.code_not_approved,
            Reason.code_unavailable,
            Reason.outputs_not_found,
            Reason.egress_blocked,
            Reason.dac_rejected,
            Reason.release_withdrawn,
            Reason.release_expired,
        }
    ),
    ChildState.failed: frozenset({Reason.job_failed, Reason.job_timed_out, Reason.job_cancelled}),
}

# How far along a child is. A node's reports may arrive out of order (a report the hub took
# but whose answer was lost is sent again after a later one; a node retries a child lost with
# its worker, from queued); the hub never moves a child back: an earlier state than the one it
# shows is answered with the state it keeps.
PROGRESS: dict[ChildState, int] = {
    ChildState.pending: 0,
    ChildState.queued: 1,
    ChildState.running: 2,
    ChildState.awaiting_review: 3,
    ChildState.released: 4,
    ChildState.refused: 4,
    ChildState.failed: 4,
}


def fits(state: ChildState, reason: Reason) -> bool:
    """Whether a node could report this state with this reason."""
    return reason in REASONS.get(state, frozenset())


class ParentState(StrEnum):
    running = "running"
    complete = "complete"
    partial = "partial"
    failed = "failed"


def parent_state(children: list[tuple[str, bool]]) -> ParentState:
    """Sum up (child state, node online) pairs. A child still moving on an online node keeps
    the parent running; once every child is final or its node offline, the parent is complete
    (all released), partial (some released) or failed (none)."""
    moving = [s for s, online in children if not ChildState(s).final and online]
    if moving:
        return ParentState.running
    released = sum(1 for s, _ in children if s == ChildState.released)
    if children and released == len(children):
        return ParentState.complete
    return ParentState.partial if released else ParentState.failed
