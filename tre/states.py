"""Every state machine of the platform, as types and transition tables.

Jobs and egress requests move through a small set of states; the tables below are the only
description of which moves are legal, and `check_move` is the only place a move is judged.
The module imports nothing of the platform, so executors, the store and the airlock can all
share it without pulling each other in.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import TypeVar

from tre.errors import Conflict


class JobState(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    timed_out = "timed_out"
    cancelled = "cancelled"

    @property
    def terminal(self) -> bool:
        return self not in (JobState.queued, JobState.running)


JOB_TRANSITIONS: Mapping[JobState, frozenset[JobState]] = {
    JobState.queued: frozenset({JobState.running, JobState.cancelled, JobState.failed}),
    JobState.running: frozenset(
        {JobState.succeeded, JobState.failed, JobState.timed_out, JobState.cancelled}
    ),
}


class EgressState(StrEnum):
    """checking → blocked (final) | awaiting_review; awaiting_review → approved | rejected |
    conflicted (votes disagree); conflicted → approved | rejected (one resolution); an open
    request (awaiting_review, conflicted) → withdrawn by its requester (final), or → expired
    when it waited longer than ``TRE_EGRESS_OPEN_TTL_DAYS`` (final, swept by the worker)."""

    checking = "checking"
    awaiting_review = "awaiting_review"
    conflicted = "conflicted"
    blocked = "blocked"
    approved = "approved"
    rejected = "rejected"
    withdrawn = "withdrawn"
    expired = "expired"

    @property
    def final(self) -> bool:
        return self in (
            EgressState.blocked,
            EgressState.approved,
            EgressState.rejected,
            EgressState.withdrawn,
            EgressState.expired,
        )


OPEN_EGRESS_STATES = tuple(s for s in EgressState if not s.final)
FINAL_EGRESS_STATES = tuple(s for s in EgressState if s.final)

EGRESS_TRANSITIONS: Mapping[EgressState, frozenset[EgressState]] = {
    EgressState.checking: frozenset({EgressState.blocked, EgressState.awaiting_review}),
    EgressState.awaiting_review: frozenset(
        {
            EgressState.approved,
            EgressState.rejected,
            EgressState.conflicted,
            EgressState.withdrawn,
            EgressState.expired,
        }
    ),
    EgressState.conflicted: frozenset(
        {EgressState.approved, EgressState.rejected, EgressState.withdrawn, EgressState.expired}
    ),
}


class ReviewStage(StrEnum):
    review = "review"  # the blinded votes
    resolution = "resolution"  # the one decision on a conflicted request


class Vote(StrEnum):
    approve = "approve"
    reject = "reject"


class CheckOutcome(StrEnum):
    """``pass``: nothing found; ``flag``: a reviewer must look; ``block``: cannot leave as is."""

    passed = "pass"
    flag = "flag"
    block = "block"

    @property
    def rank(self) -> int:
        return _OUTCOME_RANK[self]


_OUTCOME_RANK = {CheckOutcome.passed: 0, CheckOutcome.flag: 1, CheckOutcome.block: 2}


S = TypeVar("S", bound=StrEnum)


def check_move(table: Mapping[S, frozenset[S]], current: S, target: S) -> S:
    """``target`` if the table allows moving there from ``current``; a Conflict otherwise."""
    if target not in table.get(current, frozenset()):
        raise Conflict(f"cannot move from {current} to {target}", slug="illegal-transition")
    return target
