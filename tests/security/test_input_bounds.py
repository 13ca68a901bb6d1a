"""Request bodies and the fields that reach the audit log are bounded.

Before the fix any token holder could post a body of any size (parsed in memory), and a
refused job submission is audited with the caller's dataset list: a researcher in no
project could add an entry of up to the log's 64 KiB cap per request, or, past the cap, turn
the submission into a 500 (the audit append raised) instead of a clear refusal.
"""

from __future__ import annotations

import json

from sqlalchemy import select

from tests.worlds import job_body
from tre.store.db import session_scope
from tre.store.models import AuditEntry

JOBS = "/api/v1/jobs"


def _largest_audit_entry(engine) -> int:  # type: ignore[no-untyped-def]
    with session_scope(engine) as s:
        return max((len(e.body) for e in s.scalars(select(AuditEntry))), default=0)


def test_huge_body_is_refused_before_parsing(app_client, world) -> None:  # type: ignore[no-untyped-def]
    body = json.dumps(job_body(command=["python3", "-c", "x" * (2 << 20)])).encode()
    resp = app_client.post(
        JOBS, headers={**world.headers["alice"], "content-type": "application/json"}, content=body
    )
    assert resp.status_code == 413, resp.text[:300]
    assert resp.headers["content-type"].startswith("application/problem+json")


def test_huge_chunked_body_is_refused(app_client, world) -> None:  # type: ignore[no-untyped-def]
    def chunks():  # type: ignore[no-untyped-def]
        yield b'{"project_id": "p1", "image": "x", "command": ["'
        for _ in range(40):
            yield b"y" * 65536
        yield b'"]}'

    resp = app_client.post(
        JOBS, headers={**world.headers["alice"], "content-type": "application/json"}, content=chunks()
    )
    assert resp.status_code == 413, resp.text[:300]


def test_denied_submission_cannot_bloat_the_audit_log(app_client, world, engine) -> None:  # type: ignore[no-untyped-def]
    # bob is not a member of p1: the refusal is audited with the datasets he named.
    many = [f"ds-{i:05d}-" + "z" * 40 for i in range(15_000)]
    resp = app_client.post(JOBS, headers=world.headers["bob"], json=job_body(dataset_ids=many))
    assert resp.status_code == 422, resp.text[:300]
    assert _largest_audit_entry(engine) < 16_384


def test_command_and_ids_are_bounded(app_client, world) -> None:  # type: ignore[no-untyped-def]
    h = world.headers["alice"]
    too_long = job_body(command=["python3", "-c", "#" * 70_000])
    assert app_client.post(JOBS, headers=h, json=too_long).status_code == 422
    too_many = job_body(command=["true"] * 5000)
    assert app_client.post(JOBS, headers=h, json=too_many).status_code == 422
    in_all = job_body(command=["x" * 60_000] * 5)
    assert app_client.post(JOBS, headers=h, json=in_all).status_code == 422
    long_project = job_body(project_id="p" * 5000)
    assert app_client.post(JOBS, headers=h, json=long_project).status_code == 422


def test_ordinary_submission_still_admitted(app_client, world) -> None:  # type: ignore[no-untyped-def]
    resp = app_client.post(JOBS, headers=world.headers["alice"], json=job_body())
    assert resp.status_code == 201, resp.text


def test_egress_file_names_are_bounded(app_client, world) -> None:  # type: ignore[no-untyped-def]
    resp = app_client.post(
        "/api/v1/egress/requests",
        headers=world.headers["alice"],
        json={"job_id": "j", "files": ["f" * 5000], "justification": "x"},
    )
    assert resp.status_code == 422, resp.text[:300]


def test_nesting_bytes_and_types_no_parser_expects_get_problems(app_client, world) -> None:  # type: ignore[no-untyped-def]
    """JSON nested past the parser's recursion limit (within the body cap), bytes that are not
    UTF-8 in the path and query, and a body of the wrong type: each a problem document with a
    reason, never a 500."""
    alice = world.headers["alice"]
    as_json = {**alice, "content-type": "application/json"}
    answers = {
        "nested": app_client.post(JOBS, headers=as_json, content=b"[" * 400_000 + b"]" * 400_000),
        "nested object": app_client.post(
            JOBS, headers=as_json, content=b'{"a":' * 200_000 + b"1" + b"}" * 200_000
        ),
        "path bytes": app_client.get("/api/v1/jobs/%FF%FE%ED%A0%80", headers=alice),
        "query bytes": app_client.get("/api/v1/jobs?state=%FF", headers=alice),
        "form body": app_client.post(
            JOBS, headers={**alice, "content-type": "application/x-www-form-urlencoded"}, content=b"a=1"
        ),
        "not utf-8": app_client.post(JOBS, headers=as_json, content=b"\xff\xfe{}"),
    }
    for what, resp in answers.items():
        assert 400 <= resp.status_code < 500, (what, resp.status_code, resp.text[:200])
        assert resp.headers["content-type"] == "application/problem+json", what
        assert resp.json()["detail"], what
