"""What an auditor must be able to see (issue 11, item 10), through the real API."""

from __future__ import annotations

import json
from base64 import urlsafe_b64decode
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from tests.conftest import World
from tests.worlds import IMAGE, job_body
from tre.audit.events import record_job_started
from tre.audit.refusals import MAX_KEYS_PER_WINDOW, RefusalCounter
from tre.cli.admin import admin_app
from tre.store.db import session_scope
from tre.store.models import AuditEntry, Job


def entries(engine: Engine, action: str) -> list[dict[str, Any]]:
    with session_scope(engine) as s:
        bodies = s.scalars(
            select(AuditEntry.body).where(AuditEntry.action == action).order_by(AuditEntry.idx)
        )
        return [json.loads(b) for b in bodies]


def search(c: TestClient, w: World, **params: str) -> list[dict[str, Any]]:
    r = c.get("/api/v1/audit/entries", params=params, headers=w.headers["audrey"])
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def test_job_facts_dataset_reads_and_cancel_before_start(
    app_client: TestClient, world: World, engine: Engine
) -> None:
    r = app_client.post("/api/v1/jobs", headers=world.headers["alice"], json=job_body())
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    submitted = search(app_client, world, job_id=job_id, action="job.submitted")[0]["details"]
    assert submitted["image_digest"] == IMAGE.split("@")[1]
    assert submitted["datasets"] == ["ct1"] and "code_hash" in submitted
    assert submitted["resources"] == {
        "cpu": 1,
        "memory_mb": 512,
        "gpu": 0,
        "time_limit_s": 30,
        "output_limit_mb": 256,
    }

    with session_scope(engine) as s:  # what the worker records when it starts the job
        job = s.get(Job, job_id)
        assert job is not None
        record_job_started(s, job, {"worker": "w1", "executor": "local"})
    reads = search(app_client, world, dataset_id="ct1")  # also the grant and registration
    assert [(e["job_id"], e["actor"]) for e in reads if e["action"] == "dataset.read"] == [(job_id, "alice")]
    assert search(app_client, world, action="dataset.read")[0]["dataset_id"] == "ct1"

    queued = app_client.post("/api/v1/jobs", headers=world.headers["alice"], json=job_body()).json()["id"]
    assert app_client.post(f"/api/v1/jobs/{queued}/cancel", headers=world.headers["alice"]).status_code == 200
    ended = search(app_client, world, job_id=queued, action="job.ended")
    assert len(ended) == 1 and ended[0]["details"]["state"] == "cancelled"
    assert ended[0]["details"]["datasets"] == ["ct1"]


def test_reads_are_recorded_once_per_window(app_client: TestClient, world: World, engine: Engine) -> None:
    job_id = app_client.post("/api/v1/jobs", headers=world.headers["alice"], json=job_body()).json()["id"]
    for _ in range(5):  # `tre logs -f` polls
        assert (
            app_client.get(f"/api/v1/jobs/{job_id}/logs", headers=world.headers["alice"]).status_code == 200
        )
    assert app_client.get(f"/api/v1/jobs/{job_id}/logs", headers=world.headers["root"]).status_code == 200
    assert app_client.get(f"/api/v1/jobs/{job_id}/outputs", headers=world.headers["alice"]).status_code == 200
    logs = [e for e in entries(engine, "job.log_read") if e["job_id"] == job_id]
    assert [(e["actor"], e["details"]["log"]) for e in logs] == [("alice", "screened"), ("root", "raw")]
    assert [e["actor"] for e in entries(engine, "job.outputs_read") if e["job_id"] == job_id] == ["alice"]


def test_refusals_are_recorded_but_cannot_flood(app_client: TestClient, world: World, engine: Engine) -> None:
    before = len(entries(engine, "auth.refused"))
    for i in range(40):
        r = app_client.get("/api/v1/jobs", headers={"Authorization": f"Bearer not-a-token-{i}"})
        assert r.status_code == 401
    for i in range(40):
        assert app_client.get(f"/api/v1/jobs/nope{i}", headers=world.headers["bob"]).status_code == 404
    assert app_client.get("/api/v1/audit/entries", headers=world.headers["alice"]).status_code == 403
    new = entries(engine, "auth.refused")[before:]
    keys = {(e["actor"], e["details"]["status"], e["details"]["route"]) for e in new}
    assert keys == {
        ("anonymous", 401, "/api/v1/jobs"),
        ("bob", 404, "/api/v1/jobs/{job_id}"),  # the route template, never the caller's path
        ("alice", 403, "/api/v1/audit/entries"),
    }
    assert len(new) == 3  # repeats are counted, not written one by one


def test_refusal_counter_bounds_entries_per_window() -> None:
    """A window tracks at most MAX_KEYS_PER_WINDOW keys of anonymous callers and as many of
    signed-in ones (apart since round 16, so anonymous refusals cannot spend a user's budget);
    past them each caller's refusals are one overflow count under that caller (signed-in
    callers are registered users: their number is the registry's, not the attacker's)."""
    c = RefusalCounter(window_s=3600, max_keys=MAX_KEYS_PER_WINDOW)
    written = []
    for i in range(10 * MAX_KEYS_PER_WINDOW):
        written += c.observe((404, "GET", f"/x{i}", "alice"))
        written += c.observe((401, "GET", f"/y{i}", "anonymous"))
    for _ in range(1000):
        written += c.observe((401, "GET", "/y0", "anonymous"))  # a tracked key: counted
    assert len(written) == 2 * MAX_KEYS_PER_WINDOW  # the first of each tracked key; the rest counted
    summary = c.flush()
    overflow = {e.actor: (e.details or {})["count"] for e in summary if e.action == "auth.refused_overflow"}
    past = 10 * MAX_KEYS_PER_WINDOW - MAX_KEYS_PER_WINDOW
    assert overflow == {"alice": past, "anonymous": past}
    repeats = [e for e in summary if e.action == "auth.refused"]
    assert [(e.details or {})["count"] for e in repeats] == [1000]


def test_admin_token_is_recorded_with_its_jti_and_expiry(world: World, engine: Engine) -> None:
    res = CliRunner().invoke(admin_app, ["token", "--user", "alice", "--role", "researcher", "--ttl", "600"])
    assert res.exit_code == 0, res.output
    token = res.output.strip().splitlines()[-1]
    payload = token.split(".")[1]
    claims = json.loads(urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    issued = [e for e in entries(engine, "auth.token_issued") if e["details"]["jti"] == claims["jti"]]
    assert len(issued) == 1
    assert issued[0]["details"]["user"] == "alice" and issued[0]["details"]["expires_at"].startswith("20")
    assert token not in json.dumps(issued[0])


def test_token_use_is_tied_to_its_jti(app_client: TestClient, world: World, engine: Engine) -> None:
    token = world.headers["alice"]["Authorization"].split()[1]
    payload = token.split(".")[1]
    jti = json.loads(urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["jti"]
    for _ in range(3):
        assert app_client.get("/api/v1/jobs", headers=world.headers["alice"]).status_code == 200
    used = [e for e in entries(engine, "auth.token_used") if e["details"]["jti"] == jti]
    assert len(used) == 1 and used[0]["actor"] == "alice"
