"""Authenticating node agents at the hub, and signing what the hub answers them.

Agent routes never open the request's database session (`tre.api.deps.get_session`): a long
poll must not hold a writer slot while it waits. Each step takes its own short unit of work.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError
from sqlalchemy import Engine, delete
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from tre.api.problems import Problem, validation_detail
from tre.federation.hub.nodes import keys_taken
from tre.federation.hub.refusals import NodeRefusal, record_node_refusal
from tre.federation.signing import (
    MAX_SKEW_S,
    SignatureError,
    parse_public_key,
    request_node,
    sign_response,
    verify_request,
)
from tre.store.base import utcnow
from tre.store.db import session_scope
from tre.store.federation_models import FedNode, FedNonce

M = TypeVar("M", bound=BaseModel)
_CHALLENGE = {"WWW-Authenticate": 'Signature realm="tre-federation"'}


@dataclass(frozen=True)
class NodeCall:
    """An authenticated agent request: who signed it, its nonce (bound into the signed
    answer) and its body."""

    node: str
    nonce: str
    body: bytes

    def parse(self, model: type[M]) -> M:
        try:
            return model.model_validate_json(self.body or b"{}")
        except ValidationError as exc:
            detail, _ = validation_detail(exc.errors())
            raise Problem(
                422, "Invalid request", f"the body is not a valid {model.__name__}: {detail}"
            ) from exc


class NodeRefused(Problem):
    """A ``401`` for an agent request, with the fixed reason and the registered node (if the
    name is one) that the hub audits it under (`tre.federation.hub.refusals`)."""

    def __init__(self, detail: str, reason: NodeRefusal, node: str = "") -> None:
        super().__init__(401, "Unauthorized", detail, "invalid-signature", headers=_CHALLENGE)
        self.reason = reason
        self.node = node


def authenticate(engine: Engine, headers: dict[str, str], method: str, target: str, body: bytes) -> NodeCall:
    """Verify the signature with the registered key, refuse a replayed nonce, note the visit."""
    try:
        name = request_node(headers)
    except SignatureError as exc:
        raise NodeRefused(str(exc), NodeRefusal(exc.reason)) from exc
    with session_scope(engine) as s:
        node = s.get(FedNode, name)
        if node is None:
            raise NodeRefused("the request is not signed by a registered node", NodeRefusal.unknown_node)
        if node.revoked_at is not None:
            raise NodeRefused("this node was revoked by the hub's admin", NodeRefusal.revoked_node, name)
        nonce = _verified(node, headers, method, target, body)
        now = utcnow()
        s.execute(delete(FedNonce).where(FedNonce.seen_at < now - timedelta(seconds=2 * MAX_SKEW_S)))
        s.add(FedNonce(node=name, nonce=nonce, seen_at=now))
        try:
            s.flush()
        except IntegrityError as exc:
            raise NodeRefused(
                "this request was seen before (replayed nonce)", NodeRefusal.replayed, name
            ) from exc
        node.last_seen_at = now
    return NodeCall(name, nonce, body)


def _verified(node: FedNode, headers: dict[str, str], method: str, target: str, body: bytes) -> str:
    """The request's nonce, its signature checked with the node's key or, during a key
    rotation's overlap, the key it replaced (`tre.federation.hub.nodes.rotate_node_key`).
    A failure is answered with the current key's reason."""
    first: SignatureError | ValueError | None = None
    for key in keys_taken(node):
        try:
            return verify_request(parse_public_key(key), headers, method, target, body)
        except (SignatureError, ValueError) as exc:
            first = first or exc
    assert first is not None
    reason = first.reason if isinstance(first, SignatureError) else NodeRefusal.bad_signature
    raise NodeRefused(str(first), NodeRefusal(reason), node.name) from first


async def node_call(request: Request) -> NodeCall:
    """FastAPI dependency: the agent request's verified caller. A refusal is audited
    (aggregated, `tre.federation.hub.refusals`) before it is answered."""
    body = await request.body()
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    headers = {k.lower(): v for k, v in request.headers.items()}
    engine = request.app.state.engine
    try:
        return await run_in_threadpool(authenticate, engine, headers, request.method, target, body)
    except NodeRefused as refused:
        route = str(getattr(request.scope.get("route"), "path", "unmatched"))[:200]
        key = (refused.reason.value, refused.node, request.method, route)
        await run_in_threadpool(record_node_refusal, engine, request.app.state.node_refusals, key)
        raise


def signed_json(request: Request, call: NodeCall, payload: Any, status: int = 200) -> Response:
    body = JSONResponse(payload).body
    headers = sign_response(request.app.state.hub_key, status, call.nonce, bytes(body))
    return Response(bytes(body), status_code=status, media_type="application/json", headers=headers)


def signed_bytes(request: Request, call: NodeCall, data: bytes) -> Response:
    headers = sign_response(request.app.state.hub_key, 200, call.nonce, data)
    return Response(data, media_type="application/octet-stream", headers=headers)
