"""The node admin's decision to take on a federated project: which local project (members,
grants, quota, approved images) and which datasets its children run as. Without it, every
child of that project is refused here."""

from __future__ import annotations

from sqlalchemy.orm import Session

from tre import registry
from tre.audit import record_event
from tre.code.store import check_sha256
from tre.errors import NotFound
from tre.store.federation_models import FedNodeCodeApproval, FedNodeProject


def map_project(
    session: Session,
    actor: str,
    fed_project: str,
    project_id: str,
    dataset_ids: list[str],
    code_review: bool = False,
) -> FedNodeProject:
    registry.check_slug("federated project", fed_project)
    registry.get_project(session, project_id)
    for dataset_id in dataset_ids:
        registry.get_dataset(session, dataset_id)
    row = session.get(FedNodeProject, fed_project)
    if row is None:
        row = FedNodeProject(fed_project=fed_project, project_id=project_id, mapped_by=actor)
        session.add(row)
    row.project_id, row.dataset_ids, row.mapped_by = project_id, list(dataset_ids), actor
    row.code_review = code_review
    session.flush()
    record_event(
        session,
        actor=actor,
        action="federation.project_mapped",
        project_id=project_id,
        details={"fed_project": fed_project, "datasets": list(dataset_ids), "code_review": code_review},
    )
    return row


def unmap_project(session: Session, actor: str, fed_project: str) -> None:
    row = session.get(FedNodeProject, fed_project)
    if row is not None:
        session.delete(row)
        record_event(
            session, actor=actor, action="federation.project_unmapped", details={"fed_project": fed_project}
        )


def approve_code(session: Session, actor: str, fed_project: str, code_hash: str) -> FedNodeCodeApproval:
    """Site policy under code review: this exact archive may run for the federated project."""
    check_sha256(code_hash)
    if session.get(FedNodeProject, fed_project) is None:
        raise NotFound(f"federated project {fed_project!r} is not mapped on this node")
    row = session.get(FedNodeCodeApproval, (fed_project, code_hash))
    if row is None:
        row = FedNodeCodeApproval(fed_project=fed_project, code_hash=code_hash, approved_by=actor)
        session.add(row)
        session.flush()
        record_event(
            session,
            actor=actor,
            action="federation.code_approved",
            details={"fed_project": fed_project, "code_hash": code_hash},
        )
    return row


def code_approved(session: Session, mapping: FedNodeProject, code_hash: str | None) -> bool:
    """Whether the child's code may run here: always without code review; with it, only an
    approved archive (a child without one runs only its command line, which nobody reviewed)."""
    if not mapping.code_review:
        return True
    return (
        code_hash is not None
        and session.get(FedNodeCodeApproval, (mapping.fed_project, code_hash)) is not None
    )
