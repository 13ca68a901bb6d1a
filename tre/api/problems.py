"""RFC 9457 problem details for every error the API returns.

Clients (the CLI above all) rely on ``title``/``detail`` to print one clear line, so no
error path may fall through to FastAPI's default ``{"detail": ...}`` body or an HTML page.

A browser is the one exception: under a prefix that registered a page renderer
(`register_problem_page`: the review panel's ``/panel``), a request that asks for HTML gets
the same problem as a readable page (with the status), not a JSON document.
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from tre.errors import STORAGE_FULL_DETAIL, StorageFull, TreError, is_storage_full

PROBLEM_MEDIA_TYPE = "application/problem+json"
log = logging.getLogger(__name__)


MAX_FIELD_ERRORS = 20

# A page for a problem: (request, problem document) -> an HTML response.
ProblemPage = Callable[[Request, dict[str, Any]], Response]


def register_problem_page(app: FastAPI, prefix: str, page: ProblemPage) -> None:
    """Answer problems under ``prefix`` with ``page`` when the caller asks for HTML."""
    pages: dict[str, ProblemPage] = getattr(app.state, "problem_pages", {})
    app.state.problem_pages = pages | {prefix: page}


def _as_page(request: Request, response: Response) -> Response:
    """The problem as a page, for a browser under a prefix with a page renderer; otherwise
    (an API client, a redirect) as it is."""
    if response.status_code < 400 or "text/html" not in request.headers.get("accept", ""):
        return response
    pages: dict[str, ProblemPage] = getattr(request.app.state, "problem_pages", {})
    path = request.url.path
    page = next((p for prefix, p in pages.items() if path == prefix or path.startswith(prefix + "/")), None)
    if page is None:
        return response
    html = page(request, json.loads(bytes(response.body)))
    html.status_code = response.status_code
    for name in ("allow", "retry-after", "www-authenticate"):
        if name in response.headers:
            html.headers[name] = response.headers[name]
    return html


Handler = Callable[[Request, Any], Awaitable[Response]]


def _pages(handler: Handler) -> Handler:
    async def wrapped(request: Request, exc: Any) -> Response:
        return _as_page(request, await handler(request, exc))

    return wrapped


def _echoable(text: str, limit: int) -> str:
    """The caller's own text (a key name in a body, say) as a problem document may repeat it:
    control characters and lone surrogates become ``?`` (a NUL would break the schema's
    promise and some clients' terminals), and the length is bounded."""
    return "".join("?" if unicodedata.category(ch) in ("Cc", "Cs") else ch for ch in text[:limit])


def _field_name(loc: Any) -> str:
    return ".".join(_echoable(str(p), 64) for p in loc if p != "body")


def validation_detail(raw: Sequence[Any]) -> tuple[str, list[dict[str, str]]]:
    """Pydantic's errors as a problem says them: each field and why, in one detail line and
    as a list (bounded; values are never quoted). Shared by every route that validates a body
    itself (the federation agent routes) so each answer names the field like the API's."""
    errors = [
        {"field": _field_name(e.get("loc", ())), "reason": _echoable(_reason(e), 200)}
        for e in raw[:MAX_FIELD_ERRORS]
    ]
    detail = "; ".join(f"{e['field']}: {e['reason']}" for e in errors) or "request is not valid"
    return detail, errors


class Problem(Exception):
    """Raise anywhere in a request to answer with a problem document."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str = "",
        type_: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.title = title
        self.detail = detail
        self.type_ = type_ or title.lower().replace(" ", "-")
        self.headers = headers
        self.extra = extra


def problem_response(
    status: int,
    title: str,
    detail: str,
    type_: str,
    instance: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {
        "type": f"urn:tre:problem:{type_}",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


_STATUS_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Payload too large",
    422: "Invalid request",
    429: "Too many requests",
    431: "Request header fields too large",
}

# Exceptions that, when they escape a handler, mean a value the caller sent could not be used
# (a number out of range for the store, text it cannot encode, a row that breaks a
# constraint). The request models bound what they can; these are the net under them.
_INPUT_FAULTS: tuple[tuple[type[Exception], int, str], ...] = (
    (OverflowError, 422, "a number in the request is out of range"),
    (UnicodeError, 422, "the request holds text that cannot be stored"),
    (DataError, 422, "a value in the request does not fit the store"),
    (IntegrityError, 409, "the request conflicts with existing records"),
)


def install_problem_handlers(app: FastAPI) -> None:  # noqa: C901 - one handler per kind
    @app.exception_handler(Problem)
    @_pages
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(
            exc.status, exc.title, exc.detail, exc.type_, request.url.path, exc.headers, **exc.extra
        )

    @app.exception_handler(TreError)
    @_pages
    async def _domain(request: Request, exc: TreError) -> JSONResponse:
        retry = {"Retry-After": str(exc.retry_after_s)} if exc.retry_after_s is not None else None
        return problem_response(exc.status, exc.title, str(exc), exc.slug, request.url.path, retry)

    @app.exception_handler(StarletteHTTPException)
    @_pages
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = _STATUS_TITLES.get(exc.status_code, "Error")
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        headers = dict(getattr(exc, "headers", None) or {})
        # What this server is not, for a command meant for another kind (the hub's: a single
        # tre's `tre jobs`, `tre logs`, `tre submit --wait` there), said with what to use.
        hint = getattr(request.app.state, "unrouted_hint", "")
        if exc.status_code == 404 and detail == "Not Found":
            # The router's own words when no route matches: say so, and where the routes are.
            detail = hint or "no such API route; the routes are listed in /openapi.json (and /docs)"
        if exc.status_code == 405:
            # Starlette names only the first route it tried; list every method of the path.
            from tre.api.openapi import allowed_methods

            allowed = allowed_methods(request.app, request.scope)
            if allowed:
                headers["Allow"] = ", ".join(allowed)
                detail = f"{request.method} is not allowed here; allowed: {', '.join(allowed)}"
                if hint:
                    detail = f"{hint} ({detail})"
        return problem_response(
            exc.status_code,
            title,
            detail,
            title.lower().replace(" ", "-"),
            request.url.path,
            headers or None,
        )

    @app.exception_handler(RequestValidationError)
    @_pages
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail, errors = validation_detail(exc.errors())
        return problem_response(
            422, "Invalid request", detail, "invalid-request", request.url.path, errors=errors
        )

    for kind, status, detail in _INPUT_FAULTS:
        app.add_exception_handler(kind, _pages(_input_fault(status, detail)))

    @app.exception_handler(StorageFull)
    @_pages
    async def _storage_full_domain(request: Request, exc: StorageFull) -> JSONResponse:
        return _storage_full(request, exc)

    @app.exception_handler(OSError)
    @_pages
    async def _os_error(request: Request, exc: OSError) -> JSONResponse:
        # The disk filled up under an upload, an import, a staging copy: the server's state,
        # not the caller's input. Any other system error is a server fault like the rest.
        if is_storage_full(exc):
            return _storage_full(request, exc)
        return _internal_error(request)

    @app.exception_handler(OperationalError)
    @_pages
    async def _database_down(request: Request, exc: OperationalError) -> JSONResponse:
        if is_storage_full(exc):  # SQLite's "database or disk is full", PostgreSQL's 53100
            return _storage_full(request, exc)
        # The server is down or restarting, the network dropped, SQLite's disk failed: nothing
        # the caller did, and worth a retry; the driver's text (addresses) stays in the log.
        log.error("database error on %s: %s", request.url.path, str(exc.orig or exc).splitlines()[:1])
        return problem_response(
            503,
            "Database unavailable",
            "the database did not answer; try again shortly",
            "database-unavailable",
            request.url.path,
            {"Retry-After": "5"},
        )

    @app.exception_handler(Exception)
    @_pages
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        if is_storage_full(exc):  # raised through a wrapper (an ExceptionGroup, a library's own)
            return _storage_full(request, exc)
        return _internal_error(request)


def _internal_error(request: Request) -> JSONResponse:
    log.exception("unhandled error on %s", request.url.path)
    return problem_response(
        500,
        "Internal error",
        "the server failed to handle this request; it was logged",
        "internal-error",
        request.url.path,
    )


def _storage_full(request: Request, exc: BaseException) -> JSONResponse:
    """507: the server's disk is full. The cause (which file system, which path) is for the
    server log only; the caller learns that nothing was kept and that a retry may work."""
    log.error("storage full on %s: %s", request.url.path, str(exc)[:300])
    return problem_response(
        507,
        StorageFull.title,
        STORAGE_FULL_DETAIL,
        StorageFull.slug,
        request.url.path,
        {"Retry-After": "60"},
    )


def _pattern_words() -> dict[str, str]:
    from tre.api.schemas import ABSOLUTE_PATH_PATTERN, IMAGE_REF_PATTERN, SLUG_PATTERN

    return {
        ABSOLUTE_PATH_PATTERN: "give the folder's absolute path on the server (starting with /)",
        SLUG_PATTERN: "use 1 to 63 lowercase letters, digits, '.', '_' or '-', starting with a letter or "
        "digit",
        IMAGE_REF_PATTERN: "give an image pinned by digest: NAME@sha256: and 64 hexadecimal digits",
        r"^[0-9a-f]{32}$": "give a whole id: 32 hexadecimal digits",
        r"^[0-9a-f]{64}$": "give a whole SHA-256: 64 hexadecimal digits",
    }


def _reason(error: Any) -> str:
    """A field error in words: a known pattern says what to give instead of quoting the regex
    (an id such as "Bad Name" was answered with ``String should match pattern '^[a-z0-9]...'``)."""
    if error.get("type") == "string_pattern_mismatch":
        pattern = str((error.get("ctx") or {}).get("pattern", ""))
        given = error.get("input")
        if (
            isinstance(given, str)
            and given.isascii()
            and given != given.lower()
            and re.fullmatch(pattern, given.lower())
        ):
            # `-d LIDC`: the one thing wrong is the letter case, so say that, not the rules.
            return f"ids are lowercase: {given.lower()!r}, not {given!r}"
        words = _pattern_words().get(pattern)
        if words:
            return words
    return str(error.get("msg", ""))


def _input_fault(status: int, detail: str) -> Any:
    """A handler answering ``status`` with a fixed ``detail``: the exception's own text may
    name tables, columns or values, so it goes to the server log, not to the caller."""

    async def handler(request: Request, exc: Exception) -> JSONResponse:
        log.warning("bad input on %s: %s: %s", request.url.path, type(exc).__name__, str(exc)[:500])
        title = _STATUS_TITLES.get(status, "Bad request")
        return problem_response(status, title, detail, "bad-input", request.url.path)

    return handler
