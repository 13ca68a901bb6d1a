"""Round 15: refusal entries survive a store that cannot take them and a killed server.

Two classes. ``federation.submission_refused`` was written in the refused request's own
transaction (and the code-quota refusal with no retry): when that write failed, the entry was
gone and the researcher got a 503 instead of the refusal. And every refusal entry whose write
failed waited in the server's memory only: a SIGKILL (an out-of-memory kill, a node drained
hard) lost it. Now each is written in a unit of work of its own, and kept on disk
(``<home>/spool/audit-refusals``) until the store takes it: the next answer, the next start
of a server on the home, or ``tre admin doctor``.

The store's failure is a real exception raised where an append signs its checkpoint (as a
busy or unavailable store raises there); the kill is a real SIGKILL of a real server process.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.exc import OperationalError

from tests.federation.test_hub_api import IMAGE, hub  # noqa: F401 - `hub` is a fixture
from tre.audit import log as audit_log
from tre.config import Settings
from tre.store.db import session_scope
from tre.store.models import AuditEntry, Project

REPO = Path(__file__).resolve().parents[2]


def _entries(engine: Engine, action: str) -> list[dict[str, Any]]:
    with session_scope(engine) as s:
        bodies = s.scalars(select(AuditEntry.body).order_by(AuditEntry.idx)).all()
    return [e for e in map(json.loads, bodies) if e["action"] == action]


@contextmanager
def store_refuses_appends(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """While inside, every audit append fails as a locked store fails (the refusal stands)."""
    real = audit_log._signed_checkpoint

    def busy(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("INSERT", {}, Exception("database is locked"))

    monkeypatch.setattr(audit_log, "_signed_checkpoint", busy)
    try:
        yield
    finally:
        monkeypatch.setattr(audit_log, "_signed_checkpoint", real)


def test_submission_refused_while_the_store_fails_is_kept_and_written_later(  # type: ignore[no-untyped-def]
    hub,  # noqa: F811
    engine_any: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Was: the entry written in the request's transaction failed with it (a 503, no entry,
    ever). Now: the refusal stands (403) and its entry is written by the next answer."""
    body = {"project_id": "fedlung", "image": IMAGE, "command": ["true"]}
    assert hub.get("/hub/v1/jobs", headers=hub.tokens["bob"]).status_code == 200  # token's first use
    with store_refuses_appends(monkeypatch):
        resp = hub.post("/api/v1/jobs", json=body, headers=hub.tokens["bob"])
    assert resp.status_code == 403, resp.text
    assert _entries(engine_any, "federation.submission_refused") == []  # not written yet
    assert hub.get("/hub/v1/jobs", headers=hub.tokens["alice"]).status_code == 200
    got = _entries(engine_any, "federation.submission_refused")
    assert [(e["actor"], e["details"]["reason"]) for e in got] == [("bob", "not_member")]


def test_code_quota_refusal_while_the_store_fails_is_kept(  # type: ignore[no-untyped-def]
    hub,  # noqa: F811
    engine_any: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Was: logged and dropped. Now kept and written with the next entries."""
    with session_scope(engine_any) as s:
        project = s.get(Project, "fedlung")
        assert project is not None
        project.max_code_mb = 0
    with store_refuses_appends(monkeypatch):
        resp = hub.post(
            "/api/v1/code",
            params={"project_id": "fedlung"},
            content=gzip.compress(b"\0" * 1024),
            headers={**hub.tokens["alice"], "Content-Type": "application/gzip"},
        )
    assert resp.status_code == 413, resp.text
    assert hub.get("/hub/v1/jobs", headers={"Authorization": "Bearer nope"}).status_code == 401
    got = _entries(engine_any, "federation.submission_refused")
    assert [(e["actor"], e["details"]["reason"]) for e in got] == [("alice", "over_code_quota")]


# --- a killed server ---------------------------------------------------------------------------

KILLED_SERVER = textwrap.dedent(
    """
    import os, signal, sys
    from fastapi.testclient import TestClient
    from sqlalchemy.exc import OperationalError
    from tre.api.app import create_app
    from tre.audit import log as audit_log
    from tre.config import Settings
    from tre.store.db import make_engine

    home, url = sys.argv[1], sys.argv[2]
    settings = Settings(home=home, database_url=url, policies_dir=sys.argv[3])
    app = create_app(settings, make_engine(url))

    def busy(*args, **kwargs):
        raise OperationalError("INSERT", {}, Exception("database is locked"))

    with TestClient(app) as client:
        audit_log._signed_checkpoint = busy  # the store cannot take the refusals now
        for route in ("/api/v1/jobs", "/api/v1/projects", "/api/v1/datasets"):
            assert client.get(route, headers={"Authorization": "Bearer x"}).status_code == 401
        print("refused", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # before any shutdown flush
    """
)


def _kill_a_server_holding_refusals(settings: Settings, engine: Engine) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            KILLED_SERVER,
            str(settings.home),
            settings.resolved_database_url,
            str(settings.policies_dir),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == -signal.SIGKILL and "refused" in proc.stdout, proc.stderr[-3000:]
    assert _entries(engine, "auth.refused") == []


def test_refusals_of_a_killed_server_are_written_at_the_next_start(
    settings: Settings, engine: Engine
) -> None:
    """Was: kept in the killed process's memory, lost. Now on disk, written at start."""
    from tre.api.app import create_app

    _kill_a_server_holding_refusals(settings, engine)
    with TestClient(create_app(settings, engine)):
        pass
    routes = sorted(e["details"]["route"] for e in _entries(engine, "auth.refused"))
    assert routes == ["/api/v1/datasets", "/api/v1/jobs", "/api/v1/projects"]
    with TestClient(create_app(settings, engine)):  # written once
        pass
    assert len(_entries(engine, "auth.refused")) == 3


def test_refusals_of_a_killed_server_are_written_by_the_doctor(settings: Settings, engine: Engine) -> None:
    from tre.doctor import run_checks

    _kill_a_server_holding_refusals(settings, engine)
    checks = {c.name: c for c in run_checks(settings, engine)}
    assert len(_entries(engine, "auth.refused")) == 3
    again = {c.name: c for c in run_checks(settings, engine)}
    assert len(_entries(engine, "auth.refused")) == 3
    assert checks["refusal entries"].status == "ok" and "wrote 3" in checks["refusal entries"].detail
    assert again["refusal entries"].status == "ok"


def test_a_spooled_batch_is_written_once_by_two_processes(settings: Settings, engine: Engine) -> None:
    """A batch claimed by one writer is not taken by another: one entry each, no doubles."""
    from tre.audit import refusal_spool
    from tre.audit.log import AuditEvent

    refusal_spool.keep(settings.home, [AuditEvent("anonymous", "auth.refused", details={"count": 1})])
    first = refusal_spool.claim(settings.home)
    second = refusal_spool.claim(settings.home)
    assert len(first) == 1 and second == []
    refusal_spool.give_back(first)  # the write failed: this process takes it again
    assert len(refusal_spool.claim(settings.home)) == 1


def test_kept_entries_past_the_bound_are_counted_under_their_own_action() -> None:
    """A failed write of more submission refusals than are kept: the rest are counted as
    ``federation.submission_refused_overflow``. Was: counted as ``auth.refused`` overflow, a
    count of refusals that never happened, under the wrong name."""
    from tre.audit.log import AuditEvent
    from tre.audit.refusals import MAX_PENDING, RefusalCounter

    c = RefusalCounter(window_s=3600)
    event = AuditEvent("alice", "federation.submission_refused", details={"reason": "not_member"})
    c.requeue([event] * (MAX_PENDING + 7))
    out = c.flush()
    kept = [e for e in out if e.action == "federation.submission_refused"]
    over = {e.action: (e.details or {}).get("count") for e in out if e.action.endswith("_overflow")}
    assert len(kept) == MAX_PENDING
    assert over == {"federation.submission_refused_overflow": 7}
