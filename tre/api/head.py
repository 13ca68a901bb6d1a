"""HEAD answered as the GET of the same path, without the body.

FastAPI's routes accept only the methods they declare, so a HEAD used to get 405 while the
405's own ``Allow`` header (and RFC 9110, which requires HEAD wherever GET is) listed it.
Rewriting HEAD to GET in front of everything keeps one code path: authentication, role
checks, the refusal audit and the read cache see exactly what a GET would, and the client
gets the GET's status and headers (``Content-Length`` included, as the RFC asks) and no body.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGet:
    """ASGI middleware: run a HEAD request as a GET and drop the response body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "HEAD":
            await self.app(scope, receive, send)
            return
        finished = False

        async def send_without_body(message: Message) -> None:
            nonlocal finished
            if message["type"] != "http.response.body":
                await send(message)
                return
            if finished:
                return
            if not message.get("more_body", False):
                finished = True
                await send({"type": "http.response.body", "body": b"", "more_body": False})

        await self.app({**scope, "method": "GET"}, receive, send_without_body)
