"""Round 16: the refusal spool (``<TRE_HOME>/spool/audit-refusals``) as an insider with write
access to the state directory would use it while the server is down.

The spool is how refusal entries whose write failed reach the log later: the next start of a
server on the home, or ``tre admin doctor``, writes every batch it finds there, signed by the
log's key. Until round 16 it wrote whatever a batch held: a file dropped into the folder put
an ``egress.vote`` of a DAC member, an ``admin.role_granted`` or a ``job.admitted`` into the
signed log, with no key, no API call and no token; and a batch copied under a second name was
written twice. Each test below failed on the old code (the vote and the role were written, the
copy counted twice).

Real parts: the real app started on the home (its start-up writes the spool), the real doctor,
real files written as the spool writes them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from tre.audit import refusal_spool
from tre.audit.log import AuditEvent
from tre.config import Settings
from tre.store.db import session_scope
from tre.store.models import AuditEntry


def _bodies(engine: Engine) -> list[dict[str, Any]]:
    with session_scope(engine) as s:
        return [json.loads(b) for b in s.scalars(select(AuditEntry.body).order_by(AuditEntry.idx))]


def _actions(engine: Engine) -> list[str]:
    return [b["action"] for b in _bodies(engine)]


def _start_and_stop(settings: Settings, engine: Engine) -> None:
    """A server start on the home: it writes what the spool holds."""
    from tre.api.app import create_app

    with TestClient(create_app(settings, engine)):
        pass


def _doctor(settings: Settings, engine: Engine) -> Any:
    from tre.doctor import run_checks

    return {c.name: c for c in run_checks(settings, engine)}["refusal entries"]


def _refusal(actor: str = "anonymous") -> AuditEvent:
    details = {"status": 401, "method": "GET", "route": "/api/v1/jobs", "count": 1, "kind": "first"}
    return AuditEvent(actor, "auth.refused", details=details)


# What an insider would rather see in the log than a refusal: a DAC vote, a role, an admission,
# a release, the log's own events; and each refusal action spelt into one of them.
FORGED = [
    AuditEvent("dana", "egress.vote", project_id="p1", details={"request_id": "r1", "vote": "approve"}),
    AuditEvent("root", "admin.role_granted", details={"user": "mallory", "role": "admin"}),
    AuditEvent("system", "job.admitted", project_id="p1", job_id="j1", details={"policies": []}),
    AuditEvent("system", "egress.released", project_id="p1", details={"request_id": "r1"}),
    AuditEvent("system", "audit.key_rotated", details={}),
    AuditEvent("mallory", "auth.refused.ok", details={}),
    AuditEvent("mallory", "egress.refused_vote", details={}),
    AuditEvent("mallory", "job.denied.later_admitted", details={}),
]


@pytest.mark.parametrize("how", ["start", "doctor"])
@pytest.mark.parametrize("forged", FORGED, ids=[e.action for e in FORGED])
def test_a_batch_holding_anything_but_refusals_is_never_written(
    settings: Settings, engine: Engine, forged: AuditEvent, how: str
) -> None:
    """Was: written and signed as if the server had recorded it. Now the whole batch is set
    aside as damaged (the refusal beside the forgery too: the file is not the server's), the
    doctor fails on it, and nothing of it reaches the log."""
    refusal_spool.keep(settings.home, [_refusal(), forged])
    before = len(_bodies(engine))
    if how == "start":
        _start_and_stop(settings, engine)
    check = _doctor(settings, engine)
    assert forged.action not in _actions(engine)
    assert "auth.refused" not in _actions(engine)[before:]
    assert check.status == "fail" and "unreadable" in check.detail, check
    assert refusal_spool.damaged(settings.home), "the forged batch is kept for an operator"


def test_every_refusal_action_the_code_spools_is_still_written(settings: Settings, engine: Engine) -> None:
    """The rule refuses only what no refusal path writes: each action that reaches the spool
    (the API's and the hub's refusals, the services' refusal entries, a failed request's token
    use, the overflow counts) is written from it."""
    actions = [
        "auth.refused",
        "auth.refused_overflow",
        "auth.token_used",
        "auth.oidc_refused",
        "job.denied",
        "job.denied_overflow",
        "egress.refused",
        "egress.vote_refused",
        "egress.resolution_refused",
        "egress.withdraw_refused",
        "egress.stage_refused",
        "egress.download_refused",
        "egress.preview_refused",
        "federation.node_refused",
        "federation.node_refused_overflow",
        "federation.submission_refused",
        "federation.submission_refused_overflow",
        "federation.node_checkpoint_refused",
    ]
    refusal_spool.keep(settings.home, [AuditEvent("alice", a, details={"count": 1}) for a in actions])
    _start_and_stop(settings, engine)
    written = _actions(engine)
    assert [a for a in actions if a not in written] == []
    assert _doctor(settings, engine).status == "ok"


def test_a_batch_copied_under_another_name_is_written_once(settings: Settings, engine: Engine) -> None:
    """Was: both files written, the refusal counted twice (a replay of the spool, or a copy an
    operator restored from a backup). Now the second copy of the same batch is dropped."""
    path = refusal_spool.keep(settings.home, [_refusal("alice")])
    shutil.copyfile(path, path.with_name("99990101T000000000000-" + "f" * 32 + refusal_spool.SUFFIX))
    _start_and_stop(settings, engine)
    _start_and_stop(settings, engine)
    assert _doctor(settings, engine).status == "ok"
    refused = [b for b in _bodies(engine) if b["action"] == "auth.refused"]
    assert [b["actor"] for b in refused] == ["alice"]
    assert refusal_spool.waiting(settings.home) == []


def test_a_batch_replayed_after_it_was_written_is_not_written_again(
    settings: Settings, engine: Engine
) -> None:
    """A copy of a batch kept aside and put back after the server wrote it (or a crash
    between the write and the file's removal): the same entries are not written twice."""
    path = refusal_spool.keep(settings.home, [_refusal("alice")])
    copy = path.read_bytes()
    _start_and_stop(settings, engine)
    assert not path.exists()
    Path(path).write_bytes(copy)
    _start_and_stop(settings, engine)
    assert _doctor(settings, engine).status == "ok"
    assert [b["actor"] for b in _bodies(engine) if b["action"] == "auth.refused"] == ["alice"]


def _poison(kind: str) -> bytes:
    entry = {
        "actor": "anonymous",
        "action": "auth.refused",
        "details": {"count": 1},
        "ts": "2026-12-01T00:00:00+00:00",
    }
    if kind == "actor":
        entry["actor"] = "not an actor!"
    elif kind == "too large":
        entry["details"] = {"pad": "x" * 70_000}
    elif kind == "nested":
        return b"[" * 100_000 + b"]" * 100_000
    elif kind == "not a list":
        return json.dumps({"actor": "a"}).encode()
    return json.dumps([entry]).encode()


@pytest.mark.parametrize("kind", ["actor", "too large", "nested", "not a list"])
def test_a_batch_that_cannot_be_written_does_not_hold_back_the_others(
    settings: Settings, engine: Engine, kind: str
) -> None:
    """A batch whose entries can never be written (an actor the log refuses, an entry past
    65,535 bytes), or whose JSON is nested 100,000 deep. Was: claimed with every later
    refusal and written with them in one append, which failed every time, so no refusal
    reached the log any more (all waited on disk), and the nested one ended the server's
    start in a RecursionError. Now it is set aside at once, and the others are written."""
    from tre.api.app import create_app

    folder = refusal_spool.spool_dir(settings.home)
    folder.mkdir(parents=True, mode=0o700)
    (folder / ("20260101T000000000000-" + "a" * 32 + refusal_spool.SUFFIX)).write_bytes(_poison(kind))
    with TestClient(create_app(settings, engine)) as client:
        assert client.get("/api/v1/jobs", headers={"Authorization": "Bearer x"}).status_code == 401
        assert client.get("/api/v1/jobs", headers={"Authorization": "Bearer x"}).status_code == 401
    assert [b["details"]["route"] for b in _bodies(engine) if b["action"] == "auth.refused"][:1] == [
        "/api/v1/jobs"
    ]
    assert refusal_spool.waiting(settings.home) == []
    check = _doctor(settings, engine)
    assert check.status == "fail" and refusal_spool.damaged(settings.home), check
