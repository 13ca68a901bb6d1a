"""A misspelt query parameter is refused on every JSON API route, not ignored: ignored, a
filter such as ``?stat=approved`` or ``?projet=p1`` answers with everything as though it had
filtered. The refusal names what the route takes and never echoes what was sent."""

from __future__ import annotations

import pytest

from tests.conftest import World

CASES = [
    ("alice", "/api/v1/jobs", "state=queued", "zzstate=queued"),
    ("alice", "/api/v1/datasets", "", "zzproject=p1"),
    ("alice", "/api/v1/egress/requests", "state=blocked", "zzstate=blocked"),
    ("audrey", "/api/v1/audit/entries", "actor=alice", "zzactor=alice"),
    ("root", "/api/v1/admin/users", "", "zzrole=admin"),
]


@pytest.mark.parametrize(("user", "path", "known", "unknown"), CASES)
def test_an_unknown_query_name_is_refused_and_not_echoed(  # type: ignore[no-untyped-def]
    app_client, world: World, user: str, path: str, known: str, unknown: str
) -> None:
    good = app_client.get(f"{path}?{known}" if known else path, headers=world.headers[user])
    assert good.status_code == 200, good.text
    r = app_client.get(f"{path}?{unknown}", headers=world.headers[user])
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert (
        problem["type"].endswith("unknown-parameter")
        or problem.get("slug") == "unknown-parameter"
        or ("unknown query parameter" in problem["detail"])
    )
    assert unknown.split("=")[0] not in problem["detail"]
    if known:
        assert known.split("=")[0] in problem["detail"]


def test_the_refusal_comes_after_authentication_and_the_role_gate(app_client, world: World) -> None:  # type: ignore[no-untyped-def]
    assert app_client.get("/api/v1/jobs?zzstate=queued").status_code == 401
    assert app_client.get("/api/v1/admin/users?zzrole=x", headers=world.headers["alice"]).status_code == 403
    assert (
        app_client.get("/api/v1/audit/entries?zzactor=x", headers=world.headers["alice"]).status_code == 403
    )


def test_panel_pages_take_what_browsers_send(app_client, world: World) -> None:  # type: ignore[no-untyped-def]
    r = app_client.get("/panel/login?utm_source=mail")
    assert r.status_code != 422
