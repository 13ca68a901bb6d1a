"""GA4GH TES 1.1 at the hub: a workflow engine submits a federated job as a TES task.

The task is read exactly as a single tre reads it (`tre.tes.submission.plan_task`: one
executor, inline inputs become the code archive, ``tags.Project`` names the project), except
that it may name no dataset: each node's admin chooses those. A task is the federated job;
its state sums up the nodes' states, which are listed in the task's tags as
``tre.node.<name>``. Outputs come only through `GET /hub/v1/jobs/{id}` and its results.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from sqlalchemy.orm import Session

from tre import __version__
from tre.api.deps import any_role, get_session, require_roles
from tre.auth.principal import Principal
from tre.errors import Unprocessable
from tre.federation.hub import jobs
from tre.federation.wire import FederatedJobIn
from tre.tes.models import (
    ServiceOrganization,
    TesCreateTaskResponse,
    TesServiceInfo,
    TesServiceType,
    TesState,
    TesTask,
    TesTaskView,
)
from tre.tes.service import store_inline_code
from tre.tes.submission import plan_task

router = APIRouter(prefix="/ga4gh/tes/v1", tags=["federation TES"])
Submitter = Annotated[Principal, Depends(require_roles("researcher", "admin"))]
Reader = Annotated[Principal, Depends(any_role())]
DbSession = Annotated[Session, Depends(get_session)]
PARENT_TO_TES = {
    "running": TesState.RUNNING,
    "complete": TesState.COMPLETE,
    "partial": TesState.COMPLETE,
    "failed": TesState.EXECUTOR_ERROR,
}


@router.get("/service-info", response_model=TesServiceInfo, response_model_exclude_none=True)
def service_info(request: Request, principal: Reader) -> TesServiceInfo:
    base = str(request.base_url).rstrip("/")
    return TesServiceInfo(
        id="org.tre.hub.tes",
        name="tre hub",
        type=TesServiceType(group="org.ga4gh", artifact="tes", version="1.1.0"),
        description=(
            "A federation hub: each task runs at every node of its project that admits it, in the "
            "node's sandbox; only what each node's DAC released comes back (GET /hub/v1/jobs/{id})."
        ),
        organization=ServiceOrganization(name="tre", url=base),
        documentationUrl=base + "/docs",
        environment="tre-hub",
        version=__version__,
        storage=[],
    )


@router.post("/tasks", response_model=TesCreateTaskResponse)
def create_task(
    body: TesTask, principal: Submitter, session: DbSession, request: Request
) -> TesCreateTaskResponse:
    plan = plan_task(body)
    if plan.request.dataset_ids:
        raise Unprocessable("a federated task names no dataset: each node's admin chooses its datasets")
    code_hash = None
    if plan.code_files:
        code_hash = store_inline_code(session, request.app.state.settings, principal, plan).sha256
    r = plan.request
    submission = FederatedJobIn(
        project_id=r.project_id,
        image=r.image,
        command=r.command,
        cpu=r.cpu,
        memory_mb=r.memory_mb,
        gpu=r.gpu,
        time_limit_s=r.time_limit_s,
        output_limit_mb=r.output_limit_mb,
        code_hash=code_hash,
    )
    return TesCreateTaskResponse(id=jobs.submit(session, principal, submission).id)


@router.get("/tasks/{task_id}", response_model=TesTaskView, response_model_exclude_none=True)
def get_task(
    task_id: Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")],
    principal: Reader,
    session: DbSession,
    request: Request,
) -> TesTaskView:
    job = jobs.visible_job(session, principal, task_id)
    view = jobs.job_view(session, job, request.app.state.settings.federation_lease_s)
    tags = {"Project": job.project_id, "tre.federation.state": view["state"]}
    tags |= {f"tre.node.{c['node']}": c["state"] for c in view["children"]}
    return TesTaskView(
        id=job.id,
        state=PARENT_TO_TES[view["state"]],
        tags=tags,
        creation_time=job.created_at.isoformat(),
    )
