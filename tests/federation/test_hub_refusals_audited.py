"""Every refusal at the hub is an entry of its signed audit log, under a fixed reason.

Round 13: agent requests the hub refused (unsigned, unregistered, revoked, forged, stale,
replayed) and researchers' submissions it refused (not a member, not a federated project,
code not uploaded, every node revoked) left no entry at all; an auditor could not tell a node probing
with an old key from silence. Each is now ``federation.node_refused`` /
``federation.submission_refused`` with one word of `tre.federation.hub.refusals`, the log
still verifies as `tre audit verify` verifies it, and nothing the caller chose (a claimed node
name, the raw path) is written.
"""

from __future__ import annotations

import gzip
import json

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select

from tests.audit.conftest import export_bytes
from tests.federation.hubkit import signed
from tests.federation.test_hub_api import IMAGE, hub  # noqa: F401 - `hub` is a fixture
from tre import registry
from tre.audit.signing import get_signer
from tre.audit.verify import verify_bundle
from tre.federation.hub import nodes
from tre.federation.hub.refusals import NodeRefusal, SubmissionRefusal
from tre.federation.signing import sign_request
from tre.store.db import session_scope
from tre.store.models import AuditEntry, Project

POLL = "/hub/v1/agent/poll"
BODY = b'{"wait_s": 0}'


def _last(engine) -> int:  # type: ignore[no-untyped-def]
    with session_scope(engine) as s:
        return int(s.scalar(select(func.max(AuditEntry.idx))) or -1)


def _after(engine, after: int, action: str) -> list[dict]:  # type: ignore[no-untyped-def,type-arg]
    with session_scope(engine) as s:
        bodies = [json.loads(b) for b in s.scalars(select(AuditEntry.body).where(AuditEntry.idx > after))]
    return [b for b in bodies if b["action"] == action]


def _verifies(engine, settings) -> None:  # type: ignore[no-untyped-def]
    """The hub's log, exported and verified as `tre audit verify` does, against its key."""
    signer = get_signer(settings.keys_dir)
    report = verify_bundle(export_bytes(engine, signer), signer.verifier_key)
    assert report.ok, report


def test_each_kind_of_node_refusal_is_an_entry_with_its_reason(hub, engine_any, settings) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    a = hub.nodes["a"]
    headers = sign_request(a.key, a.name, "POST", POLL, BODY)
    assert hub.post(POLL, content=BODY, headers=headers).status_code == 200
    cases = [
        (NodeRefusal.unsigned, "", lambda: hub.post(POLL, content=BODY)),
        (
            NodeRefusal.unknown_node,
            "",
            lambda: hub.post(POLL, content=BODY, headers=sign_request(a.key, "node-zz", "POST", POLL, BODY)),
        ),
        (
            NodeRefusal.bad_signature,
            "node-a",
            lambda: signed(hub, a, "POST", POLL, raw=BODY, key=Ed25519PrivateKey.generate()),
        ),
        (NodeRefusal.stale, "node-a", lambda: signed(hub, a, "POST", POLL, raw=BODY, now=1_000_000_000)),
        (NodeRefusal.replayed, "node-a", lambda: hub.post(POLL, content=BODY, headers=headers)),
    ]
    # A reason added to the vocabulary without a case here fails (revoked_node: next test).
    assert {c[0] for c in cases} | {NodeRefusal.revoked_node} == set(NodeRefusal)
    for reason, node, call in cases:
        before = _last(engine_any)
        resp = call()
        assert resp.status_code == 401, (reason, resp.text)
        got = _after(engine_any, before, "federation.node_refused")
        assert len(got) == 1, (reason, got)
        d = got[0]["details"]
        assert (d["reason"], d["node"], d["route"], d["kind"]) == (reason.value, node or None, POLL, "first")
        assert got[0]["actor"] == (f"node:{node}" if node else "anonymous")
    # What an unregistered caller claimed to be is not written anywhere.
    with session_scope(engine_any) as s:
        assert not any("node-zz" in b for b in s.scalars(select(AuditEntry.body)))
    _verifies(engine_any, settings)


def test_a_revoked_node_and_a_flood_of_replays_are_bounded_entries(hub, engine_any) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    a, b = hub.nodes["a"], hub.nodes["b"]
    headers = sign_request(a.key, a.name, "POST", POLL, BODY)
    assert hub.post(POLL, content=BODY, headers=headers).status_code == 200
    before = _last(engine_any)
    for _ in range(25):  # a captured request sent again and again: one entry, counted
        assert hub.post(POLL, content=BODY, headers=headers).status_code == 401
    assert len(_after(engine_any, before, "federation.node_refused")) == 1
    # Summaries come when the window rolls over: 24 repeats, in one entry.
    hub.hub_app.state.node_refusals.window_s = 0.0
    before = _last(engine_any)
    assert hub.post(POLL, content=BODY, headers=headers).status_code == 401
    got = _after(engine_any, before, "federation.node_refused")
    assert [(e["details"]["kind"], e["details"]["count"]) for e in got] == [("repeats", 24), ("first", 1)]
    hub.hub_app.state.node_refusals.window_s = 60.0
    with session_scope(engine_any) as s:
        nodes.revoke_node(s, "root", "node-b")
    before = _last(engine_any)
    assert signed(hub, b, "POST", POLL, {"wait_s": 0}).status_code == 401
    got = _after(engine_any, before, "federation.node_refused")
    assert [(e["details"]["reason"], e["details"]["node"]) for e in got] == [("revoked_node", "node-b")]


def test_each_refused_submission_is_an_entry_with_its_reason(hub, engine_any, settings) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    base = {"image": IMAGE, "command": ["python3", "run.py"]}
    cases = [
        ("bob", {"project_id": "fedlung"}, SubmissionRefusal.not_member),
        ("alice", {"project_id": "nosuch"}, SubmissionRefusal.not_member),
        ("alice", {"project_id": "fedlung", "code_hash": "ab" * 32}, SubmissionRefusal.code_not_uploaded),
        ("alice", {"project_id": "plain"}, SubmissionRefusal.not_federated),
    ]
    with session_scope(engine_any) as s:  # a project of the hub that spans no node
        registry.create_project(s, "root", "plain", "plain")
        registry.add_member(s, "root", "plain", "alice")
    assert {c[2] for c in cases} | {
        SubmissionRefusal.nodes_revoked,
        SubmissionRefusal.over_code_quota,
    } == set(SubmissionRefusal)
    for who, extra, reason in cases:
        before = _last(engine_any)
        resp = hub.post("/api/v1/jobs", json={**base, **extra}, headers=hub.tokens[who])
        assert resp.status_code == 403, (reason, resp.text)
        assert resp.headers["content-type"].startswith("application/problem+json")
        got = _after(engine_any, before, "federation.submission_refused")
        assert len(got) == 1, (reason, got)
        assert got[0]["actor"] == who and got[0]["details"]["reason"] == reason.value
    # TES submissions go through the same admission, and are audited the same way.
    before = _last(engine_any)
    task = {"executors": [{"image": IMAGE, "command": ["true"]}], "tags": {"Project": "fedlung"}}
    assert hub.post("/ga4gh/tes/v1/tasks", json=task, headers=hub.tokens["bob"]).status_code == 403
    got = _after(engine_any, before, "federation.submission_refused")
    assert [(e["actor"], e["details"]["reason"]) for e in got] == [("bob", "not_member")]
    with session_scope(engine_any) as s:
        nodes.revoke_node(s, "root", "node-a")
        nodes.revoke_node(s, "root", "node-b")
    before = _last(engine_any)
    resp = hub.post("/api/v1/jobs", json={**base, "project_id": "fedlung"}, headers=hub.tokens["alice"])
    assert resp.status_code == 403, resp.text
    got = _after(engine_any, before, "federation.submission_refused")
    assert [e["details"]["reason"] for e in got] == [SubmissionRefusal.nodes_revoked.value]
    _verifies(engine_any, settings)


def test_a_code_archive_over_the_code_quota_is_a_refused_submission(hub, engine_any, settings) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    with session_scope(engine_any) as s:
        project = s.get(Project, "fedlung")
        assert project is not None
        project.max_code_mb = 0  # nothing fits
    archive = gzip.compress(b"\0" * 1024)
    before = _last(engine_any)
    resp = hub.post(
        "/api/v1/code",
        params={"project_id": "fedlung"},
        content=archive,
        headers={**hub.tokens["alice"], "Content-Type": "application/gzip"},
    )
    assert resp.status_code == 413, resp.text
    got = _after(engine_any, before, "federation.submission_refused")
    assert [(e["actor"], e["details"]["reason"]) for e in got] == [("alice", "over_code_quota")]
    _verifies(engine_any, settings)
