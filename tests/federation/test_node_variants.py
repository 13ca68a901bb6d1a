"""Nodes that misbehave, through the hub's real API on SQLite and PostgreSQL.

Round 12 found three holes: a late or reordered state report moved a child back (``running``
after ``awaiting_review`` showed the researcher ``running`` again); a report pairing a state
with a reason that does not go with it (``queued`` + ``dac_rejected``, ``failed`` without a
reason) was shown as sent; and a hub admin had no way to stop trusting a node whose key leaked.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from tests.federation.hubkit import signed
from tests.federation.test_hub_api import _submit, hub  # noqa: F401 - `hub` is a fixture
from tre.errors import Conflict
from tre.federation.hub import nodes
from tre.federation.wire import child_id
from tre.store.db import session_scope
from tre.store.federation_models import FedSearchAnswer
from tre.store.models import AuditEntry


def _entries(engine, action: str) -> list[dict]:  # type: ignore[no-untyped-def,type-arg]
    with session_scope(engine) as s:
        bodies = [json.loads(b) for b in s.scalars(select(AuditEntry.body).order_by(AuditEntry.idx))]
    return [b for b in bodies if b["action"] == action]


def _report(client, node, cid: str, state: str, reason: str = ""):  # type: ignore[no-untyped-def]
    return signed(
        client, node, "POST", f"/hub/v1/agent/children/{cid}/state", {"state": state, "reason": reason}
    )


def _child(client, job_id: str, node: str) -> dict:  # type: ignore[no-untyped-def,type-arg]
    view = client.get(f"/hub/v1/jobs/{job_id}", headers=client.tokens["alice"]).json()
    return next(c for c in view["children"] if c["node"] == node)


def test_a_late_or_reordered_report_never_moves_a_child_back(hub, engine_any) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    job = _submit(hub).json()
    a = hub.nodes["a"]
    cid = child_id(job["id"], "node-a")
    for state in ("queued", "running", "awaiting_review"):
        assert _report(hub, a, cid, state).status_code == 200
    # Each is a fresh, correctly signed request (not a replay): the report is simply old.
    for late in ("queued", "running"):
        resp = _report(hub, a, cid, late)
        assert resp.status_code == 200, resp.text
        assert resp.json()["state"] == "awaiting_review"
        assert _child(hub, job["id"], "node-a")["state"] == "awaiting_review"
    ignored = _entries(engine_any, "federation.child_state_ignored")
    assert [(e["details"]["state"], e["details"]["kept"]) for e in ignored] == [
        ("queued", "awaiting_review"),
        ("running", "awaiting_review"),
    ]
    assert ignored[0]["actor"] == "node:node-a" and ignored[0]["details"]["child"] == cid
    # A final state stays final, whatever comes after it; the contradiction is audited too.
    assert _report(hub, a, cid, "refused", "dac_rejected").status_code == 200
    assert _report(hub, a, cid, "failed", "job_failed").json()["state"] == "refused"
    assert _report(hub, a, cid, "running").json()["state"] == "refused"
    child = _child(hub, job["id"], "node-a")
    assert (child["state"], child["reason"]) == ("refused", "dac_rejected")
    assert len(_entries(engine_any, "federation.child_state_ignored")) == 4
    # The same report again is no news: no entry.
    assert _report(hub, a, cid, "refused", "dac_rejected").status_code == 200
    assert len(_entries(engine_any, "federation.child_state_ignored")) == 4


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        ("queued", "dac_rejected"),
        ("running", "job_failed"),
        ("awaiting_review", "egress_blocked"),
        ("failed", ""),
        ("failed", "dac_rejected"),
        ("refused", ""),
        ("refused", "job_timed_out"),
        ("failed", "release_interrupted"),
    ],
)
def test_a_report_whose_reason_does_not_go_with_its_state_is_refused(hub, state, reason) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    job = _submit(hub).json()
    cid = child_id(job["id"], "node-a")
    resp = _report(hub, hub.nodes["a"], cid, state, reason)
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    child = _child(hub, job["id"], "node-a")
    assert (child["state"], child["reason"]) == ("pending", "")


def test_a_revoked_node_is_refused_shown_revoked_and_given_no_work(hub, engine_any) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    a, b = hub.nodes["a"], hub.nodes["b"]
    job = _submit(hub).json()
    cid_b = child_id(job["id"], "node-b")
    assert _report(hub, b, cid_b, "running").status_code == 200
    with session_scope(engine_any) as s:
        nodes.revoke_node(s, "root", "node-b")
    with session_scope(engine_any) as s, pytest.raises(Conflict):
        nodes.revoke_node(s, "root", "node-b")
    [entry] = _entries(engine_any, "federation.node_revoked")
    assert entry["actor"] == "root"
    assert entry["details"]["node"] == "node-b" and entry["details"]["open_children"] == [cid_b]

    # Every request it signs is refused, whatever it is: poll, report, upload, release.
    for method, path, body in (
        ("POST", "/hub/v1/agent/poll", {"wait_s": 0}),
        ("POST", f"/hub/v1/agent/children/{cid_b}/state", {"state": "awaiting_review"}),
        ("PUT", f"/hub/v1/agent/children/{cid_b}/files/" + "0" * 64, None),
        ("POST", f"/hub/v1/agent/children/{cid_b}/release", {"files": []}),
    ):
        resp = signed(hub, b, method, path, body)
        assert resp.status_code == 401, (path, resp.text)
        assert "revoked" in resp.json()["detail"]

    # The researcher sees the node revoked, in fixed words; the parent does not wait for it.
    child = _child(hub, job["id"], "node-b")
    assert (child["state"], child["node_status"]) == ("running", "revoked")
    assert _report(hub, a, child_id(job["id"], "node-a"), "failed", "job_failed").status_code == 200
    assert hub.get(f"/hub/v1/jobs/{job['id']}", headers=hub.tokens["alice"]).json()["state"] == "failed"
    listed = hub.get("/hub/v1/nodes", headers=hub.tokens["root"]).json()
    assert {n["name"]: n["status"] for n in listed}["node-b"] == "revoked"

    # New work and searches go to the nodes still trusted only.
    job2 = _submit(hub).json()
    assert [
        c["node"]
        for c in hub.get(f"/hub/v1/jobs/{job2['id']}", headers=hub.tokens["alice"]).json()["children"]
    ] == ["node-a"]
    assert _entries(engine_any, "federation.job_submitted")[-1]["details"]["nodes"] == ["node-a"]
    made = hub.post("/hub/v1/search", json={"modality": "CT"}, headers=hub.tokens["alice"])
    assert made.status_code == 201, made.text
    with session_scope(engine_any) as s:
        asked = s.scalars(select(FedSearchAnswer.node).where(FedSearchAnswer.search_id == made.json()["id"]))
        assert list(asked) == ["node-a"]

    # With every node of the project revoked, a submission is refused with the reason.
    with session_scope(engine_any) as s:
        nodes.revoke_node(s, "root", "node-a")
    resp = _submit(hub)
    assert resp.status_code == 403, resp.text
    assert resp.json()["detail"] == "every node of project 'fedlung' was revoked"


def test_a_federated_task_is_cancelled_at_every_node_still_running_it(hub, engine_any) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """Round 12: the hub had no cancel (`POST /tasks/{id}:cancel` answered 405)."""
    a, b = hub.nodes["a"], hub.nodes["b"]
    job = _submit(hub).json()
    cid_a, cid_b = child_id(job["id"], "node-a"), child_id(job["id"], "node-b")
    assert _report(hub, a, cid_a, "running").status_code == 200  # node-b has not picked it up
    cancel = f"/ga4gh/tes/v1/tasks/{job['id']}:cancel"
    assert hub.post(cancel, headers=hub.tokens["bob"]).status_code == 404  # not his project's
    assert hub.post(cancel, headers=hub.tokens["dana"]).status_code == 403  # a reviewer
    resp = hub.post(cancel, headers=hub.tokens["alice"])
    assert resp.status_code == 200 and resp.json() == {}
    [entry] = _entries(engine_any, "federation.job_cancel_requested")
    assert entry["actor"] == "alice" and entry["details"] == {
        "fed_job": job["id"],
        "nodes_told": ["node-a", "node-b"],
    }
    task = f"/ga4gh/tes/v1/tasks/{job['id']}"
    assert hub.get(task, headers=hub.tokens["alice"]).json()["state"] == "CANCELING"

    # Each node is told with its poll; node-b is not given the cancelled child to run.
    work_a = signed(hub, a, "POST", "/hub/v1/agent/poll", {"wait_s": 0}).json()
    assert work_a["cancels"] == [cid_a]
    work_b = signed(hub, b, "POST", "/hub/v1/agent/poll", {"wait_s": 0}).json()
    assert work_b["children"] == [] and work_b["cancels"] == [cid_b]
    assert _report(hub, a, cid_a, "failed", "job_cancelled").status_code == 200
    assert hub.get(task, headers=hub.tokens["alice"]).json()["state"] == "CANCELING"
    assert _report(hub, b, cid_b, "failed", "job_cancelled").status_code == 200
    assert hub.get(task, headers=hub.tokens["alice"]).json()["state"] == "CANCELED"
    assert signed(hub, a, "POST", "/hub/v1/agent/poll", {"wait_s": 0}).json()["cancels"] == []
    # Again: {} (nothing new audited); a task that ended at every node: 409.
    assert hub.post(cancel, headers=hub.tokens["alice"]).json() == {}
    assert len(_entries(engine_any, "federation.job_cancel_requested")) == 1
    ended = _submit(hub).json()
    for node, name in ((a, "node-a"), (b, "node-b")):
        assert _report(hub, node, child_id(ended["id"], name), "failed", "job_failed").status_code == 200
    resp = hub.post(f"/ga4gh/tes/v1/tasks/{ended['id']}:cancel", headers=hub.tokens["alice"])
    assert resp.status_code == 409 and "already ended" in resp.json()["detail"]
    assert hub.get(f"/ga4gh/tes/v1/tasks/{ended['id']}", headers=hub.tokens["alice"]).json()["state"] == (
        "EXECUTOR_ERROR"
    )
