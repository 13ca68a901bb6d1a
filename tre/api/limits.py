"""A cap on request body size, for every route (API and panel).

Two routes take uploads with their own larger bounds (``overrides``): the image import
(``POST /api/v1/images``, `Settings.image_max_upload_mb`), which streams the body to disk, and
code archives (``POST /api/v1/code``), which the route also holds to the project's quota as it
streams. Otherwise the largest legitimate bodies are a job submission, an egress
request naming up to 1000 files, and a panel form with a pasted token. Without a cap, one
caller (any token, or none: the body is read before authentication fails on some routes)
could make the server buffer and parse a body of any size; what the request layer accepts
also ends up in audit entries, which can never be deleted (and are capped at 64 KiB each, so
an oversized one turned a refusal into a 500).
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tre.api.problems import problem_response

MAX_BODY_BYTES = 1 << 20


class BodySizeLimit:
    """Refuse (413) a body larger than ``limit`` bytes, by Content-Length or as it streams in."""

    def __init__(
        self, app: ASGIApp, limit: int = MAX_BODY_BYTES, overrides: dict[str, int] | None = None
    ) -> None:
        self.app = app
        self.limit = limit
        # Exact paths (POST only) with their own bound: the upload routes.
        self.overrides = overrides or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit
        if scope.get("method") == "POST":
            limit = self.overrides.get(str(scope.get("path", "")).rstrip("/"), self.limit)
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                if not value.isdigit() or int(value) > limit:
                    await self._too_large(scope, receive, send, limit)
                    return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # FastAPI re-raises HTTPException from body parsing; the app's handler
                    # turns it into a problem document.
                    raise HTTPException(413, f"the request body is larger than {limit} bytes")
            return message

        await self.app(scope, limited, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        response = problem_response(
            413,
            "Payload too large",
            f"the request body is larger than {limit} bytes",
            "payload-too-large",
            str(scope.get("path", "")),
            {"Connection": "close"},
        )
        await response(scope, receive, send)


# Headers: a JWT (even an OIDC one with many groups) is a few KiB; 64 KiB in all is generous.
MAX_HEADER_BYTES = 64 * 1024
# What the HTTP parser (h11 under uvicorn) buffers before it gives up with a bare text/plain
# 400 of its own: far above MAX_HEADER_BYTES, so oversized headers reach `RequestSanity` and
# are answered with a problem document instead.
SERVER_MAX_HEADER_BUFFER = 1 << 20


def uvicorn_options() -> dict[str, object]:
    """Options every uvicorn server of the API runs with (see SERVER_MAX_HEADER_BUFFER)."""
    return {"http": "h11", "h11_max_incomplete_event_size": SERVER_MAX_HEADER_BUFFER}


class RequestSanity:
    """Refuse, with a problem document, requests no route could handle sanely: headers over
    `MAX_HEADER_BYTES` in all (431), and a NUL character in the path or query (400), which
    PostgreSQL refuses in text and which no identifier of ours contains."""

    def __init__(self, app: ASGIApp, max_header_bytes: int = MAX_HEADER_BYTES) -> None:
        self.app = app
        self.max_header_bytes = max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        size = sum(len(k) + len(v) + 4 for k, v in scope.get("headers", []))
        path = str(scope.get("path", ""))
        instance = path.replace("\x00", "")[:1024]
        if size > self.max_header_bytes:
            response = problem_response(
                431,
                "Request header fields too large",
                f"the request headers are larger than {self.max_header_bytes} bytes",
                "headers-too-large",
                instance,
                {"Connection": "close"},
            )
            await response(scope, receive, send)
            return
        query = bytes(scope.get("query_string", b"")).lower()
        if "\x00" in path or b"%00" in query or b"\x00" in query:
            response = problem_response(
                400, "Bad request", "the path or query contains a NUL character", "nul-in-url", instance
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
