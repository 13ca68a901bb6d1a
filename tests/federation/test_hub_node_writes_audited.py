"""What a node writes to the hub is in the hub's audit log, on SQLite and PostgreSQL.

A researcher's submissions and searches, node state reports and releases were recorded; two
node writes were not: a result file uploaded to the hub (bytes that left the node, kept on
the hub's disk) and a node's answer to a federated search (the figures researchers then
read). Each is now an entry naming the node and the objects.
"""

from __future__ import annotations

import hashlib
import json

from sqlalchemy import func, select

from tests.federation.hubkit import signed
from tests.federation.test_hub_api import _submit, hub  # noqa: F401 - `hub` is a fixture
from tre.federation.wire import child_id
from tre.store.db import session_scope
from tre.store.models import AuditEntry


def _entries_after(engine, after: int) -> list[dict]:  # type: ignore[no-untyped-def,type-arg]
    with session_scope(engine) as s:
        return [json.loads(b) for b in s.scalars(select(AuditEntry.body).where(AuditEntry.idx > after))]


def _last(engine) -> int:  # type: ignore[no-untyped-def]
    with session_scope(engine) as s:
        return int(s.scalar(select(func.max(AuditEntry.idx))) or -1)


def test_a_result_upload_is_an_entry(hub, engine_any) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    job = _submit(hub).json()
    a = hub.nodes["a"]
    cid = child_id(job["id"], "node-a")
    data = b"n\n200\n"
    sha = hashlib.sha256(data).hexdigest()
    before = _last(engine_any)
    assert signed(hub, a, "PUT", f"/hub/v1/agent/children/{cid}/files/{sha}", raw=data).status_code == 200
    ups = [e for e in _entries_after(engine_any, before) if e["action"] == "federation.result_uploaded"]
    assert len(ups) == 1, _entries_after(engine_any, before)
    assert ups[0]["actor"] == "node:node-a" and ups[0]["project_id"] == "fedlung"
    assert ups[0]["details"] == {"fed_job": job["id"], "child": cid, "sha256": sha, "size": len(data)}
    before = _last(engine_any)  # the same file again stores nothing new: no second entry
    assert signed(hub, a, "PUT", f"/hub/v1/agent/children/{cid}/files/{sha}", raw=data).status_code == 200
    assert not [e for e in _entries_after(engine_any, before) if e["action"] == "federation.result_uploaded"]


def test_a_search_answer_is_an_entry(hub, engine_any) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    made = hub.post("/hub/v1/search", json={"modality": "CT"}, headers=hub.tokens["alice"])
    assert made.status_code == 201, made.text
    sid = made.json()["id"]
    a = hub.nodes["a"]
    before = _last(engine_any)
    body = json.dumps({"state": "answered", "answer": {"subjects": 40}}).encode()
    assert signed(hub, a, "POST", f"/hub/v1/agent/searches/{sid}/answer", raw=body).status_code == 200
    answers = [e for e in _entries_after(engine_any, before) if e["action"] == "federation.search_answered"]
    assert len(answers) == 1, _entries_after(engine_any, before)
    assert answers[0]["actor"] == "node:node-a"
    assert answers[0]["details"]["search"] == sid and answers[0]["details"]["state"] == "answered"
    assert (
        answers[0]["details"]["answer_sha256"]
        == hashlib.sha256(
            json.dumps({"subjects": 40}, sort_keys=True, separators=(",", ":")).encode()
        ).hexdigest()
    )
