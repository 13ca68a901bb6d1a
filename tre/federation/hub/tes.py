"""GA4GH TES 1.1 at the hub: a workflow engine submits a federated job as a TES task.

The task is read exactly as a single tre reads it (`tre.tes.submission.plan_task`: one
executor, inline inputs become the code archive, ``tags.Project`` names the project), except
that it may name no dataset: each node's admin chooses those. A task is the federated job;
its state sums up the nodes' states, which are listed in the task's tags as
``tre.node.<name>``. Outputs come only through `GET /hub/v1/jobs/{id}` and its results.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from tre import __version__
from tre.access import visible_project_ids
from tre.api.deps import DbSession, any_role, require_roles
from tre.auth.principal import Principal
from tre.config import Settings
from tre.errors import Unprocessable
from tre.federation.hub import jobs, tasklogs
from tre.federation.vocabulary import ChildState
from tre.federation.wire import FederatedJobIn
from tre.store.federation_models import FedJob
from tre.tes.models import (
    ServiceOrganization,
    TesCancelTaskResponse,
    TesCreateTaskResponse,
    TesListTasksResponse,
    TesServiceInfo,
    TesServiceType,
    TesState,
    TesTask,
    TesTaskView,
    View,
)
from tre.tes.service import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    decode_page_token,
    encode_page_token,
    store_inline_code,
    tags_match,
)
from tre.tes.submission import plan_task

router = APIRouter(prefix="/ga4gh/tes/v1", tags=["federation TES"])
Submitter = Annotated[Principal, Depends(require_roles("researcher", "admin"))]
Reader = Annotated[Principal, Depends(any_role())]
# A listing reads at most this many federated jobs per answer, whatever its filters match.
MAX_SCANNED = 2000
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
    # The task as sent, for its views (the FULL view with the inline inputs' content, which
    # is also the code archive). Nodes receive only the job body (`jobs.child_spec`).
    sent = body.model_dump(exclude_none=True, mode="json", exclude={"id", "state", "logs", "creation_time"})
    return TesCreateTaskResponse(id=jobs.submit(session, principal, submission, tes=sent).id)


def tes_state(job: FedJob, view: dict[str, Any]) -> TesState:
    """The parent's state in TES words. A cancelled job is CANCELING while a child is still
    open (its node is told with its next poll), then CANCELED, or COMPLETE when a node had
    released results before the cancel reached it."""
    if job.cancel_requested_at is None:
        return PARENT_TO_TES[view["state"]]
    if any(not ChildState(c["state"]).final for c in view["children"]):
        return TesState.CANCELING
    if any(c["state"] == ChildState.released for c in view["children"]):
        return TesState.COMPLETE
    return TesState.CANCELED


def _task_tags(job: FedJob, view: dict[str, Any]) -> dict[str, str]:
    tags = dict(job.spec.get("tes", {}).get("tags") or {})
    tags |= {"Project": job.project_id, "tre.federation.state": view["state"]}
    tags |= {f"tre.node.{c['node']}": c["state"] for c in view["children"]}
    return tags


def _task(
    session: Session, settings: Settings, job: FedJob, view: dict[str, Any], shown: View, base_url: str
) -> TesTaskView:
    """The task in a TES view. MINIMAL: id and state. BASIC: the task as sent less the inline
    inputs' content, the nodes' states as tags, a task log per node (its released files, its
    local job's exit code). FULL: also the inline content, each node's screened log as its
    ``stdout`` and its state as a system log (`tre.federation.hub.tasklogs`)."""
    state = tes_state(job, view)
    if shown == View.MINIMAL:
        return TesTaskView(id=job.id, state=state)
    full = shown == View.FULL
    doc = dict(job.spec.get("tes") or {})
    if not doc:
        # A job submitted with `tre submit` at the hub: its executor is its image and command.
        doc = {"executors": [{"image": job.spec["image"], "command": job.spec["command"]}]}
    if not full and doc.get("inputs"):
        doc["inputs"] = [{k: v for k, v in i.items() if k != "content"} for i in doc["inputs"]]
    return TesTaskView.model_validate(
        {
            **doc,
            "id": job.id,
            "state": state,
            "tags": _task_tags(job, view),
            "logs": tasklogs.task_logs(session, settings, job, view, base_url, full),
            "creation_time": job.created_at.isoformat().replace("+00:00", "Z"),
        }
    )


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


@router.get("/tasks/{task_id}", response_model=TesTaskView, response_model_exclude_none=True)
def get_task(
    session: DbSession,
    task_id: Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")],
    principal: Reader,
    request: Request,
    view: View = View.MINIMAL,
) -> TesTaskView:
    job = jobs.visible_job(session, principal, task_id)
    settings = request.app.state.settings
    shown = jobs.job_view(session, job, settings.federation_lease_s)
    return _task(session, settings, job, shown, view, _base(request))


@router.post("/tasks/{task_id}:cancel", response_model=TesCancelTaskResponse)
def cancel_task(
    session: DbSession,
    task_id: Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")],
    principal: Submitter,
) -> TesCancelTaskResponse:
    """Cancel a federated task (the submitter or an admin): every node still running its
    child cancels its local job; asking again answers ``{}`` too, a task ended at every
    node ``409``."""
    jobs.request_cancel(session, principal, task_id)
    return TesCancelTaskResponse()


@router.get("/tasks", response_model=TesListTasksResponse, response_model_exclude_none=True)
def list_tasks(
    principal: Reader,
    session: DbSession,
    request: Request,
    name_prefix: str | None = Query(None, max_length=256),
    state: TesState | None = None,
    tag_key: list[Annotated[str, Query(max_length=1024)]] = Query(default=[], max_length=64),
    tag_value: list[Annotated[str, Query(max_length=1024)]] = Query(default=[], max_length=64),
    page_size: int = Query(DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE),
    page_token: str | None = Query(None, max_length=512),
    view: View = View.MINIMAL,
) -> TesListTasksResponse:
    """The federated jobs the caller may see, newest first, filtered as a single tre's TES
    filters (`tre.tes.service`); a job's state sums up its nodes', so the filters on state
    and tags are judged per job while the page fills."""
    lease = request.app.state.settings.federation_lease_s
    pairs = tuple((k, tag_value[i] if i < len(tag_value) else "") for i, k in enumerate(tag_key))
    query = select(FedJob).order_by(FedJob.created_at.desc(), FedJob.id.desc())
    visible = visible_project_ids(session, principal)
    if visible is not None:
        query = query.where(FedJob.project_id.in_(visible))
    if page_token:
        created, last_id = decode_page_token(page_token)
        query = query.where(
            or_(FedJob.created_at < created, and_(FedJob.created_at == created, FedJob.id < last_id))
        )
    tasks: list[TesTaskView] = []
    judged: FedJob | None = None  # the last job judged: the next page starts after it
    more = False
    for scanned, job in enumerate(session.scalars(query.execution_options(yield_per=200))):
        if len(tasks) == page_size or scanned == MAX_SCANNED:
            # A page is full, or this answer has read enough jobs (each summed up from its
            # children): TES lets a page hold fewer tasks, and the token carries on from here.
            more = True
            break
        judged = job
        name = str(job.spec.get("tes", {}).get("name") or "")
        if name_prefix and not name.startswith(name_prefix):
            continue
        shown = jobs.job_view(session, job, lease)
        if state is not None and tes_state(job, shown) != state:
            continue
        if not tags_match(_task_tags(job, shown), pairs):
            continue
        tasks.append(_task(session, request.app.state.settings, job, shown, view, _base(request)))
    token = encode_page_token(judged.created_at, judged.id) if more and judged is not None else None
    return TesListTasksResponse(tasks=tasks, next_page_token=token)
