"""The hub's routes for node agents: every request signed by a registered node, every
answer the agent acts on signed by the hub. Nodes connect here; the hub never connects out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import anyio
from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import Response
from sqlalchemy import Engine, select
from starlette.concurrency import run_in_threadpool

from tre.audit.refusals import keep_refusals
from tre.code.store import CodeStore
from tre.config import Settings
from tre.errors import NotFound, TreError
from tre.federation.hub import jobs, results, search, tasklogs
from tre.federation.hub.nodeauth import NodeCall, node_call, signed_bytes, signed_json
from tre.federation.vocabulary import ChildState
from tre.federation.wire import SHA256, PollIn, ReleaseIn, ScreenedLogIn, SearchAnswerIn, StateIn, Work
from tre.store.db import session_scope
from tre.store.federation_models import FedChild, FedJob

router = APIRouter(prefix="/hub/v1/agent", tags=["federation agent"])
Node = Annotated[NodeCall, Depends(node_call)]
ChildId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")]
Sha = Annotated[str, Path(pattern=SHA256)]
T = TypeVar("T")


def _unit(engine: Engine, fn: Callable[..., T], *args: Any) -> T:
    with session_scope(engine, refusals_written_later=True) as s:  # by `_run`, kept if that fails
        return fn(s, *args)


async def _run(request: Request, fn: Callable[..., T], *args: Any) -> T:
    try:
        return await run_in_threadpool(_unit, request.app.state.engine, fn, *args)
    except TreError as exc:
        if exc.refusals:  # entries of a refusal, after the rollback (kept if the store fails)
            await run_in_threadpool(keep_refusals, request.app, list(exc.refusals))
        raise


def _take_work(session: Any, node: str, lease_s: float) -> Work:
    return Work(
        children=jobs.take_children(session, node, lease_s),
        searches=search.take(session, node, lease_s),
        cancels=jobs.take_cancels(session, node),
    )


@router.post("/poll")
async def poll(request: Request, call: Node) -> Response:
    """Long poll: answers as soon as there is work for this node, or empty after ``wait_s``."""
    wait = call.parse(PollIn).wait_s
    settings: Settings = request.app.state.settings
    deadline = anyio.current_time() + wait
    while True:
        work = await _run(request, _take_work, call.node, settings.federation_lease_s)
        if work.children or work.searches or anyio.current_time() >= deadline:
            return signed_json(request, call, work.model_dump(mode="json"))
        await anyio.sleep(min(0.25, max(0.0, deadline - anyio.current_time())))


@router.post("/children/{child_id}/state")
async def child_state(request: Request, call: Node, child_id: ChildId) -> Response:
    body = call.parse(StateIn)
    child = await _run(request, jobs.set_state, call.node, child_id, body)
    return signed_json(request, call, {"child_id": child_id, "state": child.state, "reason": child.reason})


@router.put("/children/{child_id}/files/{sha256}")
async def upload_file(request: Request, call: Node, child_id: ChildId, sha256: Sha) -> Response:
    settings = request.app.state.settings
    await _run(request, results.receive_file, settings, call.node, child_id, sha256, call.body)
    return signed_json(request, call, {"sha256": sha256, "size": len(call.body)})


@router.put("/children/{child_id}/log")
async def screened_log(request: Request, call: Node, child_id: ChildId) -> Response:
    """The child's log as the node's researcher screening showed it to the submitter, and
    its exit code (`tre.federation.hub.tasklogs`); never the raw log."""
    body = call.parse(ScreenedLogIn)
    settings = request.app.state.settings
    sha = await _run(request, tasklogs.receive_log, settings, call.node, child_id, body)
    return signed_json(request, call, {"child_id": child_id, "sha256": sha})


@router.post("/children/{child_id}/release")
async def release(request: Request, call: Node, child_id: ChildId) -> Response:
    body = call.parse(ReleaseIn)
    settings = request.app.state.settings
    child = await _run(request, results.accept_release, settings, call.node, child_id, body)
    return signed_json(request, call, {"child_id": child_id, "state": child.state})


def _code_for_node(session: Any, node: str, sha256: str) -> None:
    """A node may fetch only code that one of its open children runs."""
    rows = session.execute(
        select(FedJob.spec, FedChild.state)
        .join(FedChild, FedChild.job_id == FedJob.id)
        .where(FedChild.node == node)
    )
    if not any(spec.get("code_hash") == sha256 and not ChildState(state).final for spec, state in rows):
        raise NotFound(f"no code {sha256} for node {node!r}")


@router.get("/code/{sha256}")
async def code(request: Request, call: Node, sha256: Sha) -> Response:
    await _run(request, _code_for_node, call.node, sha256)
    path = CodeStore(request.app.state.settings).archive_path(sha256)
    data = await run_in_threadpool(path.read_bytes)
    return signed_bytes(request, call, data)


@router.post("/searches/{search_id}/answer")
async def search_answer(
    request: Request, call: Node, search_id: Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")]
) -> Response:
    body = call.parse(SearchAnswerIn)
    await _run(request, search.answer, call.node, search_id, body)
    return signed_json(request, call, {"search_id": search_id})
