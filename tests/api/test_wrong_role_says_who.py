"""A command of another role's is refused saying who the caller is signed in as.

A newcomer following the README as several people in one shell (the researcher, then a DAC
member) ran `tre egress vote` still signed in as alice and read only "this action needs one
of the roles: dac", with nothing on why they lacked it or what to do (round 19)."""

from __future__ import annotations

from tests.conftest import World


def test_the_refusal_names_the_signed_in_user_and_roles(app_client, world: World) -> None:  # type: ignore[no-untyped-def]
    r = app_client.get("/api/v1/admin/committees", headers=world.headers["alice"])
    assert r.status_code == 403 and r.json()["type"].endswith("missing-role"), r.text
    detail = r.json()["detail"]
    assert detail.startswith("this action needs one of the roles: admin;"), detail
    assert "signed in as 'alice' (roles: researcher): sign in as a user who holds one" in detail, detail
