"""Federated jobs at the hub: fan-out into children, delivery to nodes, per-node states.

Delivery is at-least-once and idempotent: a child stays ``pending`` until its node
acknowledges it with a state, and is offered again once its lease has run out (the node was
offline or died before acknowledging); the child's id is derived from the parent and the
node, and the node keeps what it received, so a second delivery never makes a second job.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from tre.access import can_see_project, is_member, visible_project_ids
from tre.audit import record_event
from tre.audit.log import AuditEvent
from tre.auth.principal import Principal
from tre.errors import AdmissionDenied, Conflict, Forbidden, NotFound
from tre.federation.hub.nodes import node_status, project_nodes
from tre.federation.hub.refusals import SubmissionRefusal
from tre.federation.vocabulary import PROGRESS, ChildState, parent_state
from tre.federation.wire import ChildSpec, FederatedJobIn, StateIn, child_id
from tre.store.base import utcnow
from tre.store.federation_models import FedChild, FedJob, FedNode, FedResultFile
from tre.store.models import CodeUpload, Project

SPEC_FIELDS = ("image", "command", "cpu", "memory_mb", "gpu", "time_limit_s", "output_limit_mb", "code_hash")


def _refuse(
    session: Session, principal: Principal, body: FederatedJobIn, reason: SubmissionRefusal, detail: str
) -> AdmissionDenied:
    """The refusal, audited as ``federation.submission_refused`` with its fixed reason. The
    entry is written after the request's rollback in a unit of work of its own and kept on
    disk if the store cannot take it then (`TreError.refusals`): written in the request's
    transaction, it was lost whenever that write or its commit failed."""
    exc = AdmissionDenied(detail)
    exc.refusals = (
        AuditEvent(
            principal.user_id,
            "federation.submission_refused",
            project_id=body.project_id,
            details={"reason": reason.value, "image": body.image, "code_hash": body.code_hash},
        ),
    )
    return exc


def _admit(session: Session, principal: Principal, body: FederatedJobIn) -> list[str]:
    """The nodes a submission fans out to, or the reason it is refused."""
    project = session.get(Project, body.project_id)
    if project is None or not is_member(session, body.project_id, principal.user_id):
        detail = f"you are not a member of project {body.project_id!r}"
        raise _refuse(session, principal, body, SubmissionRefusal.not_member, detail)
    spanned = project_nodes(session, body.project_id)
    if not spanned:
        detail = f"project {body.project_id!r} is not a federated project"
        raise _refuse(session, principal, body, SubmissionRefusal.not_federated, detail)
    # No work for a revoked node: it could not fetch it, and it is no longer trusted with it.
    nodes = [n for n in spanned if node_status(session.get(FedNode, n), 0) != "revoked"]
    if not nodes:
        detail = f"every node of project {body.project_id!r} was revoked"
        raise _refuse(session, principal, body, SubmissionRefusal.nodes_revoked, detail)
    if body.code_hash and session.get(CodeUpload, (body.project_id, body.code_hash)) is None:
        detail = f"code {body.code_hash} was not uploaded to project {body.project_id!r}"
        raise _refuse(session, principal, body, SubmissionRefusal.code_not_uploaded, detail)
    return nodes


def check(session: Session, principal: Principal, body: FederatedJobIn) -> list[str]:
    """The hub's answer to ``tre submit --code``'s admission question (``POST
    /api/v1/jobs/check``, as on a single tre): the nodes a submission would fan out to, or
    its refusal (audited as a submission's), before the code is packed and uploaded. The code
    is not asked about: it is uploaded after this answer."""
    return _admit(session, principal, body.model_copy(update={"code_hash": None}))


def submit(
    session: Session, principal: Principal, body: FederatedJobIn, tes: dict[str, Any] | None = None
) -> FedJob:
    """Accept a submission from a member of the federated project; one child per node.
    ``tes``: the TES task as sent (`tre.federation.hub.tes`), kept for its views only.
    A refusal is itself an audit entry (`_refuse`)."""
    nodes = _admit(session, principal, body)
    spec: dict[str, Any] = {k: getattr(body, k) for k in SPEC_FIELDS} | {"release": list(body.release)}
    if tes is not None:
        spec["tes"] = tes
    job = FedJob(project_id=body.project_id, submitted_by=principal.user_id, spec=spec)
    session.add(job)
    session.flush()
    for node in nodes:
        session.add(FedChild(id=child_id(job.id, node), job_id=job.id, node=node))
    session.flush()
    record_event(
        session,
        actor=principal.user_id,
        action="federation.job_submitted",
        project_id=job.project_id,
        details={"fed_job": job.id, "nodes": nodes, **{k: spec[k] for k in ("image", "code_hash")}},
    )
    return job


def child_spec(job: FedJob, child: FedChild) -> ChildSpec:
    return ChildSpec.model_validate(
        {
            "child_id": child.id,
            "job_id": job.id,
            "project_id": job.project_id,
            "submitted_by": job.submitted_by,
            **{k: job.spec.get(k) for k in SPEC_FIELDS},
            "release": list(job.spec.get("release", [])),
        }
    )


def take_children(session: Session, node: str, lease_s: float) -> list[ChildSpec]:
    """Children this node has not acknowledged, not offered within the lease; marks them offered."""
    now = utcnow()
    stale = now - timedelta(seconds=lease_s)
    children = list(
        session.scalars(
            select(FedChild)
            .join(FedJob, FedJob.id == FedChild.job_id)
            .where(FedChild.node == node, FedChild.state == ChildState.pending.value)
            .where(FedJob.cancel_requested_at.is_(None))  # a cancelled job's child: `take_cancels`
            .where(or_(FedChild.delivered_at.is_(None), FedChild.delivered_at < stale))
            .order_by(FedChild.id)
            .limit(50)
        )
    )
    specs = []
    for child in children:
        child.delivered_at = now
        child.deliveries += 1
        job = session.get(FedJob, child.job_id)
        if job is not None:
            specs.append(child_spec(job, child))
    return specs


def take_cancels(session: Session, node: str) -> list[str]:
    """This node's open children of cancelled jobs: sent with every poll until each is final
    (cancelling is idempotent at the node)."""
    rows = session.scalars(
        select(FedChild.id)
        .join(FedJob, FedJob.id == FedChild.job_id)
        .where(FedChild.node == node, FedJob.cancel_requested_at.is_not(None))
        .where(FedChild.state.not_in([s.value for s in ChildState if s.final]))
        .order_by(FedChild.id)
        .limit(1000)
    )
    return list(rows)


def request_cancel(session: Session, principal: Principal, job_id: str) -> FedJob:
    """The submitter or an admin cancels a federated job: each node still running its child
    is told with its next poll. Asking again changes nothing; a job ended at every node is
    a conflict (as a single tre answers for a job that ended)."""
    job = visible_job(session, principal, job_id)
    if job.submitted_by != principal.user_id and not principal.has("admin"):
        raise Forbidden("only the submitter or an admin can cancel a federated job")
    if job.cancel_requested_at is not None:
        return job
    open_children = list(
        session.scalars(
            select(FedChild.node).where(
                FedChild.job_id == job.id, FedChild.state.not_in([s.value for s in ChildState if s.final])
            )
        )
    )
    if not open_children:
        raise Conflict(f"federated job {job.id} already ended at every node", slug="already-ended")
    job.cancel_requested_at, job.cancel_requested_by = utcnow(), principal.user_id
    record_event(
        session,
        actor=principal.user_id,
        action="federation.job_cancel_requested",
        project_id=job.project_id,
        details={"fed_job": job.id, "nodes_told": sorted(open_children)},
    )
    return job


def node_child(session: Session, node: str, cid: str) -> FedChild:
    child = session.get(FedChild, cid)
    if child is None or child.node != node:
        # A node sees only its own children; others' ids answer like unknown ones.
        raise NotFound(f"no child {cid!r} for node {node!r}")
    return child


def set_state(session: Session, node: str, cid: str, new: StateIn) -> FedChild:
    """A node's report. A child only moves forward and final states stay final: a repeated
    report changes nothing, a late, reordered or contradicting one is audited and changes
    nothing; ``released`` comes only with verified results (`tre.federation.hub.results`)."""
    child = node_child(session, node, cid)
    if new.state == ChildState.released:
        raise Conflict("a child is released only by uploading its released results", slug="release-by-upload")
    if new.state == ChildState.pending:
        raise Conflict("a node cannot put a child back to pending")
    current = ChildState(child.state)
    if (current.value, child.reason) == (new.state.value, new.reason.value):
        return child
    job = session.get(FedJob, child.job_id)
    if current.final or PROGRESS[new.state] < PROGRESS[current]:
        # Late, reordered or contradicting a final state: kept out, and kept in the audit log
        # (a node whose reports keep going back is worth an admin's look).
        record_event(
            session,
            actor=f"node:{node}",
            action="federation.child_state_ignored",
            project_id=job.project_id if job else None,
            details={
                "fed_job": child.job_id,
                "child": cid,
                "state": new.state.value,
                "reason": new.reason.value,
                "kept": child.state,
                "kept_reason": child.reason,
            },
        )
        return child
    child.state, child.reason, child.updated_at = new.state.value, new.reason.value, utcnow()
    record_event(
        session,
        actor=f"node:{node}",
        action="federation.child_state",
        project_id=job.project_id if job else None,
        details={"fed_job": child.job_id, "child": cid, "state": child.state, "reason": child.reason},
    )
    return child


def visible_job(session: Session, principal: Principal, job_id: str) -> FedJob:
    job = session.get(FedJob, job_id)
    if job is None or not can_see_project(session, principal, job.project_id):
        raise NotFound(f"no federated job {job_id!r}")
    return job


def job_view(session: Session, job: FedJob, lease_s: float) -> dict[str, Any]:
    """The parent's state and, side by side, each node's state, reason and released files."""
    children = list(
        session.scalars(select(FedChild).where(FedChild.job_id == job.id).order_by(FedChild.node))
    )
    rows = []
    for child in children:
        status = node_status(session.get(FedNode, child.node), lease_s)
        files = session.scalars(
            select(FedResultFile).where(FedResultFile.child_id == child.id).order_by(FedResultFile.name)
        )
        rows.append(
            {
                "node": child.node,
                "child_id": child.id,
                "state": child.state,
                "reason": child.reason,
                "node_status": status,
                "deliveries": child.deliveries,
                "updated_at": child.updated_at.isoformat(),
                "files": [{"name": f.name, "sha256": f.sha256, "size": f.size} for f in files],
                "checkpoint": child.checkpoint,
                "disclosure_record": child.disclosure_record,
            }
        )
    # A node is given one lease to pick up a new job before its silence counts against it.
    fresh = utcnow() - job.created_at < timedelta(seconds=lease_s)
    state = parent_state(
        [
            (
                str(r["state"]),
                r["node_status"] == "online"
                or (fresh and r["deliveries"] == 0 and r["node_status"] != "revoked"),
            )
            for r in rows
        ]
    )
    return {
        "id": job.id,
        "project_id": job.project_id,
        "submitted_by": job.submitted_by,
        "created_at": job.created_at.isoformat(),
        "state": state.value,
        "spec": _public_spec(job.spec),
        "children": rows,
    }


def _public_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The job's spec as `GET /hub/v1/jobs` shows it: a TES task's inline inputs' content is
    left out (it is the code archive, by hash; the TES FULL view shows it)."""
    tes = spec.get("tes")
    if not isinstance(tes, dict) or not tes.get("inputs"):
        return spec
    inputs = [{k: v for k, v in i.items() if k != "content"} for i in tes["inputs"]]
    return {**spec, "tes": {**tes, "inputs": inputs}}


def list_jobs(session: Session, principal: Principal, limit: int = 100) -> list[FedJob]:
    query = select(FedJob).order_by(FedJob.created_at.desc(), FedJob.id.desc()).limit(limit)
    visible = visible_project_ids(session, principal)
    if visible is not None:
        query = query.where(FedJob.project_id.in_(visible))
    return list(session.scalars(query))
