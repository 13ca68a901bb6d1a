"""tre's job states onto TES's eleven, both ways (a view, and a listing filter in SQL).

| tre job | TES |
| --- | --- |
| queued | QUEUED |
| running | RUNNING |
| queued or running with a cancel requested | CANCELING |
| succeeded | COMPLETE (the airlock's review state is in the view's tags) |
| failed with an exit code; timed_out | EXECUTOR_ERROR |
| failed without an exit code (the sandbox could not start it, its worker died) | SYSTEM_ERROR |
| cancelled | CANCELED |

INITIALIZING, PAUSED, PREEMPTED and UNKNOWN are never answered: tre has no such states.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, and_, false, or_

from tre.states import JobState
from tre.store.models import Job
from tre.tes.models import TesState


def tes_state(job: Job) -> TesState:
    state = JobState(job.state)
    if state in (JobState.queued, JobState.running):
        if job.cancel_requested:
            return TesState.CANCELING
        return TesState.QUEUED if state == JobState.queued else TesState.RUNNING
    if state == JobState.succeeded:
        return TesState.COMPLETE
    if state == JobState.cancelled:
        return TesState.CANCELED
    if state == JobState.timed_out or job.exit_code is not None:
        return TesState.EXECUTOR_ERROR
    return TesState.SYSTEM_ERROR


def state_condition(state: TesState) -> ColumnElement[bool]:
    """The jobs whose `tes_state` is ``state``, as a WHERE clause."""
    active = Job.state.in_([JobState.queued.value, JobState.running.value])
    conditions: dict[TesState, ColumnElement[bool]] = {
        TesState.QUEUED: and_(Job.state == JobState.queued.value, Job.cancel_requested.is_(False)),
        TesState.RUNNING: and_(Job.state == JobState.running.value, Job.cancel_requested.is_(False)),
        TesState.CANCELING: and_(active, Job.cancel_requested.is_(True)),
        TesState.COMPLETE: Job.state == JobState.succeeded.value,
        TesState.CANCELED: Job.state == JobState.cancelled.value,
        TesState.EXECUTOR_ERROR: or_(
            Job.state == JobState.timed_out.value,
            and_(Job.state == JobState.failed.value, Job.exit_code.is_not(None)),
        ),
        TesState.SYSTEM_ERROR: and_(Job.state == JobState.failed.value, Job.exit_code.is_(None)),
    }
    return conditions.get(state, false())
