"""Failed authentication and 403/404 refusals, recorded but aggregated so they cannot flood.

An ASGI middleware sees every answer. For 401, 403 and 404 it counts the refusal under a
key made only of fixed vocabulary: status, the route *template* (never the raw path, which
the caller chooses), the method and the authenticated user (or ``anonymous``). The first
refusal of a key in a window is recorded at once (``auth.refused``); repeats are counted and
written as one summary entry per key when the window rolls over. At most
``MAX_KEYS_PER_WINDOW`` keys are tracked per window; beyond that a single overflow counter
is kept, so however many requests an attacker sends, a window adds a bounded number of
entries.

Nothing counted is dropped quietly. Entries whose write fails (the store busy under load, the
key briefly unavailable) are kept and written with the next ones (at most ``MAX_PENDING``; past
that they are counted into the overflow entry). A window's summaries are written by the first
request after it ends, refused or not, and when the app shuts down; until round 14 they waited
for the next *refusal*, and a restart lost them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from fastapi import FastAPI, Request
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tre.audit.log import AuditEvent, record_events
from tre.store.db import session_scope

REFUSED = {401, 403, 404}
WINDOW_S = 60.0
MAX_KEYS_PER_WINDOW = 200
MAX_PENDING = 10 * MAX_KEYS_PER_WINDOW  # unwritten entries kept for the next write
log = logging.getLogger(__name__)

Key = tuple[int, str, str, str]  # status, method, route template, actor
K = TypeVar("K", bound=tuple[object, ...])


class WindowedCounts(Generic[K]):
    """Per-window counts of refusals under fixed-vocabulary keys; ``observe`` says which
    entries to write now: a key's first refusal at once, its repeats as one summary when the
    window rolls over, and past ``max_keys`` keys one overflow count (``overflow_action``).
    Shared by the API's refusals and the federation hub's node refusals."""

    def __init__(
        self,
        event: Callable[[K, int, bool, float], AuditEvent],
        overflow_action: str,
        window_s: float = WINDOW_S,
        max_keys: int = MAX_KEYS_PER_WINDOW,
    ) -> None:
        self.event = event
        self.overflow_action = overflow_action
        self.window_s = window_s
        self.max_keys = max_keys
        self.lock = threading.Lock()
        self.start = time.monotonic()
        self.counts: dict[K, int] = {}
        self.overflow = 0
        self.pending: list[AuditEvent] = []  # written unsuccessfully; retried with the next ones

    def _take(self, now: float) -> list[AuditEvent]:
        """(Under the lock) the entries due now: the unwritten ones, and the summaries of a
        window that has ended."""
        out, self.pending = self.pending, []
        if now - self.start >= self.window_s:
            out += self._summaries()
            self.start, self.counts, self.overflow = now, {}, 0
        return out

    def due(self) -> list[AuditEvent]:
        """Entries to write now without a new refusal (called on every answer: one clock read
        unless something is due)."""
        now = time.monotonic()
        if not self.pending and now - self.start < self.window_s:
            return []
        with self.lock:
            return self._take(now)

    def requeue(self, events: list[AuditEvent]) -> None:
        """Keep ``events`` (their write failed) for the next write. Past ``MAX_PENDING`` the
        refusals they stand for are added to the overflow count: counted, never lost."""
        with self.lock:
            room = max(MAX_PENDING - len(self.pending), 0)
            self.pending += events[:room]
            for e in events[room:]:
                count = (e.details or {}).get("count", 1)
                self.overflow += count if isinstance(count, int) and count > 0 else 1

    def observe(self, key: K) -> list[AuditEvent]:
        out: list[AuditEvent] = []
        with self.lock:
            out += self._take(time.monotonic())
            if key in self.counts:
                self.counts[key] += 1
            elif len(self.counts) < self.max_keys:
                self.counts[key] = 1
                out.append(self.event(key, 1, True, self.window_s))
            else:
                self.overflow += 1
        return out

    def flush(self) -> list[AuditEvent]:
        with self.lock:
            out = self.pending + self._summaries()
            self.pending = []
            self.start, self.counts, self.overflow = time.monotonic(), {}, 0
        return out

    def _summaries(self) -> list[AuditEvent]:
        out = [self.event(k, n - 1, False, self.window_s) for k, n in self.counts.items() if n > 1]
        if self.overflow:
            out.append(
                AuditEvent(
                    "anonymous",
                    self.overflow_action,
                    details={"count": self.overflow, "window_s": self.window_s},
                )
            )
        return out


class RefusalCounter(WindowedCounts[Key]):
    """The API's 401/403/404 refusals (``auth.refused``)."""

    def __init__(self, window_s: float = WINDOW_S, max_keys: int = MAX_KEYS_PER_WINDOW) -> None:
        super().__init__(_event, "auth.refused_overflow", window_s, max_keys)


def _event(key: Key, count: int, first: bool, window_s: float) -> AuditEvent:
    status, method, route, actor = key
    return AuditEvent(
        actor,
        "auth.refused",
        details={
            "status": status,
            "method": method,
            "route": route,
            "count": count,
            "kind": "first" if first else "repeats",
            "window_s": window_s,
        },
    )


def _key(request: Request, status: int) -> Key:
    route = request.scope.get("route")
    template = str(getattr(route, "path", "unmatched"))[:200]
    principal = getattr(request.state, "principal", None)
    actor = str(getattr(principal, "user_id", "anonymous"))[:64] or "anonymous"
    method = (
        request.method if request.method in {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"} else "OTHER"
    )
    return (status, method, template, actor)


async def answered_status(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> int:
    """Run ``app`` on the request, passing its answer on, and say the status it started with
    (the refusal middlewares decide what to audit from it once the answer is sent)."""
    status = 0

    async def watch(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])
        await send(message)

    await app(scope, receive, watch)
    return status


class RefusalAudit:
    """Pure ASGI middleware: watches the status an answer starts with and, for a refusal,
    records what `RefusalCounter.observe` says once the answer is sent.

    Not a ``BaseHTTPMiddleware``: that wraps every request in a task group and a memory
    stream, about a tenth of a small request's CPU time (docs/api-load.md).
    """

    def __init__(self, app: ASGIApp, counter: RefusalCounter) -> None:
        self.app = app
        self.counter = counter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = await answered_status(self.app, scope, receive, send)
        if status in REFUSED:
            events = self.counter.observe(_key(Request(scope), status))
        else:
            events = self.counter.due()  # a window's summaries, or entries a failed write kept
        if events:
            # After the answer is sent: the request's own transaction may have held the
            # store's write lock until then (SQLite), and writing earlier would wait on it.
            await run_in_threadpool(record_or_keep, scope["app"].state.engine, self.counter, events)


def install_refusal_audit(app: FastAPI, counter: RefusalCounter | None = None) -> RefusalCounter:
    """Add the middleware to a FastAPI ``app`` whose ``state.engine`` is the store; at
    shutdown the counts of the running window (and any unwritten entries) are written."""
    counter = counter or RefusalCounter()
    app.add_middleware(RefusalAudit, counter=counter)
    flush_at_shutdown(app, counter)
    return counter


def flush_at_shutdown(app: FastAPI, counter: WindowedCounts[Any]) -> None:
    """At ``app``'s shutdown, write what ``counter`` still holds (the running window's repeats,
    entries a failed write kept): a restart must not erase them."""

    def flush() -> None:
        events = counter.flush()
        if events and not record_refusals(app.state.engine, events):
            log.error("%d refusal entries could not be written at shutdown", len(events))

    app.router.on_shutdown.append(flush)


def record_or_keep(engine: Engine, counter: WindowedCounts[Any], events: list[AuditEvent]) -> None:
    """Write ``events``; if that fails, keep them in ``counter`` for its next write."""
    if not record_refusals(engine, events):
        counter.requeue(events)


def record_refusals(engine: Engine, events: list[AuditEvent]) -> bool:
    """Write refusal entries in a unit of work of their own (the refused request's, if any, is
    rolled back); False if that failed. The refusal stands either way."""
    try:
        with session_scope(engine) as s:
            record_events(s, events)
    except Exception:  # the refusal stands either way; a damaged log raises its own alert
        log.exception("could not record %d refusal entries", len(events))
        return False
    return True
