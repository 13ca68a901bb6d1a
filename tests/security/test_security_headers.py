"""Every answer of the app, whatever its route or status, tells a browser: no scripts, no
framing, no sniffing, no caching (unless the route chose a cache policy of its own, which is
then never ``public`` for an authenticated answer). And the API reference at /docs runs no
script from another origin and no inline script: it shares the panel's origin, so a script
there could read a reviewer's panel pages and post their forms."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from tests.security.test_route_sweep import _concrete, app_routes
from tests.security.test_route_sweep import ids as ids  # noqa: F401 - the fixture

# Routes that choose their own cache policy: static files, and immutable audit tiles.
OWN_CACHE_POLICY = {"/panel/static/{name}", "/docs/static/{name}", "/docs"}


def _assert_browser_safe(resp, what) -> None:  # type: ignore[no-untyped-def]
    h = resp.headers
    assert h.get("x-content-type-options") == "nosniff", (what, resp.status_code)
    assert h.get("x-frame-options") == "DENY", what
    csp = h.get("content-security-policy", "")
    assert "frame-ancestors 'none'" in csp, (what, csp)
    script_src = re.search(r"script-src ([^;]*)", csp)
    scripts = script_src.group(1) if script_src else re.search(r"default-src ([^;]*)", csp).group(1)  # type: ignore[union-attr]
    assert "unsafe-inline" not in scripts and "http" not in scripts, (what, csp)


def test_every_answer_forbids_framing_sniffing_and_foreign_scripts(app, app_client, world, ids) -> None:  # type: ignore[no-untyped-def]
    callers = {"anonymous": {}, "alice": world.headers["alice"]}
    for method, path in app_routes(app.routes):
        if method != "GET":
            continue
        for who, headers in callers.items():
            resp = app_client.get(_concrete(path, ids), headers=headers, follow_redirects=False)
            _assert_browser_safe(resp, (who, path))
            cache = resp.headers.get("cache-control", "")
            if path in OWN_CACHE_POLICY:
                assert cache, path
            elif path.startswith("/api/v1/audit/tlog/tile/") and resp.status_code == 200:
                assert "private" in cache and "public" not in cache, (who, path, cache)
            else:
                assert cache == "no-store", (who, path, resp.status_code, cache)
    # The machinery's own answers too: no route, wrong method, oversized headers, a NUL.
    for resp in (
        app_client.get("/nothing-here"),
        app_client.delete("/api/v1/jobs"),
        app_client.get("/api/v1/me", headers={"X-Big": "a" * 70_000}),
        app_client.get("/api/v1/jobs/a%00b", headers=world.headers["alice"]),
    ):
        assert resp.status_code in (400, 404, 405, 431)
        _assert_browser_safe(resp, resp.request.url)
        assert resp.headers["cache-control"] == "no-store"


def test_audit_tiles_are_never_kept_by_shared_caches(app_client, world) -> None:  # type: ignore[no-untyped-def]
    h = world.headers["audrey"]
    size = app_client.get("/api/v1/audit/checkpoint", headers=h).json()["tree_size"]
    assert size > 0
    resp = app_client.get("/api/v1/audit/tlog/tile/entries/000.p/" + str(min(size, 255)), headers=h)
    full = app_client.get("/api/v1/audit/tlog/tile/0/000.p/" + str(min(size, 255)), headers=h)
    assert resp.status_code == 200 and full.status_code == 200, (resp.text, full.text)
    for r in (resp, full):
        assert "public" not in r.headers["cache-control"]


class _Scripts(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.inline: list[str] = []
        self.urls: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.urls += [v for k, v in attrs if k in ("src", "href") and v]
        if tag == "script":
            self.scripts.append(a)
            self._in_script = "src" not in a

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False


def test_the_api_reference_loads_nothing_from_elsewhere(app_client) -> None:  # type: ignore[no-untyped-def]
    page = app_client.get("/docs")
    assert page.status_code == 200
    parsed = _Scripts()
    parsed.feed(page.text)
    assert parsed.scripts and not parsed.inline
    assert all(u.startswith("/") and not u.startswith("//") for u in parsed.urls), parsed.urls
    csp = page.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "connect-src 'self'" in csp
    for url in parsed.urls:
        asset = app_client.get(url)
        assert asset.status_code == 200 and len(asset.content) > 100, url
        assert asset.headers["x-content-type-options"] == "nosniff"
    # FastAPI's CDN pages are not served.
    for gone in (
        "/redoc",
        "/docs/oauth2-redirect",
        "/docs/static/redoc.standalone.js",
        "/docs/static/..%2fcore.py",
    ):
        resp = app_client.get(gone)
        assert resp.status_code == 404 and resp.headers["content-type"] == "application/problem+json", gone


def test_over_https_browsers_are_told_to_stay_there_and_cookies_are_secure(app) -> None:  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    with TestClient(app, base_url="https://tre.example") as tls, TestClient(app) as plain:
        page = tls.get("/panel/login")
        assert page.headers["strict-transport-security"].startswith("max-age=")
        assert "Secure" in page.headers["set-cookie"] and "HttpOnly" in page.headers["set-cookie"]
        assert "strict-transport-security" not in plain.get("/panel/login").headers
