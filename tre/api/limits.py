"""A cap on request body size, for every route (API and panel).

One route takes an upload, code archives (``/api/v1/code``): it gets its own ceiling here
and the route holds it to the project's quota as it streams. Elsewhere the largest
legitimate bodies are a job submission, an egress
request naming up to 1000 files, and a panel form with a pasted token. Without a cap, one
caller (any token, or none: the body is read before authentication fails on some routes)
could make the server buffer and parse a body of any size; what the request layer accepts
also ends up in audit entries, which can never be deleted (and are capped at 64 KiB each, so
an oversized one turned a refusal into a 500).
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tre.api.problems import problem_response

MAX_BODY_BYTES = 1 << 20


class BodySizeLimit:
    """Refuse (413) a body larger than ``limit`` bytes, by Content-Length or as it streams in."""

    def __init__(
        self, app: ASGIApp, limit: int = MAX_BODY_BYTES, per_path: Mapping[str, int] | None = None
    ) -> None:
        self.app = app
        self.default_limit = limit
        self.per_path = dict(per_path or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.per_path.get(str(scope.get("path", "")), self.default_limit)
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
