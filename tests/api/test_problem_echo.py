"""A 422 names the fields it refuses, but a field name is the caller's own text: control
characters (a NUL broke the schema's promise under schemathesis) are not echoed, and the list
of field errors is bounded however many a body carries."""

from __future__ import annotations

from tests.conftest import World
from tre.api.problems import MAX_FIELD_ERRORS


def test_field_names_in_a_422_carry_no_control_characters(app_client, world: World) -> None:  # type: ignore[no-untyped-def]
    body = {"project_id": "lung", "\u0000evil\x1b[31m": 1, "inputs": [{"\x07k": 1}]}
    r = app_client.post("/api/v1/jobs", json=body, headers=world.headers["alice"])
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    text = problem["detail"] + "".join(e["field"] for e in problem["errors"])
    assert not any(ord(ch) < 32 or ord(ch) == 127 for ch in text), text
    assert "?evil?[31m" in text


def test_the_list_of_field_errors_is_bounded(app_client, world: World) -> None:  # type: ignore[no-untyped-def]
    body = {"project_id": "lung", **{f"extra{i}": i for i in range(200)}}
    r = app_client.post("/api/v1/jobs", json=body, headers=world.headers["alice"])
    assert r.status_code == 422
    assert len(r.json()["errors"]) == MAX_FIELD_ERRORS
