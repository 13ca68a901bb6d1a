"""Refusals at the hub, each an entry of the hub's signed audit log under a fixed reason.

Two kinds. A **node refusal** (``federation.node_refused``) is an agent request the hub would
not take: unsigned, from a name no admin registered, from a revoked node, with a signature
that does not verify, too far off the hub's clock, or a nonce seen before. A **submission
refusal** (``federation.submission_refused``) is a researcher's federated job the hub would
not fan out: not a member, not a federated project, every node revoked, code not uploaded
to the project, or its code archive over the project's code quota (``over_code_quota``:
refused when it is uploaded, `CodeQuotaAudit`). Resource quotas are each node's: its own
admission refuses a child over the local project's quota, reported as ``not_admitted`` and
audited in the node's log.

Nothing the caller chose is written as text: the reason is one word of these enums, the
route is the route's template, and a node is named only when an admin registered that name
(an unregistered caller's claimed name is not kept). Node refusals need no key to provoke,
so they are counted as `tre.audit.refusals` counts the API's: the first of each (reason,
node, method, route) in a window is written at once, repeats as one summary entry when the
window rolls over, and past `MAX_KEYS` keys (anonymous and registered nodes each) one
overflow count per caller; a flood of forged requests adds a bounded number of entries.
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from tre.audit.log import AuditEvent
from tre.audit.refusals import WindowedCounts, answered_status, keep_refusals, record_or_keep

WINDOW_S = 60.0
MAX_KEYS = 200


class NodeRefusal(StrEnum):
    unsigned = "unsigned"  # signature headers missing or malformed
    unknown_node = "unknown_node"  # a name no admin registered
    revoked_node = "revoked_node"  # a name the hub's admin revoked
    bad_signature = "bad_signature"  # another key, another path, a changed body
    stale = "stale"  # the creation time is more than 5 minutes off the hub's clock
    replayed = "replayed"  # a nonce seen before


class SubmissionRefusal(StrEnum):
    not_member = "not_member"  # no such project, or the caller is not its member
    not_federated = "not_federated"  # the project spans no node
    nodes_revoked = "nodes_revoked"  # every node of the project was revoked
    code_not_uploaded = "code_not_uploaded"  # the code hash was not uploaded to the project
    over_code_quota = "over_code_quota"  # the code archive is over the project's code quota


Key = tuple[str, str, str, str]  # reason, registered node ("" when none), method, route template


def _event(key: Key, count: int, first: bool, window_s: float) -> AuditEvent:
    reason, node, method, route = key
    return AuditEvent(
        f"node:{node}" if node else "anonymous",
        "federation.node_refused",
        details={
            "reason": reason,
            "node": node or None,
            "method": method,
            "route": route,
            "count": count,
            "kind": "first" if first else "repeats",
            "window_s": window_s,
        },
    )


class NodeRefusals(WindowedCounts[Key]):
    """Per-window counts of node refusals (``federation.node_refused``)."""

    def __init__(self, window_s: float = WINDOW_S, max_keys: int = MAX_KEYS) -> None:
        super().__init__(
            _event,
            "federation.node_refused_overflow",
            window_s,
            max_keys,
            actor_of=lambda key: f"node:{key[1]}" if key[1] else "anonymous",
        )


def record_node_refusal(engine: Engine, counter: NodeRefusals, key: Key) -> None:
    """Write what `counter` says for this refusal, in a unit of work of its own (the
    refused request's, if any, is rolled back). The refusal stands even if this fails."""
    reason = NodeRefusal(key[0])  # only the fixed words reach the log
    events = counter.observe((reason.value, *key[1:]))
    if events:
        record_or_keep(engine, counter, events)  # a failed write is kept for the next one


class CodeQuotaAudit:
    """Pure ASGI middleware around the hub's code upload (`tre.api.routers.code`, shared
    with a single tre): an authenticated researcher's archive refused for the project's code
    quota (``413``, `tre.code.archive.CodeTooLarge`: the archive, what it unpacks to, or the
    project's share of the store) is a ``federation.submission_refused`` entry
    (``over_code_quota``). Anonymous requests are refused before they are anyone's
    submission (and counted by the refusal audit when a token was wrong)."""

    def __init__(self, app: ASGIApp, path: str) -> None:
        self.app = app
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") != self.path or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        status = await answered_status(self.app, scope, receive, send)
        principal = getattr(getattr(Request(scope).state, "principal", None), "user_id", None)
        if status == 413 and principal:
            event = AuditEvent(
                str(principal)[:64],
                "federation.submission_refused",
                details={"reason": SubmissionRefusal.over_code_quota.value, "route": self.path},
            )
            # Kept (on disk) when the store cannot take it now, as every refusal entry.
            await run_in_threadpool(keep_refusals, scope["app"], [event])
