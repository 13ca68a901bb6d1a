"""Another project's ids answer exactly like unknown ids (issue 17, item 10).

Asking the airlock to release another project's job answered 403 while an unknown id
answered 404, so job ids of other projects could be confirmed; admission named a dataset
without a grant differently from a dataset that does not exist.
"""

from __future__ import annotations

from tests.worlds import job_body


def _same_answer(a, b) -> None:  # type: ignore[no-untyped-def]
    assert a.status_code == b.status_code, (a.text, b.text)
    ja, jb = a.json(), b.json()
    assert (ja["type"], ja["title"]) == (jb["type"], jb["title"])


def test_egress_for_another_projects_job_is_not_found(app_client, world) -> None:  # type: ignore[no-untyped-def]
    job = app_client.post("/api/v1/jobs", headers=world.headers["alice"], json=job_body())
    assert job.status_code == 201
    body = {"files": ["out.csv"], "justification": "x"}
    bob = world.headers["bob"]
    foreign = app_client.post(
        "/api/v1/egress/requests", headers=bob, json={**body, "job_id": job.json()["id"]}
    )
    unknown = app_client.post("/api/v1/egress/requests", headers=bob, json={**body, "job_id": "0" * 32})
    assert foreign.status_code == 404
    _same_answer(foreign, unknown)
    # And the job itself, its log and outputs, as before.
    for suffix in ("", "/logs", "/outputs"):
        _same_answer(
            app_client.get(f"/api/v1/jobs/{job.json()['id']}{suffix}", headers=bob),
            app_client.get(f"/api/v1/jobs/{'0' * 32}{suffix}", headers=bob),
        )
    _same_answer(
        app_client.get("/api/v1/projects/p1", headers=bob),
        app_client.get("/api/v1/projects/nope", headers=bob),
    )


def test_admission_does_not_confirm_dataset_names(app_client, world) -> None:  # type: ignore[no-untyped-def]
    bob = world.headers["bob"]
    existing = app_client.post(
        "/api/v1/jobs", headers=bob, json=job_body(project_id="p2", dataset_ids=["ct1"])
    )
    missing = app_client.post(
        "/api/v1/jobs", headers=bob, json=job_body(project_id="p2", dataset_ids=["zz9"])
    )
    assert existing.status_code == missing.status_code == 403
    assert existing.json()["detail"].replace("ct1", "X") == missing.json()["detail"].replace("zz9", "X")
