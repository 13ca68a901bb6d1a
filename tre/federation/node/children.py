"""A child job's life at a node, decided by the node alone: its own project mapping,
membership and grants (`tre.jobs.admission` through `tre.jobs.service.submit`), its own
image approval, its own sandbox (the worker), its own airlock and DAC (through `Airlock`).

Every function here is one unit of work on the node's database; the agent calls them and
does the network part in between. What is reported to the hub is a `ChildState` and a
`Reason` only.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from tre.audit import record_event
from tre.auth.principal import Principal
from tre.config import Settings
from tre.errors import Conflict, NotFound, TreError, Unprocessable
from tre.federation.node.mapping import code_approved
from tre.federation.vocabulary import ChildState, Reason
from tre.federation.wire import MAX_SCREENED_LOG_CHARS, ChildSpec, ScreenedLogIn
from tre.images.catalog import usable_references
from tre.jobs import service
from tre.jobs.admission import JobRequest
from tre.jobs.shown_run import shown_exit_code
from tre.jobs.worker import lost_with_its_worker
from tre.states import EgressState, JobState
from tre.store.db import note_refusals
from tre.store.federation_models import FedNodeChild, FedNodeProject
from tre.store.models import Job, User

log = logging.getLogger(__name__)
ACTOR = "federation-agent"
# A child whose local job died with its worker (a node crash) is run again, this many times in all.
MAX_ATTEMPTS = 2


class Airlock(Protocol):
    """The node's airlock as the agent uses it (egress_review.federated implements it; the
    composition root hands it in, so the core never imports the airlock)."""

    def request_release(
        self,
        session: Session,
        settings: Settings,
        principal: Principal,
        job_id: str,
        wanted: list[str],
        why: str,
    ) -> str: ...

    def request_state(self, session: Session, request_id: str) -> EgressState: ...

    def released_files(
        self, session: Session, settings: Settings, principal: Principal, request_id: str
    ) -> tuple[list[Any], dict[str, Any]]: ...

    def screened_log(self, session: Session, settings: Settings, job: Job) -> bytes: ...


def submitter(spec: ChildSpec) -> Principal:
    """The federated submitter as this node knows them: a local researcher of the same id."""
    return Principal(user_id=spec.submitted_by, roles=frozenset({"researcher"}))


def receive(session: Session, spec: ChildSpec) -> bool:
    """Keep a delivered child; True when it is new (a redelivery changes nothing)."""
    if session.get(FedNodeChild, spec.child_id) is not None:
        return False
    session.add(
        FedNodeChild(child_id=spec.child_id, fed_job_id=spec.job_id, spec=spec.model_dump(mode="json"))
    )
    session.flush()
    record_event(
        session,
        actor=ACTOR,
        action="federation.child_received",
        details={
            "child": spec.child_id,
            "fed_job": spec.job_id,
            "fed_project": spec.project_id,
            "submitted_by": spec.submitted_by,
            "image": spec.image,
            "code_hash": spec.code_hash,
        },
    )
    return True


def misaddressed(session: Session, spec: ChildSpec) -> None:
    """Audit a child dropped for an id not derived from its parent and this node (the ids are
    bounded hex by then: `tre.federation.wire.ReceivedChild`)."""
    record_event(
        session,
        actor=ACTOR,
        action="federation.child_misaddressed",
        details={"child": spec.child_id, "fed_job": spec.job_id, "fed_project": spec.project_id},
    )


def _end(session: Session, row: FedNodeChild, state: ChildState, reason: Reason) -> None:
    if (row.state, row.reason) == (state.value, reason.value):
        return
    row.state, row.reason = state.value, reason.value
    record_event(
        session,
        actor=ACTOR,
        action="federation.child_state",
        job_id=row.local_job_id,
        details={"child": row.child_id, "fed_job": row.fed_job_id, "state": row.state, "reason": row.reason},
    )


def not_started(session: Session, child_id: str) -> ChildSpec | None:
    """A received child that has neither a local job nor a final state (the node may have
    stopped between receiving and starting it), or None."""
    row = session.get(FedNodeChild, child_id)
    if row is None or row.local_job_id is not None or ChildState(row.state).final:
        return None
    return ChildSpec.model_validate(row.spec)


def start(session: Session, settings: Settings, child_id: str, code_ok: bool = True) -> None:
    """Admit the child under this node's own rules and queue its local job, or refuse it."""
    row = session.get(FedNodeChild, child_id)
    if row is None or row.local_job_id is not None or ChildState(row.state).final:
        return
    spec = ChildSpec.model_validate(row.spec)
    mapping = session.get(FedNodeProject, spec.project_id)
    if mapping is None:
        return _end(session, row, ChildState.refused, Reason.project_not_mapped)
    user = session.get(User, spec.submitted_by)
    if user is None or user.disabled:
        return _end(session, row, ChildState.refused, Reason.not_admitted)
    if spec.image not in usable_references(session, mapping.project_id):
        return _end(session, row, ChildState.refused, Reason.image_not_approved)
    if not code_approved(session, mapping, spec.code_hash):
        return _end(session, row, ChildState.refused, Reason.code_not_approved)
    if not code_ok:
        return _end(session, row, ChildState.refused, Reason.code_unavailable)
    _submit(session, settings, row, spec, mapping)


def _submit(
    session: Session, settings: Settings, row: FedNodeChild, spec: ChildSpec, mapping: FedNodeProject
) -> None:
    request = JobRequest(
        project_id=mapping.project_id,
        image=spec.image,
        command=spec.command,
        dataset_ids=list(mapping.dataset_ids),
        cpu=spec.cpu,
        memory_mb=spec.memory_mb,
        gpu=spec.gpu,
        time_limit_s=spec.time_limit_s,
        output_limit_mb=spec.output_limit_mb,
        code_hash=spec.code_hash,
    )
    try:
        job = service.submit(session, settings, submitter(spec), request)
    except TreError as exc:
        log.info("child %s not admitted: %s", row.child_id, exc)  # the detail stays here
        note_refusals(session, exc)  # the denial, written after the agent's unit of work
        return _end(session, row, ChildState.refused, Reason.not_admitted)
    row.local_job_id = job.id
    row.attempts += 1
    record_event(
        session,
        actor=ACTOR,
        action="federation.child_started",
        project_id=job.project_id,
        job_id=job.id,
        details={"child": row.child_id, "fed_job": row.fed_job_id, "attempt": row.attempts},
    )
    _end(session, row, ChildState.queued, Reason.none)


def open_children(session: Session) -> list[str]:
    rows = session.scalars(
        select(FedNodeChild.child_id).where(FedNodeChild.state.not_in(("released", "refused", "failed")))
    )
    return list(rows)


def advance(session: Session, settings: Settings, airlock: Airlock, child_id: str) -> bool:
    """Follow the local job and its egress request one step; True when the release is
    approved and the files are ready to upload."""
    row = session.get(FedNodeChild, child_id)
    if row is None or ChildState(row.state).final:
        return False
    if row.local_job_id is None:
        return False  # started by the agent (`NodeAgent._start`), which fetches its code first
    job = session.get(Job, row.local_job_id)
    if job is None:
        _end(session, row, ChildState.failed, Reason.job_failed)
        return False
    spec = ChildSpec.model_validate(row.spec)
    state = JobState(job.state)
    if state in (JobState.queued, JobState.running):
        _end(session, row, ChildState(state.value), Reason.none)
        return False
    if state != JobState.succeeded:
        if lost_with_its_worker(job) and row.attempts < MAX_ATTEMPTS:
            mapping = session.get(FedNodeProject, spec.project_id)
            if mapping is not None:
                record_event(
                    session,
                    actor=ACTOR,
                    action="federation.child_retried",
                    job_id=job.id,
                    details={"child": row.child_id, "reason": Reason.release_interrupted.value},
                )
                _submit(session, settings, row, spec, mapping)
                return False
        reason = {JobState.timed_out: Reason.job_timed_out, JobState.cancelled: Reason.job_cancelled}.get(
            state, Reason.job_failed
        )
        _end(session, row, ChildState.failed, reason)
        return False
    if row.egress_request_id is None:
        why = f"federated job {spec.job_id} of federated project {spec.project_id} (child {spec.child_id})"
        try:
            row.egress_request_id = airlock.request_release(
                session, settings, submitter(spec), job.id, list(spec.release), why
            )
        except (Unprocessable, NotFound) as exc:
            log.info("child %s: nothing to release: %s", row.child_id, exc)
            note_refusals(session, exc)  # written after the agent's unit of work, if any
            # More files or bytes than the policy lets one request hold: the airlock's limits
            # refuse it before staging, as they would have blocked it after.
            over = getattr(exc, "slug", "") == "request-over-limits"
            _end(
                session, row, ChildState.refused, Reason.egress_blocked if over else Reason.outputs_not_found
            )
            return False
        except (Conflict, TreError) as exc:
            log.info("child %s: release refused: %s", row.child_id, exc)
            # An output changed since its job recorded it (``egress.stage_refused``): its entry
            # is written after the agent's unit of work, which records the child refused.
            note_refusals(session, exc)
            _end(session, row, ChildState.refused, Reason.not_admitted)
            return False
    egress = airlock.request_state(session, row.egress_request_id)
    if egress == EgressState.blocked:
        _end(session, row, ChildState.refused, Reason.egress_blocked)
    elif egress == EgressState.rejected:
        _end(session, row, ChildState.refused, Reason.dac_rejected)
    elif egress == EgressState.withdrawn:
        _end(session, row, ChildState.refused, Reason.release_withdrawn)
    elif egress == EgressState.expired:
        _end(session, row, ChildState.refused, Reason.release_expired)
    elif egress == EgressState.approved:
        _end(session, row, ChildState.awaiting_review, Reason.none)
        return True
    else:
        _end(session, row, ChildState.awaiting_review, Reason.none)
    return False


def mark_released(session: Session, child_id: str) -> None:
    row = session.get(FedNodeChild, child_id)
    if row is not None:
        _end(session, row, ChildState.released, Reason.none)
        row.reported = f"{row.state}:{row.reason}"


def cancel(session: Session, child_id: str) -> bool:
    """The hub cancelled this child's federated job: cancel the local job (the worker stops
    it if it runs; the child then ends ``failed`` / ``job_cancelled`` as any cancelled job),
    or end a child not started yet. False for a child this node never received."""
    row = session.get(FedNodeChild, child_id)
    if row is None:
        return False
    if ChildState(row.state).final:
        return True
    job = session.get(Job, row.local_job_id) if row.local_job_id else None
    if job is not None and job.cancel_requested:
        return True  # asked before: the worker is stopping it
    record_event(
        session,
        actor=ACTOR,
        action="federation.child_cancel_requested",
        job_id=job.id if job is not None else None,
        details={"child": row.child_id, "fed_job": row.fed_job_id},
    )
    if job is None:
        _end(session, row, ChildState.failed, Reason.job_cancelled)
    elif not JobState(job.state).terminal:
        try:
            service.cancel(session, submitter(ChildSpec.model_validate(row.spec)), job.id)
        except TreError as exc:  # the submitter left the project: cancel as the node itself
            log.info("child %s: cancelling its job as the node: %s", row.child_id, exc)
            job.cancel_requested = True
    return True


def unreported(session: Session) -> list[tuple[str, str, str]]:
    """(child, state, reason) the hub has not acknowledged yet (released goes with the upload)."""
    rows = session.scalars(select(FedNodeChild))
    return [
        (r.child_id, r.state, r.reason)
        for r in rows
        if r.reported != f"{r.state}:{r.reason}" and r.state != ChildState.released
    ]


def mark_reported(session: Session, child_id: str, state: str, reason: str) -> None:
    row = session.get(FedNodeChild, child_id)
    if row is not None:
        row.reported = f"{state}:{reason}"


def release_material(
    session: Session, settings: Settings, airlock: Airlock, child_id: str
) -> tuple[list[Any], dict[str, Any]]:
    row = session.get(FedNodeChild, child_id)
    if row is None or row.egress_request_id is None:
        raise NotFound(f"no release for child {child_id}")
    spec = ChildSpec.model_validate(row.spec)
    return airlock.released_files(session, settings, submitter(spec), row.egress_request_id)


def screened_log(
    session: Session, settings: Settings, airlock: Airlock, child_id: str
) -> ScreenedLogIn | None:
    """What the hub may show of the child's local job, once it ended: its log as the node's
    researcher screening shows the submitter (within the budgets) and its exit code. None
    while it runs, or for a child that never had a job (refused before it ran)."""
    row = session.get(FedNodeChild, child_id)
    if row is None or row.local_job_id is None:
        return None
    job = session.get(Job, row.local_job_id)
    if job is None or not JobState(job.state).terminal:
        return None
    text = airlock.screened_log(session, settings, job).decode("utf-8", errors="replace")
    # The exit code as a class (tre.jobs.shown_run): the hub shows it to the submitter.
    exit_code = shown_exit_code(job.exit_code, exact=False)
    return ScreenedLogIn(exit_code=exit_code, log=text[:MAX_SCREENED_LOG_CHARS])
