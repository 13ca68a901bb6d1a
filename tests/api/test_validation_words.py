"""A field that breaks a known pattern is answered with what to give, not the regex: a
newcomer's `tre project create "Lung CT"` got ``String should match pattern '^[a-z0-9]...'``."""

from __future__ import annotations

from tests.conftest import World


def test_a_bad_id_says_what_an_id_may_hold(app_client, world: World) -> None:  # type: ignore[no-untyped-def]
    r = app_client.post(
        "/api/v1/projects", headers=world.headers["root"], json={"id": "Lung CT", "name": "x"}
    )
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["detail"].startswith("id: use 1 to 63 lowercase letters, digits"), body
    assert "pattern" not in body["detail"] and body["errors"][0]["field"] == "id"


def test_a_bad_image_reference_says_to_pin_it_by_digest(app_client, world: World) -> None:  # type: ignore[no-untyped-def]
    r = app_client.post(
        "/api/v1/images/approvals",
        headers=world.headers["root"],
        json={"reference": "busybox", "project_id": "p1"},
    )
    assert r.status_code == 422
    assert "pinned by digest: NAME@sha256:" in r.json()["detail"], r.json()


def test_other_field_errors_keep_their_own_words(app_client, world: World) -> None:  # type: ignore[no-untyped-def]
    r = app_client.post(
        "/api/v1/grants",
        headers=world.headers["root"],
        json={"project_id": "p1", "dataset_id": "ct1", "days": 0},
    )
    assert r.status_code == 422
    assert r.json()["detail"] == "days: Input should be greater than 0"
