"""GET /api/v1/jobs: pages of the caller's jobs with ``X-Next-Offset``, the same fields as
GET /api/v1/jobs/{id} (the listing is serialised from a Core query, not the ORM objects),
which also names the job's input jobs and their lineage (docs/job-inputs.md)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.conftest import World
from tests.worlds import job_body
from tre.api.routers.jobs import DEFAULT_PAGE


def test_pages_follow_x_next_offset_and_match_the_single_job_answer(
    app_client: TestClient, world: World
) -> None:
    alice = world.headers["alice"]
    submitted = [app_client.post("/api/v1/jobs", headers=alice, json=job_body()).json() for _ in range(3)]
    first = app_client.get("/api/v1/jobs", headers=alice, params={"limit": 2})
    assert first.status_code == 200 and first.headers["content-type"] == "application/json"
    assert first.headers["X-Next-Offset"] == "2"
    rest = app_client.get("/api/v1/jobs", headers=alice, params={"limit": 2, "offset": 2})
    assert "X-Next-Offset" not in rest.headers  # a short page is the last
    listed = first.json() + rest.json()
    assert [j["id"] for j in listed] == [j["id"] for j in reversed(submitted)]  # newest first
    for job in listed:
        single = app_client.get(f"/api/v1/jobs/{job['id']}", headers=alice).json()
        view_only = {"input_job_ids": [], "lineage_dataset_ids": []}
        assert single == {**job, **view_only}
    assert len(app_client.get("/api/v1/jobs", headers=alice).json()) == 3 < DEFAULT_PAGE
    assert app_client.get("/api/v1/jobs", headers=world.headers["bob"]).json() == []
