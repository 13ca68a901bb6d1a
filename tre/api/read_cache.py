"""A per-process cache of the hot read answers, valid exactly while the database is unchanged.

Why: a read of ``GET /api/v1/jobs``, ``/jobs/{id}``, ``/datasets`` or ``/projects`` cost
2.6–5 ms of CPU (routing, dependency solving, a session, the queries, the models, the
threadpool trip), and 500 reads/s on two shared cores needs about 1 ms (docs/api-load.md).
Clients poll these routes far more often than anything changes.

What is cached: a 200 answer (status, headers, body) of one of those routes, keyed by the
caller (user id and effective roles), the path and the raw query string, together with the
store's change token (`tre.store.version.StoreVersion`) read *before* the answer was
computed. A later identical request is answered from the cache only while the token is still
the same, i.e. no connection of any process has committed anything since: so a job submitted
through another API process, ``tre worker`` or the CLI is visible to the very next read
(read-your-writes across processes), and a membership or grant change applies at once.
These routes' answers depend on nothing but the database and the caller (no clock, no
settings), so an unchanged database gives the same answer.

What is not skipped on a hit, so that authentication and auditing stay exactly as on the
full path: the caller is resolved by the same caches `tre.api.deps.current_principal` uses
(verified-token LRU, 5 s user cache); if either misses, if the user is disabled or holds no
role, or if an ``auth.token_used`` entry is due for the token, the request takes the full
path (which audits and refuses as always, and may refill the cache). None of these routes
records a read. Every middleware outside this one (request sanity, refusal audit, body
limit) still runs. Off with ``TRE_API_READ_CACHE=false``.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tre.audit.events import token_use_pending
from tre.store.models import Role
from tre.store.version import StoreVersion

# The routes whose answers depend only on the database and the caller (read-only, no
# audited read, no clock). Anything else is never cached.
CACHED_PATHS = re.compile(r"^/api/v1/(?:jobs|jobs/[A-Za-z0-9_-]{1,64}|datasets|projects)$")
MAX_ENTRIES = 2048
MAX_BODY_BYTES = 256 * 1024

Key = tuple[str, frozenset[str], str, bytes]
_ROLES = frozenset(r.value for r in Role)  # the gate of these routes: `tre.api.deps.any_role`


@dataclass(frozen=True)
class CachedAnswer:
    version: str
    start: Message
    body: bytes


class ReadAnswers:
    """A bounded LRU of answers, safe to use from several threads."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._entries: OrderedDict[Key, CachedAnswer] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.fills = 0
        self.coalesced = 0  # answered by a fill another request had under way

    def get(self, key: Key, version: str) -> CachedAnswer | None:
        with self._lock:
            hit = self._entries.get(key)
            if hit is None or hit.version != version:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return hit

    def put(self, key: Key, answer: CachedAnswer) -> None:
        with self._lock:
            self.fills += 1
            self._entries[key] = answer
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


class ReadCache:
    """Pure ASGI middleware: answers cached reads, fills the cache from full-path answers."""

    def __init__(self, app: ASGIApp, version: StoreVersion, answers: ReadAnswers | None = None) -> None:
        self.app = app
        self.version = version
        self.answers = answers if answers is not None else ReadAnswers()
        # Fills under way, by (key, token): identical requests arriving meanwhile wait for
        # the one fill instead of each computing the answer. Without this, the first
        # requests after a write all missed at once and, sharing one GIL, slowed each other
        # into a stall of a few hundred milliseconds (docs/api-load.md).
        self._filling: dict[tuple[Key, str], asyncio.Future[CachedAnswer | None]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or not CACHED_PATHS.match(scope["path"]):
            await self.app(scope, receive, send)
            return
        key = _key_from_caches(scope)
        version = self.version.current()
        if key is not None and version is not None:
            hit = self.answers.get(key, version)
            if hit is None:
                pending = self._filling.get((key, version))
                if pending is not None:
                    hit = await asyncio.shield(pending)
                    if hit is not None:
                        self.answers.coalesced += 1
            if hit is not None:
                # A copy: a server or middleware outside may add to the headers it is sent.
                await send({**hit.start, "headers": list(hit.start.get("headers", []))})
                await send({"type": "http.response.body", "body": hit.body})
                return
        if version is None:
            await self.app(scope, receive, send)
            return
        if key is None or (key, version) in self._filling:
            await self._fill(scope, receive, send, version)
            return
        future: asyncio.Future[CachedAnswer | None] = asyncio.get_running_loop().create_future()
        self._filling[(key, version)] = future
        answer = None
        try:
            answer = await self._fill(scope, receive, send, version, expected=key)
        finally:
            del self._filling[(key, version)]
            future.set_result(answer)  # None: the waiters take the full path themselves

    async def _fill(
        self, scope: Scope, receive: Receive, send: Send, version: str, expected: Key | None = None
    ) -> CachedAnswer | None:
        """The full path; stores a cacheable answer, and returns it when it was computed for
        the ``expected`` key (the one waiters asked for)."""
        start: Message | None = None
        chunks: list[bytes] = []
        cacheable = True

        async def watch(message: Message) -> None:
            nonlocal start, cacheable
            if message["type"] == "http.response.start":
                start = message
                cacheable = message["status"] == 200
            elif message["type"] == "http.response.body" and cacheable:
                chunks.append(message.get("body", b""))
                if sum(map(len, chunks)) > MAX_BODY_BYTES:
                    cacheable = False
                    chunks.clear()
            await send(message)

        await self.app(scope, receive, watch)
        # The key of the principal the route actually served (set by current_principal).
        principal = scope.get("state", {}).get("principal")
        if not cacheable or start is None or principal is None or not principal.roles & _ROLES:
            return None
        key: Key = (principal.user_id, principal.roles, scope["path"], scope.get("query_string", b""))
        answer = CachedAnswer(version, start, b"".join(chunks))
        self.answers.put(key, answer)
        return answer if key == expected else None


def _key_from_caches(scope: Scope) -> Key | None:
    """The cache key for this caller when the full path would admit them from its caches
    alone, with no audit entry due; None sends the request down the full path."""
    from tre.api.deps import bearer_token_or_none, principal_from_caches

    request = Request(scope)
    token = bearer_token_or_none(request)
    if token is None:
        return None
    principal = principal_from_caches(request, token)
    if principal is None or not principal.roles & _ROLES or token_use_pending(principal.token_id):
        return None  # the full path refuses (401/403) or audits the token's use
    return (principal.user_id, principal.roles, scope["path"], scope.get("query_string", b""))
