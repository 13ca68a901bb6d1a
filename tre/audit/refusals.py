"""Failed authentication and 403/404 refusals, recorded but aggregated so they cannot flood.

An ASGI middleware sees every answer. For 401, 403 and 404 it counts the refusal under a
key made only of fixed vocabulary: status, the route *template* (never the raw path, which
the caller chooses), the method and the authenticated user (or ``anonymous``). The first
refusal of a key in a window is recorded at once (``auth.refused``); repeats are counted and
written as one summary entry per key when the window rolls over. At most
``MAX_KEYS_PER_WINDOW`` keys of anonymous callers and as many of authenticated ones are
tracked per window; beyond that each caller's refusals are one overflow count under that
caller (``anonymous``, or the user), so however many requests an attacker sends, a window adds
a bounded number of entries. The two budgets are apart since round 16: an anonymous flood of
200 keys (404s on made-up paths need no token) took every slot, and a user's refusals in that
minute (an insider trying admin routes) were then only part of one anonymous overflow count,
found by no search for that user.

Nothing counted is dropped quietly. Entries whose write fails (the store busy under load, the
key briefly unavailable) are kept on disk (`tre.audit.refusal_spool`: a killed server loses
none; until round 15 they waited in memory) and written with the next ones, by the next start
on the same home, or by `tre admin doctor` (at most ``MAX_PENDING``; past that they are counted
into an overflow entry). Refusals a service records (`TreError.refusals`: a denied job, the
airlock's refusals, the hub's refused submissions and node checkpoints) are written the same
way, after the request's rollback (`keep_refusals`). A window's summaries are written by the
first request after it ends, refused or not, and when the app shuts down; until round 14 they
waited for the next *refusal*, and a restart lost them. The counts of the running window are
in memory only: a killed server loses at most one window's repeats (each key's first refusal
is written at once).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Generic, TypeVar

from fastapi import FastAPI, Request
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tre.audit import refusal_spool
from tre.audit.log import AuditEvent, record_events
from tre.store.db import session_scope

REFUSED = {401, 403, 404}
ANONYMOUS = "anonymous"
# ``request.state`` attribute: a refusal answered with another status (the review panel sends a
# browser whose session token failed to the sign-in page with a 303), counted as this status.
REFUSED_AS = "tre_refused_as"


def answered_as_refusal(request: Request, status: int) -> None:
    """Count this request's answer as a ``status`` refusal whatever its own status: a failed
    authentication shown as a redirect is still one (round 16: a forged, expired or signed-out
    panel session cookie was sent to the sign-in page, and no entry said anyone tried)."""
    setattr(request.state, REFUSED_AS, status)


WINDOW_S = 60.0
MAX_KEYS_PER_WINDOW = 200
MAX_PENDING = 10 * MAX_KEYS_PER_WINDOW  # unwritten entries kept for the next write
log = logging.getLogger(__name__)

Key = tuple[int, str, str, str]  # status, method, route template, actor
K = TypeVar("K", bound=tuple[object, ...])


class Batch(list[AuditEvent]):
    """Entries to write now; ``claimed``: the spooled batches among them, whose files are
    removed once the write commits (`record_or_keep`)."""

    claimed: list[refusal_spool.Claimed]

    def __init__(
        self, events: Iterable[AuditEvent] = (), claimed: Iterable[refusal_spool.Claimed] = ()
    ) -> None:
        super().__init__(events)
        self.claimed = list(claimed)


class WindowedCounts(Generic[K]):
    """Per-window counts of refusals under fixed-vocabulary keys; ``observe`` says which
    entries to write now: a key's first refusal at once, its repeats as one summary when the
    window rolls over, and past ``max_keys`` keys (of anonymous callers, and apart of
    authenticated ones) one overflow count per caller (``overflow_action``).
    Shared by the API's refusals and the federation hub's node refusals.

    Entries whose write failed are kept on disk under ``home`` (`tre.audit.refusal_spool`,
    set by `install_refusal_audit`), in memory only without one or while the disk refuses."""

    def __init__(
        self,
        event: Callable[[K, int, bool, float], AuditEvent],
        overflow_action: str,
        window_s: float = WINDOW_S,
        max_keys: int = MAX_KEYS_PER_WINDOW,
        actor_of: Callable[[K], str] = lambda _key: ANONYMOUS,
    ) -> None:
        self.event = event
        self.overflow_action = overflow_action
        self.window_s = window_s
        self.max_keys = max_keys
        # Who a key's refusals are of: ``anonymous``, or a caller the server authenticated (a
        # registered user or node, so their number is bounded by the registry, not the caller).
        self.actor_of = actor_of
        self.lock = threading.Lock()
        self.start = time.monotonic()
        self.counts: dict[K, int] = {}
        self.tracked = {True: 0, False: 0}  # keys tracked this window: anonymous, authenticated
        self.overflow: dict[str, int] = {}  # refusals past the key budget, by actor
        self.lost: dict[str, int] = {}  # refusals of other actions past the bound, by action
        self.pending: list[AuditEvent] = []  # written unsuccessfully, not on disk; retried next
        self.home: Path | None = None
        self.on_disk = 0  # entries this process spooled and has not taken back
        self.spooled = False  # a batch may wait on disk

    def _take(self, now: float) -> Batch:
        """(Under the lock) the entries due now: the unwritten ones (from disk too), and the
        summaries of a window that has ended."""
        out = Batch(self.pending)
        self.pending = []
        if self.spooled and self.home is not None:
            self.spooled, self.on_disk = False, 0
            try:
                out.claimed = refusal_spool.claim(self.home)
            except OSError:
                log.exception("could not read the refusal spool in %s", self.home)
                self.spooled = True
            for c in out.claimed:
                out += c.events
        if now - self.start >= self.window_s:
            out += self._summaries()
            self._reset(now)
        return out

    def _reset(self, now: float) -> None:
        self.start, self.counts, self.overflow, self.lost = now, {}, {}, {}
        self.tracked = {True: 0, False: 0}

    def due(self) -> Batch:
        """Entries to write now without a new refusal (called on every answer: one clock read
        unless something is due)."""
        now = time.monotonic()
        if not self.pending and not self.spooled and now - self.start < self.window_s:
            return Batch()
        with self.lock:
            return self._take(now)

    def requeue(self, events: list[AuditEvent]) -> None:
        """Keep ``events`` (their write failed) for the next write: on disk first, so that a
        killed server loses none. Past ``MAX_PENDING`` the refusals they stand for are added
        to the overflow count: counted, never lost."""
        claimed = list(getattr(events, "claimed", []))
        from_disk = {id(e) for c in claimed for e in c.events}
        fresh = [e for e in events if id(e) not in from_disk]
        with self.lock:
            if claimed:  # already on disk: they wait there again
                refusal_spool.give_back(claimed)
                self.on_disk += sum(len(c.events) for c in claimed)
                self.spooled = True
            room = max(MAX_PENDING - len(self.pending) - self.on_disk, 0)
            kept, past = fresh[:room], fresh[room:]
            for e in past:
                count = (e.details or {}).get("count", 1)
                n = count if isinstance(count, int) and count > 0 else 1
                if e.action in (self.overflow_action, self.overflow_action.removesuffix("_overflow")):
                    self.overflow[e.actor] = self.overflow.get(e.actor, 0) + n
                else:
                    self.lost[e.action] = self.lost.get(e.action, 0) + n
            if not kept:
                return
            if self.home is not None:
                try:
                    refusal_spool.keep(self.home, kept)
                except OSError:
                    log.exception("could not keep %d refusal entries on disk", len(kept))
                else:
                    self.on_disk += len(kept)
                    self.spooled = True
                    return
            self.pending += kept

    def written(self, events: list[AuditEvent]) -> None:
        """``events`` were committed: the spooled batches among them are removed from disk."""
        refusal_spool.release(list(getattr(events, "claimed", [])))

    def observe(self, key: K) -> Batch:
        with self.lock:
            out = self._take(time.monotonic())
            actor = self.actor_of(key)
            anonymous = actor == ANONYMOUS
            if key in self.counts:
                self.counts[key] += 1
            elif self.tracked[anonymous] < self.max_keys:
                self.counts[key] = 1
                self.tracked[anonymous] += 1
                out.append(self.event(key, 1, True, self.window_s))
            else:
                self.overflow[actor] = self.overflow.get(actor, 0) + 1
        return out

    def flush(self) -> Batch:
        with self.lock:
            out = self._take(time.monotonic())
            out += self._summaries()
            self._reset(time.monotonic())
        return out

    def _summaries(self) -> list[AuditEvent]:
        out = [self.event(k, n - 1, False, self.window_s) for k, n in self.counts.items() if n > 1]
        for actor, n in sorted(self.overflow.items()):
            out.append(
                AuditEvent(actor, self.overflow_action, details={"count": n, "window_s": self.window_s})
            )
        for action, n in sorted(self.lost.items()):
            out.append(AuditEvent("anonymous", f"{action[:55]}_overflow", details={"count": n}))
        return out


class RefusalCounter(WindowedCounts[Key]):
    """The API's 401/403/404 refusals (``auth.refused``)."""

    def __init__(self, window_s: float = WINDOW_S, max_keys: int = MAX_KEYS_PER_WINDOW) -> None:
        super().__init__(_event, "auth.refused_overflow", window_s, max_keys, actor_of=lambda key: key[3])


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
        status = (scope.get("state") or {}).get(REFUSED_AS, status)
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
    shutdown the counts of the running window (and any unwritten entries) are written. The
    counter is ``app.state.refusals``, which also keeps the refusals routes record
    (`keep_refusals`)."""
    counter = counter or RefusalCounter()
    app.add_middleware(RefusalAudit, counter=counter)
    app.state.refusals = counter
    keep_on_disk(app, counter)
    flush_at_shutdown(app, counter)
    return counter


def keep_on_disk(app: FastAPI, counter: WindowedCounts[Any]) -> None:
    """Spool ``counter``'s unwritten entries under the app's home, and write at start what an
    earlier process on this home left there (killed before the store took them)."""
    settings = getattr(app.state, "settings", None)
    if settings is None:
        return
    counter.home = Path(settings.home)

    def replay() -> None:
        counter.spooled = True
        with counter.lock:
            events = counter._take(time.monotonic())
        if events:
            record_or_keep(app.state.engine, counter, events)

    app.router.on_startup.append(replay)


def flush_at_shutdown(app: FastAPI, counter: WindowedCounts[Any]) -> None:
    """At ``app``'s shutdown, write what ``counter`` still holds (the running window's repeats,
    entries a failed write kept): a restart must not erase them. What cannot be written
    stays on disk for the next start."""

    def flush() -> None:
        events = counter.flush()
        if events:
            record_or_keep(app.state.engine, counter, events)
        if counter.pending:
            log.error("%d refusal entries could not be written at shutdown", len(counter.pending))

    app.router.on_shutdown.append(flush)


def record_or_keep(engine: Engine, counter: WindowedCounts[Any], events: list[AuditEvent]) -> None:
    """Write ``events``; if that fails, keep them (on disk) in ``counter`` for its next write."""
    if record_refusals(engine, events, claimed=getattr(events, "claimed", ())):
        counter.written(events)
    else:
        counter.requeue(events)


def keep_refusals(app: Any, events: list[AuditEvent], *, write: bool = True) -> None:
    """Write refusal entries a route recorded (`tre.errors.TreError.refusals`) now, in a unit
    of work of their own, kept like the middleware's when that fails (``write=False``: keep
    them without trying, the store is known to be busy)."""
    counter = getattr(app.state, "refusals", None)
    if counter is None:  # an app without the refusal audit: written or logged
        if not (write and record_refusals(app.state.engine, events)):
            log.error("%d refusal entries could not be written", len(events))
        return
    if write:
        record_or_keep(app.state.engine, counter, events)
    else:
        counter.requeue(events)


def record_refusals(
    engine: Engine, events: list[AuditEvent], *, claimed: Iterable[refusal_spool.Claimed] = ()
) -> bool:
    """Write refusal entries in a unit of work of their own (the refused request's, if any, is
    rolled back); False if that failed. The refusal stands either way. ``claimed``: the spooled
    batches among ``events``; one written before is not written again."""
    try:
        with session_scope(engine) as s:
            skip = refusal_spool.not_yet_written(s, list(claimed))
            fresh = [e for e in events if id(e) not in skip]
            if fresh:
                record_events(s, fresh)
    except Exception:  # the refusal stands either way; a damaged log raises its own alert
        log.exception("could not record %d refusal entries", len(events))
        return False
    return True
