"""C2SP tlog-tiles read API: a client following the log with tiles alone gets the signed root."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from tre.audit import AuditEvent, record_events
from tre.audit.merkle import TreeLevels, leaf_hash
from tre.audit.note import open_checkpoint
from tre.audit.signing import AuditSigner, configure
from tre.audit.tilepath import encode_index
from tre.audit.tiles import TileNotFound, parse_index
from tre.config import Settings
from tre.store.db import session_scope

N = 600  # with the token-use entry: two full level-0 tiles and a partial one of 89


@pytest.fixture
def client(
    app: FastAPI,
    engine: Engine,
    settings: Settings,
    make_user: Callable[..., object],
    token_for: Callable[..., str],
) -> Iterator[tuple[TestClient, dict[str, str], dict[str, str]]]:
    configure(engine, settings.keys_dir)
    with session_scope(engine) as s:
        make_user(s, "audrey", "auditor")
        make_user(s, "root", "admin")
        make_user(s, "alice", "researcher")
    for start in range(0, N, 100):
        with session_scope(engine) as s:
            record_events(
                s,
                [AuditEvent(f"u{i % 5}", "dataset.read", dataset_id="d1") for i in range(start, start + 100)],
            )
    with TestClient(app) as c:
        yield (
            c,
            {"Authorization": f"Bearer {token_for('audrey', 'auditor')}"},
            {"Authorization": f"Bearer {token_for('alice', 'researcher')}"},
        )


def split_hashes(data: bytes) -> list[bytes]:
    assert len(data) % 32 == 0
    return [data[i : i + 32] for i in range(0, len(data), 32)]


def split_entries(data: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(data):
        n = int.from_bytes(data[pos : pos + 2], "big")
        out.append(data[pos + 2 : pos + 2 + n])
        pos += 2 + n
    return out


def test_tiles_reproduce_the_signed_root(
    client: tuple[TestClient, dict[str, str], dict[str, str]], signer: AuditSigner
) -> None:
    c, h, _ = client
    r = c.get("/api/v1/audit/tlog/checkpoint", headers=h)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    cp = open_checkpoint(r.text, signer.verifier_key)
    size = cp.tree_size
    assert size == N + 1  # and the auditor token's first use
    leaves: list[bytes] = []
    for n in range(size // 256):
        t = c.get(f"/api/v1/audit/tlog/tile/0/{encode_index(n)}", headers=h)
        assert t.status_code == 200 and "immutable" in t.headers["cache-control"]
        leaves += split_hashes(t.content)
    rest = size % 256
    t = c.get(f"/api/v1/audit/tlog/tile/0/{encode_index(size // 256)}.p/{rest}", headers=h)
    assert t.status_code == 200
    leaves += split_hashes(t.content)
    assert TreeLevels(leaves).root() == cp.root_hash

    level1 = split_hashes(c.get("/api/v1/audit/tlog/tile/1/000.p/2", headers=h).content)
    assert level1 == [TreeLevels(leaves[:256]).root(), TreeLevels(leaves[256:512]).root()]

    bodies = split_entries(c.get("/api/v1/audit/tlog/tile/entries/000", headers=h).content)
    assert [leaf_hash(b) for b in bodies] == leaves[:256]
    partial = split_entries(c.get(f"/api/v1/audit/tlog/tile/entries/002.p/{rest}", headers=h).content)
    assert [leaf_hash(b) for b in partial] == leaves[512:]
    # Entries carry pseudonymous ids and the action only: no names or e-mail addresses.
    assert b"@" not in b"".join(bodies)


def test_missing_and_malformed_tiles_and_roles(
    client: tuple[TestClient, dict[str, str], dict[str, str]],
) -> None:
    c, h, researcher = client
    for path in (
        "tile/0/002",
        "tile/0/003.p/5",
        "tile/0/2",
        "tile/0/000.p/0",
        "tile/0/000.p/256",
        "tile/1/000",
        "tile/entries/x1/000",
    ):
        r = c.get(f"/api/v1/audit/tlog/{path}", headers=h)
        assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json"), path
    assert c.get("/api/v1/audit/tlog/tile/0/000", headers=researcher).status_code == 403
    assert c.get("/api/v1/audit/tlog/tile/entries/000", headers=researcher).status_code == 403
    assert c.get("/api/v1/audit/tlog/checkpoint").status_code == 401


def test_index_encoding() -> None:
    assert encode_index(0) == "000"
    assert encode_index(5) == "005"
    assert encode_index(1234067) == "x001/x234/067"
    assert parse_index("x001/x234/067") == (1234067, None)
    assert parse_index("x001/x234/067.p/7") == (1234067, 7)
    for bad in ("1234", "x1/000", "000.p/00", "000/", "y001/000"):
        with pytest.raises(TileNotFound):
            parse_index(bad)


def test_reading_entries_through_tiles_is_recorded(
    client: tuple[TestClient, dict[str, str], dict[str, str]], engine: Engine
) -> None:
    """Round 16: the entry bundles carry the same bodies as ``/entries/{idx}`` (``audit.entry``)
    and ``/export`` (``audit.export``), yet reading them left no entry: an auditor could read
    the whole log (who touched which dataset) unaccountably. Now each tile read is recorded
    (``audit.entries_read``, which entries), aggregated per reader and tile; hash tiles
    (hashes only) are not."""
    import json

    from sqlalchemy import select

    from tre.audit import events
    from tre.store.models import AuditEntry

    events._reads.seen.clear()  # reads aggregate per process: another test's reads are not this one's
    c, h, _ = client
    for _ in range(3):
        assert c.get("/api/v1/audit/tlog/tile/entries/001", headers=h).status_code == 200
    assert c.get("/api/v1/audit/tlog/tile/entries/000", headers=h).status_code == 200
    assert c.get("/api/v1/audit/tlog/tile/0/000", headers=h).status_code == 200
    with session_scope(engine) as s:
        bodies = [json.loads(b) for b in s.scalars(select(AuditEntry.body).order_by(AuditEntry.idx))]
    reads = [
        (b["actor"], b["details"]["first"], b["details"]["count"])
        for b in bodies
        if b["action"] == "audit.entries_read"
    ]
    assert reads == [("audrey", 256, 256), ("audrey", 0, 256)]
