"""A cap on request body size, for every route (API and panel).

One route takes an upload, the image import (``POST /api/v1/images``), with its own larger
bound (``overrides``, from `Settings.image_max_upload_mb`); it streams the body to disk.
Otherwise the largest legitimate bodies are a job submission, an egress
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
