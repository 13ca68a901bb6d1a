"""A method a path does not take is answered 405 with every method it does take in ``Allow``.

Starlette named only the first route it tried, so ``OPTIONS /api/v1/jobs`` said
``Allow: GET`` although the path also takes POST.
"""

from __future__ import annotations

import pytest

from tests.conftest import World


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("OPTIONS", "/api/v1/jobs", {"GET", "HEAD", "POST"}),
        ("DELETE", "/api/v1/jobs", {"GET", "HEAD", "POST"}),
        ("OPTIONS", "/api/v1/grants", {"GET", "HEAD", "POST"}),
        ("PUT", "/api/v1/jobs/abc/cancel", {"POST"}),
    ],
)
def test_405_lists_every_allowed_method(
    app_client, world: World, method: str, path: str, allowed: set[str]
) -> None:  # type: ignore[no-untyped-def]
    r = app_client.request(method, path, headers=world.headers["alice"])
    assert r.status_code == 405
    assert r.headers["content-type"].startswith("application/problem+json")
    assert {m.strip() for m in r.headers["allow"].split(",")} == allowed


def test_head_answers_like_get_without_a_body(app_client, world: World) -> None:  # type: ignore[no-untyped-def]
    """``Allow`` lists HEAD wherever GET is; a HEAD used to get 405 all the same."""
    get = app_client.get("/api/v1/jobs", headers=world.headers["alice"])
    head = app_client.head("/api/v1/jobs", headers=world.headers["alice"])
    assert get.status_code == head.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]
    assert head.headers["content-length"] == str(len(get.content))


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer not-a-token"}])
def test_head_is_authenticated_like_get(app_client, headers: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    head = app_client.head("/api/v1/jobs", headers=headers)
    assert head.status_code == app_client.get("/api/v1/jobs", headers=headers).status_code == 401
    assert head.content == b""


def test_head_where_get_is_not_allowed_is_405(app_client, world: World) -> None:  # type: ignore[no-untyped-def]
    head = app_client.head("/api/v1/jobs/abc/cancel", headers=world.headers["alice"])
    assert head.status_code == 405
    assert head.headers["allow"] == "POST"


@pytest.mark.parametrize("path", ["/api/v1/nope", "/api/v1/audit/serch", "/api/v2/jobs"])
def test_an_unknown_route_says_so_and_where_the_routes_are(app_client, world: World, path: str) -> None:  # type: ignore[no-untyped-def]
    """A mistyped address is a 404 problem whose detail says why (it said "Not Found")."""
    for headers in (world.headers["alice"], {}):
        r = app_client.get(path, headers=headers)
        assert r.status_code == 404
        assert r.headers["content-type"].startswith("application/problem+json")
        assert "no such API route" in r.json()["detail"] and "/openapi.json" in r.json()["detail"]
    assert (
        app_client.get("/api/v1/jobs/nope", headers=world.headers["alice"]).json()["detail"]
        == "no job 'nope'"
    )
