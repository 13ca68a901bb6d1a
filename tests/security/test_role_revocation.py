"""Taking every role away from a user revokes their access before their tokens expire.

Roles in a token are narrowed by the user table, but the job, project and dataset routes
only asked for a valid token: after an admin removed all of alice's roles, her unexpired
token still listed her projects' jobs, read their logs (which hold whatever the job printed,
data included) and outputs, and cancelled jobs.
"""

from __future__ import annotations

import pytest

from tests.worlds import job_body


@pytest.fixture
def job_id(app_client, world) -> str:  # type: ignore[no-untyped-def]
    resp = app_client.post("/api/v1/jobs", headers=world.headers["alice"], json=job_body())
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def _reads(job_id: str) -> list[str]:
    return [
        f"/api/v1/jobs/{job_id}",
        f"/api/v1/jobs/{job_id}/logs",
        f"/api/v1/jobs/{job_id}/outputs",
        "/api/v1/jobs",
        "/api/v1/projects",
        "/api/v1/projects/p1",
        "/api/v1/datasets",
    ]


def test_member_with_a_role_reads_her_projects(app_client, world, job_id) -> None:  # type: ignore[no-untyped-def]
    for url in _reads(job_id):
        assert app_client.get(url, headers=world.headers["alice"]).status_code == 200, url


def test_user_stripped_of_all_roles_is_refused(app_client, world, job_id) -> None:  # type: ignore[no-untyped-def]
    resp = app_client.put(
        "/api/v1/admin/users/alice/roles", headers=world.headers["root"], json={"roles": []}
    )
    assert resp.status_code == 200 and resp.json()["roles"] == []
    for url in _reads(job_id):
        resp = app_client.get(url, headers=world.headers["alice"])
        assert resp.status_code == 403, (url, resp.status_code, resp.text[:200])
    resp = app_client.post(f"/api/v1/jobs/{job_id}/cancel", headers=world.headers["alice"])
    assert resp.status_code == 403
    # whoami still answers (it is how the CLI shows the user what they hold)
    assert app_client.get("/api/v1/me", headers=world.headers["alice"]).json()["roles"] == []
