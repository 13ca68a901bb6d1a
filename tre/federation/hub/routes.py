"""The hub's routes for people: researchers submit (`tre submit` against the hub's URL),
follow per-node states, fetch released results and search; admins and auditors oversee.
Every route needs a hub token and a role; ids of other projects answer like unknown ones."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import FileResponse, Response

from tre.access import can_see_project
from tre.api.deps import DbSession, any_role, require_roles
from tre.audit import record_event
from tre.auth.principal import Principal
from tre.errors import no_such
from tre.federation.hub import jobs, nodes, results, search
from tre.federation.wire import FILE_NAME, FederatedJobIn, SearchIn
from tre.store.models import Project

router = APIRouter(tags=["federation"])
Researcher = Annotated[Principal, Depends(require_roles("researcher", "admin"))]
Reader = Annotated[Principal, Depends(any_role())]
Overseer = Annotated[Principal, Depends(require_roles("admin", "auditor"))]
JobId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")]


def _lease(request: Request) -> float:
    return float(request.app.state.settings.federation_lease_s)


@router.post("/api/v1/jobs", status_code=201)
def submit(
    body: FederatedJobIn, principal: Researcher, session: DbSession, request: Request
) -> dict[str, Any]:
    """Submit once: one child job per node of the federated project."""
    job = jobs.submit(session, principal, body)
    return jobs.job_view(session, job, _lease(request))


@router.post("/api/v1/jobs/check", status_code=204, response_class=Response)
def check_job(body: FederatedJobIn, principal: Researcher, session: DbSession) -> Response:
    """Would this submission be taken (204), or why not (its problem)? What `tre submit
    --code` asks a tre API before it packs and uploads the code; without this route at the
    hub, `tre submit --code` to a federated project was answered "no such API route"."""
    jobs.check(session, principal, body)
    return Response(status_code=204)


@router.get("/hub/v1/jobs")
def list_jobs(
    principal: Reader, session: DbSession, request: Request, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[dict[str, Any]]:
    rows = jobs.list_jobs(session, principal, limit)
    return [
        {k: v for k, v in jobs.job_view(session, j, _lease(request)).items() if k != "children"} for j in rows
    ]


@router.get("/hub/v1/jobs/{job_id}")
def show_job(job_id: JobId, principal: Reader, session: DbSession, request: Request) -> dict[str, Any]:
    return jobs.job_view(session, jobs.visible_job(session, principal, job_id), _lease(request))


@router.get("/hub/v1/jobs/{job_id}/results/{node}/{name}", response_class=FileResponse)
def result_file(
    session: DbSession,
    job_id: JobId,
    node: Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")],
    name: Annotated[str, Path(pattern=FILE_NAME)],
    principal: Reader,
    request: Request,
) -> FileResponse:
    """One released file, as the node's DAC released it (its SHA-256 in ``Repr-Digest``)."""
    job = jobs.visible_job(session, principal, job_id)
    row, path = results.result_file(session, request.app.state.settings, job, node, name)
    # Released data leaving the hub: who fetched which bytes, like a node's egress.downloaded.
    record_event(
        session,
        actor=principal.user_id,
        action="federation.result_downloaded",
        project_id=job.project_id,
        details={"fed_job": job.id, "node": node, "name": name, "sha256": row.sha256},
    )
    return FileResponse(path, media_type="application/octet-stream", headers={"X-Sha256": row.sha256})


@router.get("/hub/v1/nodes")
def list_nodes(principal: Overseer, session: DbSession, request: Request) -> list[dict[str, Any]]:
    """Every node: its keys (with a rotation's old key while it is still taken), status."""
    return [nodes.listed(n, _lease(request)) for n in nodes.list_nodes(session)]


@router.post("/hub/v1/search", status_code=201)
def create_search(body: SearchIn, principal: Researcher, session: DbSession) -> dict[str, Any]:
    """A count query to every registered node, answered through each node's agent (counts
    only, under the node's own policy); follow it with ``GET /hub/v1/search/{id}``."""
    return search.view(session, search.create(session, principal, body.model_dump()))


@router.get("/hub/v1/search/{search_id}")
def show_search(search_id: JobId, principal: Reader, session: DbSession) -> dict[str, Any]:
    return search.view(session, search.visible(session, principal, search_id))


@router.get("/api/v1/projects/{project_id}")
def show_project(
    session: DbSession,
    project_id: Annotated[str, Path(min_length=1, max_length=63)],
    principal: Reader,
) -> dict[str, Any]:
    """A federated project as its members see it: the nodes it spans and its code quota
    (what `tre submit --code` checks before uploading)."""
    project = session.get(Project, project_id)
    if project is None or not can_see_project(session, principal, project_id):
        raise no_such("project", project_id)
    return {
        "id": project.id,
        "name": project.name,
        "nodes": nodes.project_nodes(session, project.id),
        "max_code_mb": project.max_code_mb,
        "max_code_files": project.max_code_files,
    }
