"""Browser-facing defaults on every answer of the app: no sniffing, no framing, no scripts,
no caching, no referrer, unless the route chose its own value.

Why one middleware rather than headers per route: the API, the panel and the docs page share
one origin, and the panel's session cookie goes with every same-origin request to
``/panel``. A page anywhere on the origin that could run a script, or be framed, or a JSON
answer a browser sniffed into HTML, could read panel pages and post the forms they carry.
So every answer gets a Content-Security-Policy that forbids scripts and framing, and
``nosniff``; a route that needs more (the panel's images and styles, the docs page's own
scripts) sets its own policy. Answers carry data of the caller, so caches must not keep
them (``no-store``) unless the route says otherwise (the audit log's immutable tiles, the
panel's stylesheet). Over https (uvicorn sets the scheme from a trusted proxy's
``X-Forwarded-Proto``), ``Strict-Transport-Security`` as well.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_HEADERS: dict[str, str] = {
    "Content-Security-Policy": (
        "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Resource-Policy": "same-origin",
}

# Once a browser has reached us over TLS, never plain HTTP again: a downgraded first request
# would carry the panel's cookie in clear.
HSTS = "max-age=31536000"
_DEFAULTS = tuple((k.lower().encode(), v.encode()) for k, v in DEFAULT_HEADERS.items())
_HTTPS_DEFAULTS = (*_DEFAULTS, (b"strict-transport-security", HSTS.encode()))


class SecurityHeaders:
    """ASGI middleware: add `DEFAULT_HEADERS` that the response does not already carry."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        https = scope.get("scheme") == "https"

        defaults = _HTTPS_DEFAULTS if https else _DEFAULTS

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                # Raw header pairs, not MutableHeaders: a quarter of the cost on every answer.
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers.extend(pair for pair in defaults if pair[0] not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
