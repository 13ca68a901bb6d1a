"""The hub in process, through its real API, on SQLite and on PostgreSQL: researchers'
tokens, node-signed agent requests (refused when unsigned, forged, stale, replayed or
tampered), hub-signed answers, fan-out into idempotent children, and a release accepted
only when hashes and the node's signed checkpoint verify."""

from __future__ import annotations

import hashlib
import re

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.federation.hubkit import node_identity, signed
from tre import registry
from tre.federation.hub import nodes
from tre.federation.hub.app import create_hub_app
from tre.federation.keys import hub_key
from tre.federation.signing import NONCE, SignatureError, sign_request, verify_response
from tre.federation.wire import child_id
from tre.store.db import session_scope

IMAGE = "registry.tre.local/tre-job-cpu@sha256:" + "ab" * 32


@pytest.fixture
def hub(settings, engine_any, token_for, tmp_path):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    settings.federation_lease_s = 2.0
    a, b = node_identity(tmp_path, "node-a"), node_identity(tmp_path, "node-b")
    app = create_hub_app(settings, engine_any)
    with session_scope(engine_any) as s:
        registry.create_user(s, "test", "root", ["admin"])
        registry.create_user(s, "alice", "alice", ["researcher"])
        registry.create_user(s, "bob", "bob", ["researcher"])
        registry.create_user(s, "dana", "dana", ["dac"])
        for n in (a, b):
            nodes.add_node(s, "root", n.name, n.public_key, n.audit_key)
        nodes.create_project(s, "root", "fedlung", "Federated lung", ["node-a", "node-b"])
        registry.add_member(s, "root", "fedlung", "alice")
    with TestClient(app) as client:
        client.tokens = {
            u: {"Authorization": f"Bearer {token_for(u, r)}"}
            for u, r in [("alice", "researcher"), ("bob", "researcher"), ("root", "admin"), ("dana", "dac")]
        }  # type: ignore[attr-defined]
        client.nodes = {"a": a, "b": b}  # type: ignore[attr-defined]
        client.hub_app = app  # type: ignore[attr-defined]
        yield client


def _submit(hub, **extra):  # type: ignore[no-untyped-def]
    body = {"project_id": "fedlung", "image": IMAGE, "command": ["python3", "run.py"], **extra}
    return hub.post("/api/v1/jobs", json=body, headers=hub.tokens["alice"])


def test_a_submission_fans_out_into_one_idempotent_child_per_node(hub, settings):  # type: ignore[no-untyped-def]
    resp = _submit(hub)
    assert resp.status_code == 201, resp.text
    job = resp.json()
    assert {c["node"]: c["child_id"] for c in job["children"]} == {
        "node-a": child_id(job["id"], "node-a"),
        "node-b": child_id(job["id"], "node-b"),
    }
    assert job["state"] == "running"  # no node online yet, but each has a lease to pick it up
    a = hub.nodes["a"]
    work = signed(hub, a, "POST", "/hub/v1/agent/poll", {"wait_s": 0})
    assert work.status_code == 200, work.text
    assert [c["child_id"] for c in work.json()["children"]] == [child_id(job["id"], "node-a")]
    assert work.json()["children"][0]["submitted_by"] == "alice"
    # Not acknowledged: not offered again within the lease, offered again after it.
    again = signed(hub, a, "POST", "/hub/v1/agent/poll", {"wait_s": 0}).json()
    assert again["children"] == []
    import time

    time.sleep(settings.federation_lease_s + 0.2)
    redelivered = signed(hub, a, "POST", "/hub/v1/agent/poll", {"wait_s": 0}).json()
    assert [c["child_id"] for c in redelivered["children"]] == [child_id(job["id"], "node-a")]
    shown = hub.get(f"/hub/v1/jobs/{job['id']}", headers=hub.tokens["alice"]).json()
    assert {c["node"]: (c["state"], c["deliveries"], c["node_status"]) for c in shown["children"]} == {
        "node-a": ("pending", 2, "online"),
        "node-b": ("pending", 0, "offline"),
    }
    assert shown["state"] == "running"


def test_agent_answers_are_signed_by_the_hub_for_this_request(hub, settings):  # type: ignore[no-untyped-def]
    a = hub.nodes["a"]
    body = b'{"wait_s": 0}'
    headers = sign_request(a.key, a.name, "POST", "/hub/v1/agent/poll", body)
    resp = hub.post("/hub/v1/agent/poll", content=body, headers=headers)
    pinned = hub_key(settings).public_key()
    verify_response(pinned, resp.status_code, headers[NONCE], resp.headers, resp.content)
    with pytest.raises(SignatureError):  # another request's nonce: not an answer to it
        verify_response(pinned, resp.status_code, "f" * 32, resp.headers, resp.content)
    with pytest.raises(SignatureError):  # another key pinned
        verify_response(
            Ed25519PrivateKey.generate().public_key(),
            resp.status_code,
            headers[NONCE],
            resp.headers,
            resp.content,
        )
    with pytest.raises(SignatureError):  # a changed body
        verify_response(pinned, resp.status_code, headers[NONCE], resp.headers, resp.content + b" ")


def test_agent_requests_are_refused_unless_signed_fresh_and_new(hub):  # type: ignore[no-untyped-def]
    a = hub.nodes["a"]
    path = "/hub/v1/agent/poll"
    body = b'{"wait_s": 0}'

    def refused(resp):  # type: ignore[no-untyped-def]
        assert resp.status_code == 401, resp.text
        assert resp.headers["content-type"].startswith("application/problem+json")
        return resp.json()["detail"]

    assert "missing" in refused(hub.post(path, content=body))
    assert "registered key" in refused(
        signed(hub, a, "POST", path, raw=body, key=Ed25519PrivateKey.generate())
    )
    assert "from this clock" in refused(signed(hub, a, "POST", path, raw=body, now=1_000_000_000))
    headers = sign_request(a.key, a.name, "POST", path, body)
    assert "Content-Digest" in refused(hub.post(path, content=b'{"wait_s": 1}', headers=headers))
    assert hub.post(path, content=body, headers=headers).status_code == 200
    assert "replayed" in refused(hub.post(path, content=body, headers=headers))
    # Signed by node-a's key but claiming to be node-b: verified against node-b's key.
    forged = sign_request(a.key, "node-b", "POST", path, body)
    assert "registered key" in refused(hub.post(path, content=body, headers=forged))
    unknown = sign_request(a.key, "node-z", "POST", path, body)
    assert "registered node" in refused(hub.post(path, content=body, headers=unknown))
    # A signature for one path does not open another.
    other = sign_request(a.key, a.name, "POST", "/hub/v1/agent/children/" + "0" * 32 + "/state", body)
    assert "registered key" in refused(hub.post(path, content=body, headers=other))


def test_every_hub_route_needs_a_token_or_a_node_signature(hub):  # type: ignore[no-untyped-def]
    checked = 0
    for route_path, methods in hub.hub_app.openapi()["paths"].items():
        path = route_path.replace("{job_id}", "0" * 32).replace("{child_id}", "0" * 32)
        path = path.replace("{sha256}", "0" * 64).replace("{search_id}", "0" * 32)
        path = path.replace("{node}", "node-a").replace("{name}", "x").replace("{project_id}", "fedlung")
        for method in methods:
            resp = hub.request(method.upper(), path)
            assert resp.status_code == 401, (method, path, resp.status_code)
            assert resp.headers["content-type"].startswith("application/problem+json")
            checked += 1
    assert checked >= 14


def test_nodes_see_and_move_only_their_own_children(hub):  # type: ignore[no-untyped-def]
    job = _submit(hub).json()
    a, b = hub.nodes["a"], hub.nodes["b"]
    cid_b = child_id(job["id"], "node-b")
    resp = signed(
        hub, a, "POST", f"/hub/v1/agent/children/{cid_b}/state", {"state": "failed", "reason": "job_failed"}
    )
    assert resp.status_code == 404
    # Only fixed words: a free-text reason is refused.
    resp = signed(
        hub,
        b,
        "POST",
        f"/hub/v1/agent/children/{cid_b}/state",
        {"state": "failed", "reason": "patient Smith"},
    )
    assert resp.status_code == 422
    resp = signed(hub, b, "POST", f"/hub/v1/agent/children/{cid_b}/state", {"state": "released"})
    assert resp.status_code == 409
    assert hub.get(f"/hub/v1/jobs/{job['id']}", headers=hub.tokens["bob"]).status_code == 404


def test_a_release_is_accepted_only_with_matching_hashes_and_a_verified_checkpoint(hub, engine_any):  # type: ignore[no-untyped-def]
    job = _submit(hub).json()
    a, b = hub.nodes["a"], hub.nodes["b"]
    cid = child_id(job["id"], "node-a")
    data = b"site,count\nA,42\n"
    sha = hashlib.sha256(data).hexdigest()
    files_path = f"/hub/v1/agent/children/{cid}/files"
    assert signed(hub, a, "PUT", f"{files_path}/{'0' * 64}", raw=data).status_code == 422
    assert signed(hub, a, "PUT", f"{files_path}/{sha}", raw=data).status_code == 200
    record = {"released": True, "files": [{"path": "summary.csv", "sha256": sha, "size": len(data)}]}
    release = {
        "files": [{"name": "summary.csv", "sha256": sha, "size": len(data)}],
        "disclosure_record": record,
    }
    rel_path = f"/hub/v1/agent/children/{cid}/release"
    # node-b's checkpoint is genuine but not node-a's: refused.
    resp = signed(hub, a, "POST", rel_path, {**release, "checkpoint": b.checkpoint()})
    assert resp.status_code == 422 and "checkpoint" in resp.json()["detail"], resp.text
    # A record that does not release the file: refused.
    unreleased = {**release, "disclosure_record": {**record, "released": False}, "checkpoint": a.checkpoint()}
    assert signed(hub, a, "POST", rel_path, unreleased).status_code == 422
    # A file never uploaded: refused.
    ghost = {
        **release,
        "files": [{"name": "other.csv", "sha256": "1" * 64, "size": 3}],
        "checkpoint": a.checkpoint(),
    }
    assert signed(hub, a, "POST", rel_path, ghost).status_code == 422
    resp = signed(hub, a, "POST", rel_path, {**release, "checkpoint": a.checkpoint()})
    assert resp.status_code == 200, resp.text
    signed(
        hub,
        b,
        "POST",
        f"/hub/v1/agent/children/{child_id(job['id'], 'node-b')}/state",
        {"state": "refused", "reason": "dac_rejected"},
    )
    shown = hub.get(f"/hub/v1/jobs/{job['id']}", headers=hub.tokens["alice"]).json()
    assert shown["state"] == "partial"
    by_node = {c["node"]: c for c in shown["children"]}
    assert by_node["node-a"]["files"] == [{"name": "summary.csv", "sha256": sha, "size": len(data)}]
    assert (by_node["node-b"]["state"], by_node["node-b"]["reason"]) == ("refused", "dac_rejected")
    got = hub.get(f"/hub/v1/jobs/{job['id']}/results/node-a/summary.csv", headers=hub.tokens["alice"])
    assert got.status_code == 200 and got.content == data
    # Each download of released data is in the hub's signed log, with who fetched which bytes.
    import json

    from sqlalchemy import select

    from tre.store.models import AuditEntry

    with session_scope(engine_any) as s:
        bodies = s.scalars(
            select(AuditEntry.body).where(AuditEntry.action == "federation.result_downloaded")
        ).all()
    assert [(e["actor"], e["project_id"], e["details"]) for e in map(json.loads, bodies)] == [
        ("alice", "fedlung", {"fed_job": job["id"], "node": "node-a", "name": "summary.csv", "sha256": sha})
    ]
    assert (
        hub.get(f"/hub/v1/jobs/{job['id']}/results/node-a/summary.csv", headers=hub.tokens["bob"]).status_code
        == 404
    )
    # Once released, nothing more is taken for the child.
    assert signed(hub, a, "PUT", f"{files_path}/{sha}", raw=data).status_code == 409


def test_submission_rules(hub):  # type: ignore[no-untyped-def]
    assert (
        hub.post(
            "/api/v1/jobs",
            json={"project_id": "fedlung", "image": IMAGE, "command": ["x"]},
            headers=hub.tokens["bob"],
        ).status_code
        == 403
    )
    resp = _submit(hub, dataset_ids=["ct"])
    assert resp.status_code == 422  # datasets are each node's choice
    resp = _submit(hub, code_hash="a" * 64)
    assert resp.status_code == 403 and "not uploaded" in resp.json()["detail"]


def test_a_released_file_may_be_larger_than_an_ordinary_request(hub):  # type: ignore[no-untyped-def]
    job = _submit(hub).json()
    a = hub.nodes["a"]
    cid = child_id(job["id"], "node-a")
    data = bytes(range(256)) * (8 * 1024)  # 2 MiB: over the 1 MiB bound of other requests
    sha = hashlib.sha256(data).hexdigest()
    assert signed(hub, a, "PUT", f"/hub/v1/agent/children/{cid}/files/{sha}", raw=data).status_code == 200
    resp = signed(
        hub,
        a,
        "POST",
        f"/hub/v1/agent/children/{cid}/state",
        raw=b'{"state": "queued"' + b" " * (2 << 20) + b"}",
    )
    assert resp.status_code == 413


def test_hub_routes_check_roles(hub):  # type: ignore[no-untyped-def]
    body = {"project_id": "fedlung", "image": IMAGE, "command": ["x"]}
    resp = hub.post("/api/v1/jobs", json=body, headers=hub.tokens["dana"])
    assert resp.status_code == 403 and resp.headers["content-type"].startswith("application/problem+json")
    assert hub.post("/hub/v1/search", json={}, headers=hub.tokens["dana"]).status_code == 403
    assert hub.get("/hub/v1/nodes", headers=hub.tokens["alice"]).status_code == 403
    nodes_seen = hub.get("/hub/v1/nodes", headers=hub.tokens["root"]).json()
    assert [n["name"] for n in nodes_seen] == ["node-a", "node-b"]
    # A researcher sees only their own searches.
    search = hub.post("/hub/v1/search", json={"modality": "CT"}, headers=hub.tokens["alice"]).json()
    assert hub.get(f"/hub/v1/search/{search['id']}", headers=hub.tokens["bob"]).status_code == 404
    assert [n["state"] for n in search["nodes"]] == ["waiting", "waiting"]


def test_a_nodes_audit_log_may_not_shrink_between_releases(hub):  # type: ignore[no-untyped-def]
    a = hub.nodes["a"]
    older, newer = a.checkpoint(), a.checkpoint()
    for job_id, checkpoint, status in (
        (_submit(hub).json()["id"], newer, 200),
        (_submit(hub).json()["id"], older, 422),
    ):
        cid = child_id(job_id, "node-a")
        data = f"released for {job_id}\n".encode()
        sha = hashlib.sha256(data).hexdigest()
        assert signed(hub, a, "PUT", f"/hub/v1/agent/children/{cid}/files/{sha}", raw=data).status_code == 200
        record = {"released": True, "files": [{"path": "r.txt", "sha256": sha, "size": len(data)}]}
        body = {
            "files": [{"name": "r.txt", "sha256": sha, "size": len(data)}],
            "disclosure_record": record,
            "checkpoint": checkpoint,
        }
        resp = signed(hub, a, "POST", f"/hub/v1/agent/children/{cid}/release", body)
        assert resp.status_code == status, resp.text
    assert "cannot shrink" in resp.json()["detail"]


def test_the_hub_serves_no_foreign_script_and_its_answers_are_browser_safe(hub):  # type: ignore[no-untyped-def]
    """As the API (tests/security/test_security_headers.py): /docs from the hub's own origin,
    FastAPI's CDN pages gone, every answer without framing, sniffing, scripts or caching."""
    page = hub.get("/docs")
    assert page.status_code == 200 and "http" not in page.text
    assert re.findall(r"<script(?![^>]*\bsrc=\"/)", page.text) == []  # no inline script
    assert "script-src 'self';" in page.headers["content-security-policy"]
    assert hub.get("/redoc").status_code == 404
    for resp in (
        hub.get("/hub/v1/nodes", headers=hub.tokens["alice"]),
        hub.get("/nothing"),
        hub.get("/hub/v1/nodes"),
    ):
        assert resp.headers["x-content-type-options"] == "nosniff"
        assert "frame-ancestors 'none'" in resp.headers["content-security-policy"]
        assert resp.headers["cache-control"] == "no-store"
