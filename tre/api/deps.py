"""Request dependencies: database session, authenticated principal, role gates.

Every router depends on `current_principal` (directly or through `require_roles`), so a
route without an explicit role check still refuses anonymous callers.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Annotated, ParamSpec, TypeVar

import anyio
from fastapi import Depends, Request, Security
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.routing import BaseRoute

from tre.api.problems import Problem
from tre.api.query_names import ROLE_GATE_MARK, refuse_unknown_query_names
from tre.audit.events import token_use_event
from tre.audit.log import DEFERRED_EVENTS, AuditEvent, record_events
from tre.audit.refusals import keep_refusals
from tre.auth.generation import epoch_of, issued_before
from tre.auth.principal import Principal
from tre.auth.revocation import live_revocations, token_digest
from tre.auth.tokens import TokenError, TokenVerifier
from tre.auth.user_cache import UserAccess, UserAccessCache
from tre.config import Settings
from tre.store.db import (
    BUSY_TIMEOUT_S,
    DatabaseBusy,
    is_sqlite,
    new_session,
    noted_refusals,
    raw_writer_lock,
    settle,
)
from tre.store.models import Role, User, UserRole

log = logging.getLogger(__name__)
# The session key of the ``auth.token_used`` entries a request appended (`current_principal`).
USE_ENTRIES_KEY = "tre.api.token_use_entries"
_BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="tre"'}
_SAFE_METHODS = frozenset({"GET", "HEAD"})
WRITES_ATTR = "__tre_writes_on_read__"
READS_ATTR = "__tre_reads_only__"
WORK_FIRST_ATTR = "__tre_works_before_writing__"
P = ParamSpec("P")
R = TypeVar("R")


async def get_settings_dep(request: Request) -> Settings:
    """Async, like every dependency that does no I/O: FastAPI runs a plain ``def`` dependency
    in the threadpool, and each such trip was a visible share of a small request's CPU."""
    settings: Settings = request.app.state.settings
    return settings


def writes_on_read(endpoint: Callable[P, R]) -> Callable[P, R]:
    """Mark a GET route whose handler writes (an audited login), so `mark_read_only_routes`
    leaves it a writing transaction."""
    setattr(endpoint, WRITES_ATTR, True)
    return endpoint


def works_before_writing(endpoint: Callable[P, R]) -> Callable[P, R]:
    """Mark a writing route that does long work (streams an upload, imports or pushes an
    image) before its short write: its request session is a read-only snapshot, and it writes
    through `write_unit` once the work is done.

    Why: a writing unit of work holds the process's write gate, and on SQLite the writer lock
    every process's writers queue on, from the first dependency to the end of the request. An
    upload of a few hundred MiB on a slow link held them for minutes, and every submission of
    every API process failed with 503 after the busy timeout meanwhile. Audit events the route
    records in the snapshot are appended right after it, as for reads (``DEFERRED_EVENTS``).
    """
    setattr(endpoint, WORK_FIRST_ATTR, True)
    return endpoint


async def write_unit(request: Request, fn: Callable[..., R], *args: object) -> R:
    """``fn(session, *args)`` in a short writing unit of work of its own, committed when it
    returns (gate, writer lock and all, as `get_session` takes them for a writing route);
    refusal entries written after it, as `get_session` writes them."""
    units: list[Session] = []
    try:
        async with _slot(request, writing=True):
            async with _unit_of_work(request.app.state.engine, read_only=False) as session:
                units.append(session)
                result = await run_in_threadpool(fn, session, *args)
    except Exception:
        await _keep_noted(request, units, failed=True)
        raise
    await _keep_noted(request, units)
    return result


def mark_read_only_routes(routes: Iterable[BaseRoute]) -> list[str]:
    """Opt these GET routes into read-only snapshot transactions.

    Opt-in per router, deny by default: a route nobody has checked keeps a writing
    transaction (correct, just queued behind other writers). Read-only transactions never
    take SQLite's write lock, so reads do not queue behind writers; a write attempted in one
    is refused by the database (a loud 500, never a silently forked state), which is how a
    route wrongly opted in shows up in its tests. Returns the opted-in paths.
    """
    marked = []
    for route in routes:
        if not isinstance(route, APIRoute):
            continue
        only_reads = route.methods is not None and route.methods <= _SAFE_METHODS
        if only_reads and not getattr(route.endpoint, WRITES_ATTR, False):
            setattr(route.endpoint, READS_ATTR, True)
            marked.append(route.path)
    return marked


def request_reads_only(request: Request) -> bool:
    """Whether this request runs in a read-only snapshot (see `mark_read_only_routes` and
    `works_before_writing`)."""
    endpoint = request.scope.get("endpoint")
    if request.method not in _SAFE_METHODS:
        return bool(getattr(endpoint, WORK_FIRST_ATTR, False))
    return bool(getattr(endpoint, READS_ATTR, False))


async def get_session(request: Request) -> AsyncIterator[Session]:
    """One transaction per request: committed when the handler returns without error.

    Every route takes it as `DbSession`, ``Depends(get_session, scope="function")``: FastAPI otherwise
    runs a yield dependency's exit after the answer was sent, so a client could act on a 201
    before the commit (a fresh install's ``tre demo`` listed committees without the dataset it
    had just registered), and a commit that failed then lost a change already answered 201
    (tests/api/test_commit_before_answer.py checks every route).

    Async on purpose: every wait happens in the event loop, never in a threadpool thread.
    Were a thread to block on a lock or on the connection pool, a burst of requests could
    occupy every thread while the requests holding what they wait for need a thread to
    finish (the bench's first runs: every request timed out at 30 s). So a request first
    takes a database slot (fewer slots than pooled connections, so a checkout never
    blocks); a writing request first waits for the app's write gate, and on SQLite only the
    gate's holder takes the process's writer lock, which a worker thread in the same
    process shares.

    A read-only request that audits something (a token's first use, a log read) collects
    the events instead, and appends them in one short writing transaction after its
    snapshot ends and before it answers.

    Refusal entries (`TreError.refusals`: a denied job, a self-review, a tampered download),
    of an error raised through the unit of work or of one a route caught and answered
    (`tre.store.db.note_refusals`), are written after the unit ends, rolled back or
    committed, in a unit of work of their own; kept on disk when the store cannot take them.
    """
    engine = request.app.state.engine
    read_only = request_reads_only(request)
    deferred: list[AuditEvent] = []
    units: list[Session] = []
    try:
        async with _slot(request, writing=not read_only):
            async with _unit_of_work(engine, read_only) as session:
                units.append(session)
                if read_only:
                    session.info[DEFERRED_EVENTS] = deferred
                yield session
    except Exception:
        await _keep_noted(request, units, failed=True)
        raise
    await _keep_noted(request, units)
    if deferred:
        await _append_deferred(request, deferred)


# What every route takes: the one place the session's scope is declared (see `get_session`).
DbSession = Annotated[Session, Depends(get_session, scope="function")]


async def _keep_noted(request: Request, units: list[Session], *, failed: bool = False) -> None:
    """Write the refusal entries noted in the request's ended unit of work (if it began), and
    when it failed, the token's use its rollback took (`current_principal`)."""
    events: list[AuditEvent] = []
    for session in units:
        token_uses = session.info.pop(USE_ENTRIES_KEY, [])
        events += (token_uses if failed else []) + noted_refusals(session)
    if events:
        await _keep_refusals(request, events)


async def _keep_refusals(request: Request, events: list[AuditEvent]) -> None:
    """Refusal entries of a failed request, after its rollback: written in a unit of work of
    their own, or kept on disk for the next write when the store cannot take them now.

    Written as `_append_deferred` writes, inside the slot (which already holds SQLite's
    writer lock for this process): `tre.audit.refusals.record_refusals` opens a
    `session_scope`, which takes that lock again from the thread and waited out the busy
    timeout (30 s) on every refused hub submission, then spooled the entries."""
    try:
        async with _slot(request, writing=True):
            await run_in_threadpool(_append_events, request.app.state.engine, events)
    except Exception:  # noqa: BLE001 - busy, or the write failed: kept like any refusal not written
        log.warning("could not record %d refusal entries now; kept for the next write", len(events))
        keep_refusals(request.app, events, write=False)


async def _append_deferred(request: Request, events: list[AuditEvent]) -> None:
    async with _slot(request, writing=True):
        await run_in_threadpool(_append_events, request.app.state.engine, events)


def _append_events(engine: Engine, events: list[AuditEvent]) -> None:
    session = new_session(engine)
    try:
        record_events(session, events)
        session.commit()
    finally:
        session.close()


@asynccontextmanager
async def _slot(request: Request, *, writing: bool) -> AsyncIterator[None]:
    """A database slot, and for a writer the app's write gate (one writer per process: on
    PostgreSQL the others would only queue on the audit tree's row lock) and on SQLite the
    writer lock."""
    lock = raw_writer_lock(request.app.state.engine) if writing else None
    async with AsyncExitStack() as stack:
        if writing:
            await _wait(request.app.state.write_gate)
            stack.callback(request.app.state.write_gate.release)
        await _wait(request.app.state.db_slots)
        stack.callback(request.app.state.db_slots.release)
        if lock is not None:
            # Usually free (the gate lets one request of this process at a time get here):
            # taken without a thread hop; only a wait for another process goes to a thread.
            if not lock.acquire(False) and not await run_in_threadpool(lock.acquire, True, BUSY_TIMEOUT_S):
                raise DatabaseBusy("the database is busy with other writes; try again shortly")
            stack.callback(lock.release)
        yield


async def _wait(gate: anyio.Lock | anyio.Semaphore) -> None:
    try:
        gate.acquire_nowait()  # the common case, without a cancel scope
        return
    except anyio.WouldBlock:
        pass
    try:
        with anyio.fail_after(BUSY_TIMEOUT_S):
            await gate.acquire()
    except TimeoutError as exc:
        raise DatabaseBusy("the database is busy; try again shortly") from exc


def database_slots(engine: Engine) -> int:
    """How many requests may hold a session at once: the pool's capacity less two
    connections kept for the worker thread and start-up work in the same process."""
    pool = engine.pool
    size = getattr(pool, "size", None)
    capacity = size() + max(0, getattr(pool, "_max_overflow", 0)) if callable(size) else 16
    return max(1, capacity - 2)


@asynccontextmanager
async def _unit_of_work(engine: Engine, read_only: bool) -> AsyncIterator[Session]:
    session = new_session(engine, read_only=read_only)
    try:
        yield session
    except BaseException as exc:
        await run_in_threadpool(_end, session, exc)
        raise
    if not session.in_transaction() or (read_only and is_sqlite(engine)):
        # Nothing to commit (the route committed), or a snapshot read on SQLite, whose end
        # never waits (no lock, no network): done here, a threadpool trip less.
        _end(session, None)
    else:
        await run_in_threadpool(_end, session, None)


def _end(session: Session, exc: BaseException | None) -> None:
    """Commit (or settle) and close in one trip to the threadpool: each trip costs a thread
    hand-off and an event-loop wake-up, a visible share of a small request's time."""
    try:
        if exc is None:
            session.commit()
        else:
            settle(session, exc, refusals_written_later=True)  # noted: `get_session` writes them
    finally:
        session.close()


def principal_from_token(request: Request, token: str, session: Session) -> Principal:
    """Verify a raw JWT and map it to a known, enabled user with the roles both agree on."""
    verifier: TokenVerifier = request.app.state.verifier
    try:
        claims = verifier.verify(token)
    except TokenError as exc:
        raise Problem(401, "Unauthorized", str(exc), "invalid-token", headers=_BEARER_CHALLENGE) from exc
    user_id = str(claims["sub"])
    access = _user_access(request, session, user_id)
    if access is None or access.disabled:
        raise Problem(
            401,
            "Unauthorized",
            "the token's user is unknown or disabled",
            "unknown-user",
            headers=_BEARER_CHALLENGE,
        )
    if access.revoked_tokens and token_digest(token) in access.revoked_tokens:
        raise Problem(
            401,
            "Unauthorized",
            "this token was signed out; sign in again for a new one",
            "token-revoked",
            headers=_BEARER_CHALLENGE,
        )
    if issued_before(claims, access.tokens_epoch):
        raise Problem(
            401,
            "Unauthorized",
            "this token was issued before its user was last created or enabled; sign in again for a new one",
            "token-superseded",
            headers=_BEARER_CHALLENGE,
        )
    # A token carries the roles it was minted for; the user table can only narrow them, so
    # removing a role takes effect before old tokens expire.
    roles = frozenset(verifier.roles_from(claims) & access.roles)
    principal = Principal(user_id=user_id, roles=roles, token_id=claims.get("jti"))
    # Whoever authenticates a caller names them to the refusal audit (`tre.audit.refusals`
    # reads ``request.state.principal``) before any role check can refuse them: the review
    # panel refused a researcher's or an auditor's valid session as ``anonymous`` until round
    # 16, so a researcher trying the DAC panel was in no entry of theirs.
    request.state.principal = principal
    return principal


def _user_access(request: Request, session: Session, user_id: str) -> UserAccess | None:
    """The user's enabled flag and roles, from the app's short-lived cache or one query."""
    cache: UserAccessCache | None = getattr(request.app.state, "user_cache", None)
    cached, read_at = cache.get(user_id) if cache is not None else (None, 0)
    if cached is not None:
        return cached
    rows = session.execute(
        select(User.disabled, User.tokens_valid_from, User.created_at, UserRole.role)
        .outerjoin(UserRole, UserRole.user_id == User.id)
        .where(User.id == user_id)
    ).all()
    if not rows:
        return None
    access = UserAccess(
        bool(rows[0].disabled),
        frozenset(r.role for r in rows if r.role is not None),
        live_revocations(session, user_id),
        epoch_of(rows[0].tokens_valid_from, rows[0].created_at),
    )
    if cache is not None:
        cache.put(user_id, access, read_at)
    return access


def bearer_token_or_none(request: Request) -> str | None:
    """The bearer token the request carries, or None when it carries none."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def bearer_token(request: Request) -> str:
    token = bearer_token_or_none(request)
    if token is None:
        raise Problem(
            401,
            "Unauthorized",
            "send an 'Authorization: Bearer <token>' header",
            "missing-token",
            headers=_BEARER_CHALLENGE,
        )
    return token


# Declares the bearer scheme in the OpenAPI document (and on every operation that needs it);
# `bearer_token` still reads the header itself so every refusal is the same problem document.
BEARER_SCHEME = HTTPBearer(
    auto_error=False,
    scheme_name="bearerAuth",
    bearerFormat="JWT",
    description="A JWT from `tre admin token` (embedded issuer) or the configured OIDC issuer.",
)


async def current_principal(
    request: Request,
    session: DbSession,
    _declared: HTTPAuthorizationCredentials | None = Security(BEARER_SCHEME),
) -> Principal:
    """The verified caller. A token verified before, of a user looked up in the last seconds,
    is answered in the event loop; otherwise the check (signature, key fetch, user query)
    runs in the threadpool, as does an audit append."""
    token = bearer_token(request)
    principal = principal_from_caches(request, token)
    if principal is None:
        principal = await run_in_threadpool(principal_from_token, request, token, session)
    request.state.principal = principal
    refuse_unknown_query_names(request, from_gate=False)
    event = token_use_event(principal.user_id, principal.token_id)  # audit: tie token to use
    if event is not None:
        await run_in_threadpool(record_events, session, [event])
        # Due once an hour and marked as recorded already: should the request fail (a 404, a
        # refusal, a commit that failed), `get_session` writes it after the rollback.
        session.info.setdefault(USE_ENTRIES_KEY, []).append(event)
    return principal


def principal_from_caches(request: Request, token: str) -> Principal | None:
    """The principal when both the token's claims and its user are cached, else None."""
    verifier: TokenVerifier = request.app.state.verifier
    cache: UserAccessCache | None = getattr(request.app.state, "user_cache", None)
    claims = verifier.cached(token)
    if claims is None or cache is None:
        return None
    access, _ = cache.get(str(claims["sub"]))
    if access is None or access.disabled:
        return None  # the slow path gives the refusal
    if access.revoked_tokens and token_digest(token) in access.revoked_tokens:
        return None
    if issued_before(claims, access.tokens_epoch):
        return None  # the slow path gives the refusal
    roles = frozenset(verifier.roles_from(claims) & access.roles)
    return Principal(user_id=str(claims["sub"]), roles=roles, token_id=claims.get("jti"))


def require_roles(*roles: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency that admits only callers holding at least one of ``roles``."""
    wanted = frozenset(roles)

    async def _gate(request: Request, principal: Principal = Depends(current_principal)) -> Principal:
        if not principal.roles & wanted:
            # Who the caller is signed in as, which they know already: a newcomer who ran a
            # DAC member's command signed in as the researcher was told only the role wanted.
            needed = ", ".join(sorted(wanted))
            held = ", ".join(sorted(principal.roles)) or "none"
            raise Problem(
                403,
                "Forbidden",
                f"this action needs one of the roles: {needed}; you are signed in as "
                f"{principal.user_id!r} (roles: {held}): sign in as a user who holds one",
                "missing-role",
            )
        refuse_unknown_query_names(request, from_gate=True)
        return principal

    setattr(_gate, ROLE_GATE_MARK, True)
    return _gate


def any_role() -> Callable[..., Awaitable[Principal]]:
    """Admit callers who still hold at least one role. Taking every role away from a user is
    how an admin revokes access before the user's tokens expire, so no route that shows
    project data may stop at `current_principal` (which admits a token whose roles the user
    table has narrowed to none)."""
    return require_roles(*(r.value for r in Role))
