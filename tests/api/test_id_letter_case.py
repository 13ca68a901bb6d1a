"""Ids are lowercase; a newcomer types the dataset's name as its owners write it (`-d LIDC`).

Before round 19 that was answered with the id rules ("use 1 to 63 lowercase letters, digits,
...") or a bare "no project 'P1'", neither saying that the letter case was all that was wrong;
and a user an admin had not made yet was a bare "no user 'zed'". The hint is the id
lowercased whether or not such a project or dataset exists (404s are no oracle).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import World
from tests.worlds import IMAGE


def _reasons(problem: dict[str, Any]) -> str:
    return problem["detail"] + " | " + " | ".join(e["reason"] for e in problem.get("errors", []))


@pytest.mark.parametrize(
    ("who", "path", "body", "says"),
    [
        (
            "alice",
            "/api/v1/jobs",
            {"project_id": "p1", "dataset_ids": ["CT1"], "image": IMAGE, "command": ["true"]},
            "ids are lowercase: 'ct1', not 'CT1'",
        ),
        ("root", "/api/v1/grants", {"project_id": "P1", "dataset_id": "ct1", "days": 1}, "'p1', not 'P1'"),
        ("root", "/api/v1/projects", {"id": "Lung", "name": "Lung"}, "ids are lowercase: 'lung', not 'Lung'"),
    ],
    ids=["submit", "grant", "create"],
)
def test_an_id_in_capitals_is_told_it_is_lowercase(
    app_client, world: World, who: str, path: str, body: dict[str, Any], says: str
) -> None:  # type: ignore[no-untyped-def]
    r = app_client.post(path, json=body, headers=world.headers[who])
    assert r.status_code == 422, r.text
    assert says in _reasons(r.json()), r.json()


def test_an_id_wrong_otherwise_still_gets_the_rules(app_client, world: World) -> None:  # type: ignore[no-untyped-def]
    body = {"project_id": "p1", "dataset_ids": ["CT 1"], "image": IMAGE, "command": ["true"]}
    r = app_client.post("/api/v1/jobs", json=body, headers=world.headers["alice"])
    assert r.status_code == 422
    reasons = _reasons(r.json())
    assert "use 1 to 63 lowercase letters" in reasons and "ids are lowercase:" not in reasons, reasons


@pytest.mark.parametrize(
    ("who", "method", "path", "body", "says"),
    [
        ("alice", "GET", "/api/v1/projects/P1", None, "no project 'P1' (ids are lowercase: 'p1')"),
        (
            "root",
            "POST",
            "/api/v1/projects/P1/members",
            {"user_id": "bob"},
            "no project 'P1' (ids are lowercase",
        ),
        (
            "root",
            "POST",
            "/api/v1/admin/committees/CT1/members",
            {"user_id": "dana"},
            "no dataset 'CT1' (ids are lowercase: 'ct1')",
        ),
        # Not there in any case: the same hint, so the answer tells nothing of what exists.
        ("alice", "GET", "/api/v1/projects/Nope", None, "no project 'Nope' (ids are lowercase: 'nope')"),
        (
            "root",
            "POST",
            "/api/v1/projects/p1/members",
            {"user_id": "zed"},
            "no user 'zed': create it first (tre admin user zed --role researcher)",
        ),
        (
            "root",
            "POST",
            "/api/v1/admin/committees/ct1/members",
            {"user_id": "dave"},
            "no user 'dave': create it first (tre admin user dave --role dac)",
        ),
    ],
    ids=["project", "member", "committee", "absent", "no-member", "no-reviewer"],
)
def test_a_404_says_what_to_do(
    app_client, world: World, who: str, method: str, path: str, body: dict[str, Any] | None, says: str
) -> None:  # type: ignore[no-untyped-def]
    r = app_client.request(method, path, json=body, headers=world.headers[who])
    assert r.status_code == 404, r.text
    assert says in r.json()["detail"], r.json()
