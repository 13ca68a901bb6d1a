"""A denied job submission's ``job.denied`` entry survives a store that cannot take it.

It was written in the refused request's own transaction, committed because the error was
marked audited: when that write failed, the researcher got a 503 instead of the refusal and
the entry was gone; and the commit kept whatever else the request had written before
admission refused it. Now the request is rolled back and the entry written on its own after
it (`TreError.refusals`), kept on disk when the store cannot take it then, and written with
the next entries. Services used directly (the CLI's units of work, the federation agent)
write it after their rollback too (`tre.store.db.settle`).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import Engine, select

from tests.audit.test_refusals_durable_round15 import store_refuses_appends
from tests.worlds import job_body
from tre.auth.principal import Principal
from tre.errors import TreError
from tre.jobs import service
from tre.jobs.admission import JobRequest
from tre.store.db import session_scope
from tre.store.models import AuditEntry, Job


def _denials(engine: Engine) -> list[dict[str, Any]]:
    with session_scope(engine) as s:
        bodies = s.scalars(select(AuditEntry.body).order_by(AuditEntry.idx)).all()
    return [e for e in map(json.loads, bodies) if e["action"] == "job.denied"]


def test_a_denial_while_the_store_fails_is_answered_and_written_later(  # type: ignore[no-untyped-def]
    app_client, world, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (
        app_client.get("/api/v1/jobs", headers=world.headers["alice"]).status_code == 200
    )  # token's first use
    with store_refuses_appends(monkeypatch):
        resp = app_client.post(
            "/api/v1/jobs", headers=world.headers["alice"], json=job_body(image="docker.io/evil/miner:1")
        )
    assert resp.status_code == 403, resp.text  # the refusal itself, not a 503
    assert _denials(engine) == []  # kept, not written yet
    assert app_client.get("/api/v1/jobs", headers=world.headers["alice"]).status_code == 200
    got = _denials(engine)
    assert [(e["actor"], e["details"]["image"]) for e in got] == [("alice", "docker.io/evil/miner:1")]


def test_a_denial_in_a_unit_of_work_of_its_own_keeps_only_the_entry(world, settings, engine: Engine) -> None:  # type: ignore[no-untyped-def]
    """Called outside the API (`session_scope`): what the unit wrote before the refusal is
    rolled back, the entry is written after it."""
    request = JobRequest(**job_body(image="docker.io/evil/miner:2"))  # type: ignore[arg-type]
    alice = Principal(user_id="alice", roles=frozenset({"researcher"}))
    with pytest.raises(TreError), session_scope(engine) as s:
        s.add(Job(project_id="p1", submitted_by="alice", image="x", command=["true"], state="queued"))
        service.submit(s, settings, alice, request)
    with session_scope(engine) as s:
        assert s.scalars(select(Job)).all() == []
    assert [e["details"]["image"] for e in _denials(engine)] == ["docker.io/evil/miner:2"]
