"""The node admin's decision to take on a federated project: which local project (members,
grants, quota, approved images) and which datasets its children run as. Without it, every
child of that project is refused here."""

from __future__ import annotations

from sqlalchemy.orm import Session

from tre import registry
from tre.audit import record_event
from tre.store.federation_models import FedNodeProject


def map_project(
    session: Session, actor: str, fed_project: str, project_id: str, dataset_ids: list[str]
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
    session.flush()
    record_event(
        session,
        actor=actor,
        action="federation.project_mapped",
        project_id=project_id,
        details={"fed_project": fed_project, "datasets": list(dataset_ids)},
    )
    return row


def unmap_project(session: Session, actor: str, fed_project: str) -> None:
    row = session.get(FedNodeProject, fed_project)
    if row is not None:
        session.delete(row)
        record_event(
            session, actor=actor, action="federation.project_unmapped", details={"fed_project": fed_project}
        )
