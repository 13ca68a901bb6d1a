"""The egress API over HTTP: the whole flow, and every refusal as a clear problem+json."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from typing import Any

import pytest
from sqlalchemy import select

from egress_review import checking
from egress_review.staging import staged_path
from tests.egress.test_workflow_support import seed_world, with_egress_routes
from tre.store.db import raw_writer_lock
from tre.store.models import AuditEntry, UserRole

BASE = "/api/v1/egress/requests"


@pytest.fixture
def client(app, app_client, esettings):  # type: ignore[no-untyped-def]
    with_egress_routes(app)
    return app_client


@pytest.fixture
def world(db, esettings):  # type: ignore[no-untyped-def]
    with db.begin() as s:
        return seed_world(s, esettings)


@pytest.fixture
def auth(token_for):  # type: ignore[no-untyped-def]
    def _h(user: str, *roles: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token_for(user, *roles)}"}

    return _h


def problem(resp, status: int, slug: str) -> dict:  # type: ignore[no-untyped-def]
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    body = resp.json()
    assert body["type"] == f"urn:tre:problem:{slug}", body
    assert body["title"] and body["detail"]
    return body


def create(client, auth, world, files=None):  # type: ignore[no-untyped-def]
    resp = client.post(
        BASE,
        headers=auth(world.researcher, "researcher"),
        json={
            "job_id": world.job_id,
            "files": files or list(world.outputs),
            "justification": "Figures 2 and 3 of the paper",
        },
    )
    assert resp.status_code == 201, resp.text
    return resp.json()


def audit_actions(db) -> list[str]:  # type: ignore[no-untyped-def]
    with db() as s:
        return [r.action for r in s.scalars(select(AuditEntry).order_by(AuditEntry.idx))]


def test_request_review_release_download_over_http(client, auth, world, db) -> None:
    req = create(client, auth, world)
    rid = req["id"]
    assert req["state"] == "awaiting_review" and req["required_reviews"] == 2
    assert {f["path"] for f in req["files"]} == set(world.outputs)

    queue = client.get(BASE, headers=auth("dana", "dac")).json()
    assert [r["id"] for r in queue] == [rid] and queue[0]["can_vote"] is True

    first = client.post(
        f"{BASE}/{rid}/votes",
        headers=auth("dana", "dac"),
        json={"vote": "approve", "comment": "aggregate only"},
    )
    assert first.status_code == 201 and first.json()["votes"] == [] and first.json()["votes_in"] == 1
    seen_by_dave = client.get(f"{BASE}/{rid}", headers=auth("dave", "dac")).json()
    assert seen_by_dave["votes"] == [] and seen_by_dave["my_vote"] is None and seen_by_dave["votes_in"] == 1
    assert "aggregate only" not in json.dumps(seen_by_dave)

    second = client.post(f"{BASE}/{rid}/votes", headers=auth("dave", "dac"), json={"vote": "approve"})
    assert second.json()["state"] == "approved"
    assert {v["reviewer"] for v in second.json()["votes"]} == {"dana", "dave"}

    view = client.get(f"{BASE}/{rid}", headers=auth(world.researcher, "researcher")).json()
    assert view["can_download"] is True
    for f in view["files"]:
        resp = client.get(f"{BASE}/{rid}/files/{f['id']}", headers=auth(world.researcher, "researcher"))
        assert resp.status_code == 200
        assert resp.content == world.outputs[f["path"]]
        digest = base64.b64encode(hashlib.sha256(resp.content).digest()).decode()
        assert resp.headers["repr-digest"] == f"sha-256=:{digest}:"

    record = client.get(f"{BASE}/{rid}/disclosure", headers=auth(world.researcher, "researcher")).json()
    assert record["released"] is True
    released = {f["path"]: f["sha256"] for f in record["files"]}
    assert released == {f["path"]: f["sha256"] for f in view["files"]}
    assert record["reviewers"] == ["dana", "dave"] and record["policies"][0]["name"] == "egress-test"
    assert client.get(f"{BASE}/{rid}/disclosure", headers=auth("audrey", "auditor")).status_code == 200

    actions = audit_actions(db)
    for expected in (
        "egress.requested",
        "egress.staged",
        "egress.check",
        "egress.checked",
        "egress.vote",
        "egress.decided",
        "egress.released",
        "egress.downloaded",
    ):
        assert expected in actions, expected
    assert actions.count("egress.downloaded") == len(world.outputs)


def test_self_approval_is_refused_and_audited(client, auth, world, db) -> None:
    with db.begin() as s:
        s.add(UserRole(user_id=world.researcher, role="dac"))
    rid = create(client, auth, world)["id"]
    body = problem(
        client.post(
            f"{BASE}/{rid}/votes",
            headers=auth(world.researcher, "researcher", "dac"),
            json={"vote": "approve"},
        ),
        403,
        "self-review",
    )
    assert "requested this release" in body["detail"]
    assert "egress.vote_refused" in audit_actions(db)


def test_single_approval_does_not_release(client, auth, world) -> None:
    rid = create(client, auth, world)["id"]
    client.post(f"{BASE}/{rid}/votes", headers=auth("dana", "dac"), json={"vote": "approve"})
    view = client.get(f"{BASE}/{rid}", headers=auth(world.researcher, "researcher")).json()
    assert view["state"] == "awaiting_review" and view["can_download"] is False
    body = problem(
        client.get(
            f"{BASE}/{rid}/files/{view['files'][0]['id']}", headers=auth(world.researcher, "researcher")
        ),
        409,
        "not-approved",
    )
    assert "only after approval" in body["detail"]
    problem(
        client.get(f"{BASE}/{rid}/disclosure", headers=auth(world.researcher, "researcher")),
        409,
        "not-decided",
    )
    again = client.post(f"{BASE}/{rid}/votes", headers=auth("dana", "dac"), json={"vote": "approve"})
    problem(again, 409, "already-voted")


def test_researcher_cannot_vote(client, auth, world) -> None:
    rid = create(client, auth, world)["id"]
    body = problem(
        client.post(
            f"{BASE}/{rid}/votes", headers=auth(world.researcher, "researcher"), json={"vote": "approve"}
        ),
        403,
        "missing-role",
    )
    assert "dac" in body["detail"]
    problem(
        client.post(
            f"{BASE}/{rid}/resolution",
            headers=auth(world.researcher, "researcher"),
            json={"decision": "approve", "comment": "x"},
        ),
        403,
        "missing-role",
    )


def test_download_before_approval_is_refused_and_audited(client, auth, world, db) -> None:
    req = create(client, auth, world)
    problem(
        client.get(
            f"{BASE}/{req['id']}/files/{req['files'][0]['id']}", headers=auth(world.researcher, "researcher")
        ),
        409,
        "not-approved",
    )
    assert "egress.download_refused" in audit_actions(db)


def test_file_modified_after_the_request_is_never_released(client, auth, world, db, esettings) -> None:
    # Changed in the job folder before the request: refused at freezing time.
    src = world.output_path(esettings, "figures/overview.png")
    original = src.read_bytes()
    src.write_bytes(original + b"\x00hidden")
    body = problem(
        client.post(
            BASE,
            headers=auth(world.researcher, "researcher"),
            json={"job_id": world.job_id, "files": ["figures/overview.png"], "justification": "x"},
        ),
        409,
        "output-modified",
    )
    assert "figures/overview.png" in body["detail"] and "SHA-256" in body["detail"]
    assert "egress.stage_refused" in audit_actions(db)
    src.write_bytes(original)

    # Changed in staging after the request and approval: refused at download time.
    req = create(client, auth, world, ["figures/overview.png"])
    for reviewer in ("dana", "dave"):
        client.post(f"{BASE}/{req['id']}/votes", headers=auth(reviewer, "dac"), json={"vote": "approve"})
    # Approved: the requester now sees the file's real SHA-256 (a handle until then).
    assert req["files"][0]["sha256_keyed"] is True
    released = client.get(f"{BASE}/{req['id']}", headers=auth(world.researcher, "researcher")).json()
    assert released["files"][0]["sha256_keyed"] is False
    frozen = staged_path(esettings.staging_dir, released["files"][0]["sha256"])
    os.chmod(frozen, 0o644)
    frozen.write_bytes(original[:-1] + b"\x01")
    body = problem(
        client.get(
            f"{BASE}/{req['id']}/files/{req['files'][0]['id']}", headers=auth(world.researcher, "researcher")
        ),
        409,
        "staged-file-altered",
    )
    assert released["files"][0]["sha256"] in body["detail"]
    assert audit_actions(db).count("egress.download_refused") == 1


def test_outsiders_and_anonymous_callers(client, auth, world) -> None:
    rid = create(client, auth, world)["id"]
    problem(client.get(f"{BASE}/{rid}"), 401, "missing-token")
    problem(client.get(f"{BASE}/{rid}", headers=auth(world.outsider, "researcher")), 404, "not-found")
    assert client.get(BASE, headers=auth(world.outsider, "researcher")).json() == []
    problem(
        client.post(
            BASE,
            headers=auth(world.outsider, "researcher"),
            json={"job_id": world.job_id, "files": ["tables/summary.csv"], "justification": "x"},
        ),
        404,
        "not-found",
    )  # as for an unknown job id: ids are not an oracle
    problem(
        client.post(
            BASE,
            headers=auth(world.researcher, "researcher"),
            json={"job_id": world.job_id, "files": [], "justification": "x"},
        ),
        422,
        "invalid-request",
    )


def test_conflict_then_resolution_over_http(client, auth, world) -> None:
    rid = create(client, auth, world)["id"]
    client.post(f"{BASE}/{rid}/votes", headers=auth("dana", "dac"), json={"vote": "approve"})
    r = client.post(
        f"{BASE}/{rid}/votes", headers=auth("dave", "dac"), json={"vote": "reject", "comment": "no"}
    )
    assert r.json()["state"] == "conflicted" and r.json()["votes_revealed"] is True
    problem(
        client.post(f"{BASE}/{rid}/votes", headers=auth("dora", "dac"), json={"vote": "approve"}),
        409,
        "needs-resolution",
    )
    problem(
        client.post(
            f"{BASE}/{rid}/resolution",
            headers=auth("dave", "dac"),
            json={"decision": "reject", "comment": "still no"},
        ),
        403,
        "resolver-voted",
    )
    done = client.post(
        f"{BASE}/{rid}/resolution",
        headers=auth(world.admin, "admin"),
        json={"decision": "reject", "comment": "identifiable small cohort"},
    )
    assert done.status_code == 201 and done.json()["state"] == "rejected"
    assert done.json()["resolution"]["reviewer"] == world.admin


def test_a_writer_is_not_kept_waiting_while_the_checks_run(
    client, auth, world, engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The airlock's checks run without the database's write lock. (`workflow.prepare_request` says why)."""
    lock = raw_writer_lock(engine)
    assert lock is not None, "this test is about SQLite's writer lock"
    real_check = checking.check_file
    free_during_checks: list[bool] = []

    def check_while_trying_the_lock(*args: Any, **kwargs: Any) -> Any:
        got = lock.acquire(timeout=3)  # the worker's round, in another thread of this process
        if got:
            lock.release()
        free_during_checks.append(got)
        return real_check(*args, **kwargs)

    monkeypatch.setattr(checking, "check_file", check_while_trying_the_lock)
    req = create(client, auth, world)
    assert free_during_checks and all(free_during_checks), free_during_checks
    shown = client.get(f"{BASE}/{req['id']}", headers=auth(world.researcher, "researcher"))
    assert shown.status_code == 200 and shown.json()["state"] == req["state"]
