"""The interactive API reference at ``/docs``, served entirely from this origin.

FastAPI's own ``/docs`` and ``/redoc`` load Swagger UI and ReDoc from public CDNs (and Google
Fonts) and start them with an inline script, with no Content-Security-Policy. Those pages
share the origin of the DAC panel, whose session cookie goes with every same-origin request to
``/panel``: a script served by a CDN (compromised, or swapped on the way) could read a
reviewer's panel pages, their CSRF token included, and vote in their name. It also told the
CDN who reads the reference, from a platform that otherwise talks to nothing outside.

Here Swagger UI's files come from the ``fastapi-offline`` package (the upstream
distribution, vendored) and its start-up code from a static file of ours, so the page's
policy allows scripts from this origin only, no inline script, no connection but to this
origin, and no framing. ReDoc and Swagger's OAuth2 redirect page are not served (tokens are
bearer tokens from ``tre login``; the reference needs neither).
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from tre.api.problems import Problem

VENDORED = Path(fastapi_offline.__file__).parent / "static"
OURS = Path(__file__).parent / "static"
ASSETS: dict[str, tuple[Path, str]] = {
    "swagger-ui-bundle.js": (VENDORED / "swagger-ui-bundle.js", "text/javascript; charset=utf-8"),
    "swagger-ui.css": (VENDORED / "swagger-ui.css", "text/css; charset=utf-8"),
    "docs-init.js": (OURS / "docs-init.js", "text/javascript; charset=utf-8"),
}
# Swagger UI sets inline style attributes (hence 'unsafe-inline' for styles only) and draws
# its icons as data: images; scripts and connections stay on this origin.
DOCS_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'none'"
)
PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} - API reference</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script src="/docs/static/docs-init.js"></script>
</body>
</html>
"""

router = APIRouter(include_in_schema=False)


@router.get("/docs")
def docs_page() -> HTMLResponse:
    """Public, like the schema it shows: how to call the API is no secret."""
    return HTMLResponse(
        PAGE.format(title="tre"),
        headers={"Content-Security-Policy": DOCS_POLICY, "Cache-Control": "no-cache"},
    )


@router.get("/docs/static/{name}")
def docs_asset(name: str) -> Response:
    if name not in ASSETS:
        raise Problem(404, "Not found", "no such file of the API reference", "not-found")
    path, media_type = ASSETS[name]
    return Response(path.read_bytes(), media_type=media_type, headers={"Cache-Control": "max-age=3600"})
