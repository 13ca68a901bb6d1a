"""Failed authentication and 403/404 refusals, recorded but aggregated so they cannot flood.

An HTTP middleware sees every answer. For 401, 403 and 404 it counts the refusal under a
key made only of fixed vocabulary: status, the route *template* (never the raw path, which
the caller chooses), the method and the authenticated user (or ``anonymous``). The first
refusal of a key in a window is recorded at once (``auth.refused``); repeats are counted and
written as one summary entry per key when the window rolls over. At most
``MAX_KEYS_PER_WINDOW`` keys are tracked per window; beyond that a single overflow counter
is kept, so however many requests an attacker sends, a window adds a bounded number of
entries.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable

from fastapi import Request, Response
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from tre.audit.log import AuditEvent, record_events
from tre.store.db import session_scope

REFUSED = {401, 403, 404}
WINDOW_S = 60.0
MAX_KEYS_PER_WINDOW = 200
log = logging.getLogger(__name__)

Key = tuple[int, str, str, str]  # status, method, route template, actor


class RefusalCounter:
    """Per-window counts; ``observe`` says which entries to write now."""

    def __init__(self, window_s: float = WINDOW_S, max_keys: int = MAX_KEYS_PER_WINDOW) -> None:
        self.window_s = window_s
        self.max_keys = max_keys
        self.lock = threading.Lock()
        self.start = time.monotonic()
        self.counts: dict[Key, int] = {}
        self.overflow = 0

    def observe(self, key: Key) -> list[AuditEvent]:
        out: list[AuditEvent] = []
        with self.lock:
            now = time.monotonic()
            if now - self.start >= self.window_s:
                out += self._summaries()
                self.start, self.counts, self.overflow = now, {}, 0
            if key in self.counts:
                self.counts[key] += 1
            elif len(self.counts) < self.max_keys:
                self.counts[key] = 1
                out.append(_event(key, 1, first=True, window_s=self.window_s))
            else:
                self.overflow += 1
        return out

    def flush(self) -> list[AuditEvent]:
        with self.lock:
            out = self._summaries()
            self.start, self.counts, self.overflow = time.monotonic(), {}, 0
        return out

    def _summaries(self) -> list[AuditEvent]:
        out = [_event(k, n - 1, first=False, window_s=self.window_s) for k, n in self.counts.items() if n > 1]
        if self.overflow:
            out.append(
                AuditEvent(
                    "anonymous",
                    "auth.refused_overflow",
                    details={"count": self.overflow, "window_s": self.window_s},
                )
            )
        return out


def _event(key: Key, count: int, *, first: bool, window_s: float) -> AuditEvent:
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


def install_refusal_audit(app: object, counter: RefusalCounter | None = None) -> RefusalCounter:
    """Add the middleware to a FastAPI ``app`` whose ``state.engine`` is the store."""
    counter = counter or RefusalCounter()

    async def middleware(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        events: list[AuditEvent] = []
        if response.status_code in REFUSED:
            events += counter.observe(_key(request, response.status_code))
        if events:
            # After the answer is sent: the request's own transaction may still hold the
            # store's write lock until then (SQLite), and writing now would wait on it.
            engine = request.app.state.engine
            earlier = response.background

            async def record_after() -> None:
                if earlier is not None:
                    await earlier()
                await run_in_threadpool(_record, engine, events)

            response.background = BackgroundTask(record_after)
        return response

    app.middleware("http")(middleware)  # type: ignore[attr-defined]
    return counter


def _record(engine: object, events: list[AuditEvent]) -> None:
    try:
        with session_scope(engine) as s:  # type: ignore[arg-type]
            record_events(s, events)
    except Exception:  # the refusal stands either way; a damaged log raises its own alert
        log.exception("could not record %d refusal entries", len(events))
