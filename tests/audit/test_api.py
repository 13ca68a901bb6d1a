"""The audit API: role gates, search, proofs an auditor can check, export, fork detection."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from tre.audit import AuditEvent, record_events
from tre.audit.api import router
from tre.audit.merkle import ProofError, leaf_hash, verify_consistency, verify_inclusion
from tre.audit.note import VerifierKey, open_checkpoint
from tre.audit.signing import AuditSigner, configure
from tre.audit.verify import verify_bundle
from tre.config import Settings
from tre.store.db import session_scope
from tre.store.models import AuditEntry

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def client(
    app: FastAPI, engine: Engine, settings: Settings, make_user: Callable[..., object]
) -> Iterator[TestClient]:
    if not any(getattr(r, "path", "").startswith("/api/v1/audit") for r in app.routes):
        app.include_router(router)  # create_app normally includes it already
    configure(engine, settings.keys_dir)
    with session_scope(engine) as s:
        make_user(s, "audrey", "auditor")
        make_user(s, "root", "admin")
        make_user(s, "alice", "researcher")
        record_events(
            s,
            [
                AuditEvent("alice", "job.submit", project_id="p1", job_id="j1", timestamp=T0),
                AuditEvent(
                    "alice",
                    "dataset.read",
                    project_id="p1",
                    dataset_id="ct1",
                    job_id="j1",
                    timestamp=T0 + timedelta(minutes=1),
                ),
                AuditEvent(
                    "bob", "job.submit", project_id="p2", job_id="j2", timestamp=T0 + timedelta(hours=1)
                ),
                AuditEvent(
                    "dana",
                    "egress.vote",
                    project_id="p1",
                    details={"vote": "approve"},
                    timestamp=T0 + timedelta(hours=2),
                ),
                AuditEvent(
                    "root", "admin.user.create", details={"user": "eve"}, timestamp=T0 + timedelta(days=1)
                ),
            ],
        )
    with TestClient(app) as c:
        yield c


def H(token_for: Callable[..., str], user: str, *roles: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(user, *roles)}"}


ENDPOINTS = [
    "/api/v1/audit/public-key",
    "/api/v1/audit/checkpoint",
    "/api/v1/audit/entries",
    "/api/v1/audit/entries/0",
    "/api/v1/audit/proof/inclusion?index=0&tree_size=1",
    "/api/v1/audit/proof/consistency?first=1&second=2",
    "/api/v1/audit/export",
]


def test_roles(client: TestClient, token_for: Callable[..., str]) -> None:
    auditor = H(token_for, "audrey", "auditor")
    admin = H(token_for, "root", "admin")
    researcher = H(token_for, "alice", "researcher")
    for path in ENDPOINTS:
        assert client.get(path).status_code == 401, path
        r = client.get(path, headers=researcher)
        assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json", path
        assert client.get(path, headers=auditor).status_code == 200, path
        want = 200 if path.endswith(("public-key", "checkpoint")) else 403
        assert client.get(path, headers=admin).status_code == want, path


def test_search_filters_and_pagination(client: TestClient, token_for: Callable[..., str]) -> None:
    h = H(token_for, "audrey", "auditor")

    def idx(**params: object) -> list[int]:
        r = client.get("/api/v1/audit/entries", params=params, headers=h)
        assert r.status_code == 200, r.text
        return [e["idx"] for e in r.json()["items"]]

    assert idx() == [0, 1, 2, 3, 4, 5]  # 5: the auditor token's first use (auth.token_used)
    assert idx(actor="alice") == [0, 1]
    assert idx(project_id="p1") == [0, 1, 3]
    assert idx(dataset_id="ct1") == [1]
    assert idx(job_id="j2") == [2]
    assert idx(action="job.submit") == [0, 2]
    assert idx(action="job.submit", project_id="p1") == [0]
    assert idx(since=(T0 + timedelta(minutes=1)).isoformat(), until=(T0 + timedelta(days=1)).isoformat()) == [
        1,
        2,
        3,
    ]
    page = client.get("/api/v1/audit/entries", params={"limit": 2}, headers=h).json()
    assert [e["idx"] for e in page["items"]] == [0, 1] and page["next_after"] == 1
    page2 = client.get("/api/v1/audit/entries", params={"limit": 2, "after": 1}, headers=h).json()
    assert [e["idx"] for e in page2["items"]] == [2, 3]
    entry = client.get("/api/v1/audit/entries/3", headers=h).json()
    assert entry["details"] == {"vote": "approve"} and entry["actor"] == "dana"
    r = client.get("/api/v1/audit/entries", params={"since": "2026-03-01T00:00:00"}, headers=h)
    assert r.status_code == 422 and "time zone" in r.json()["detail"]
    assert client.get("/api/v1/audit/entries/99", headers=h).status_code == 404


def test_inclusion_proofs_check_out_against_the_signed_checkpoint(
    client: TestClient, token_for: Callable[..., str], signer: AuditSigner
) -> None:
    h = H(token_for, "audrey", "auditor")
    key = VerifierKey.parse(client.get("/api/v1/audit/public-key", headers=h).json()["vkey"])
    assert key == signer.verifier_key
    cp = open_checkpoint(client.get("/api/v1/audit/checkpoint", headers=h).json()["note"], key)
    n = cp.tree_size
    assert n == 6  # 5 seeded entries and the auditor token's first use
    for i in range(n):
        body = client.get(f"/api/v1/audit/entries/{i}", headers=h).json()["body"]
        proof = client.get(
            "/api/v1/audit/proof/inclusion", params={"index": i, "tree_size": n}, headers=h
        ).json()
        verify_inclusion(
            leaf_hash(body.encode()), i, n, [bytes.fromhex(x) for x in proof["proof"]], cp.root_hash
        )
    r = client.get("/api/v1/audit/proof/inclusion", params={"index": 0, "tree_size": 50}, headers=h)
    assert r.status_code == 404
    r = client.get("/api/v1/audit/proof/inclusion", params={"index": 6, "tree_size": 6}, headers=h)
    assert r.status_code == 422


def test_pinned_checkpoint_detects_a_rewritten_server_log(
    client: TestClient, token_for: Callable[..., str], engine: Engine, signer: AuditSigner
) -> None:
    h = H(token_for, "audrey", "auditor")
    key = signer.verifier_key
    pinned = open_checkpoint(client.get("/api/v1/audit/checkpoint", headers=h).json()["note"], key)

    def consistent_with_pin() -> None:
        with session_scope(engine) as s:
            record_events(s, [AuditEvent("alice", "login")])
        head = open_checkpoint(client.get("/api/v1/audit/checkpoint", headers=h).json()["note"], key)
        proof = client.get(
            "/api/v1/audit/proof/consistency",
            params={"first": pinned.tree_size, "second": head.tree_size},
            headers=h,
        ).json()["proof"]
        verify_consistency(
            pinned.tree_size,
            head.tree_size,
            pinned.root_hash,
            head.root_hash,
            [bytes.fromhex(x) for x in proof],
        )

    consistent_with_pin()  # honest growth: proof verifies
    with session_scope(engine) as s:  # an insider rewrites entry 2, hashes and all
        row = s.scalar(select(AuditEntry).where(AuditEntry.idx == 2))
        assert row is not None
        row.body = row.body.replace('"bob"', '"carol"')
        row.leaf_hash = leaf_hash(row.body.encode())
    with pytest.raises(ProofError):
        consistent_with_pin()


def test_export_verifies_offline_and_is_audited(
    client: TestClient, token_for: Callable[..., str], engine: Engine, signer: AuditSigner
) -> None:
    h = H(token_for, "audrey", "auditor")
    r = client.get("/api/v1/audit/export", headers=h)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    report = verify_bundle(r.content, signer.verifier_key)
    assert report.ok and report.tree_size == 6, report.errors  # 5 + the token's first use
    with session_scope(engine) as s:
        last = s.scalar(select(AuditEntry).order_by(AuditEntry.idx.desc()).limit(1))
        assert last is not None and (last.actor, last.action) == ("audrey", "audit.export")
    r = client.get("/api/v1/audit/export", params={"tree_size": 5}, headers=h)
    report = verify_bundle(r.content, signer.verifier_key)
    assert report.ok and report.tree_size == 5
    r = client.get("/api/v1/audit/export", params={"tree_size": 3}, headers=h)
    assert r.status_code == 422 and "nearest smaller signed size is None" in r.json()["detail"]
    assert client.get("/api/v1/audit/export", params={"tree_size": 999}, headers=h).status_code == 404
