"""The server never signs a tree that contradicts what it signed before, and fails closed.

Tampering happens where an insider without the signing key would do it: in the live
database (entries, state row, checkpoints). Every audited action must then be refused with
a clear problem document / one-line CLI error, never a 500 or a traceback, and no new
checkpoint may be signed over the altered tree.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, delete, func, select, update

from tests.audit.conftest import export_bytes
from tre.audit import AuditEvent, checkpoint, record_event, record_events
from tre.audit.guard import AuditLogDamaged
from tre.audit.log import entry_body
from tre.audit.merkle import Frontier, leaf_hash
from tre.audit.note import open_checkpoint
from tre.audit.signing import KEY_FILE, PIN_FILE, AuditKeyError, AuditSigner, configure
from tre.audit.verify import verify_bundle
from tre.config import Settings
from tre.store.db import session_scope
from tre.store.models import AuditCheckpoint, AuditEntry, AuditState

N = 10
REPO = Path(__file__).resolve().parents[2]


def build(engine: Engine, n: int = N) -> None:
    for i in range(n):
        with session_scope(engine) as s:
            record_events(s, [AuditEvent(f"u{i % 3}", "dataset.read", "p1", f"d{i % 2}", details={"i": i})])


@pytest.fixture
def log(log_engine: Engine) -> Engine:
    build(log_engine)
    return log_engine


@pytest.fixture
def client(
    app: FastAPI,
    engine: Engine,
    settings: Settings,
    make_user: Callable[..., object],
    token_for: Callable[..., str],
) -> Iterator[tuple[TestClient, dict[str, str]]]:
    configure(engine, settings.keys_dir)
    with session_scope(engine) as s:
        make_user(s, "audrey", "auditor")
        make_user(s, "root", "admin")
    build(engine)
    with TestClient(app) as c:
        yield c, {"Authorization": f"Bearer {token_for('audrey', 'auditor')}"}


def count_checkpoints(engine: Engine) -> int:
    with session_scope(engine) as s:
        return int(s.scalar(select(func.count(AuditCheckpoint.id))) or 0)


def rebuild_state(engine: Engine, upto: int | None = None) -> None:
    """What an insider without the key does after editing entries: recompute the frontier."""
    with session_scope(engine) as s:
        rows = s.scalars(select(AuditEntry).order_by(AuditEntry.idx)).all()
        rows = rows if upto is None else rows[:upto]
        f = Frontier()
        for r in rows:
            f.append(bytes(r.leaf_hash))
        s.execute(update(AuditState).values(tree_size=f.size, frontier=[h.hex() for h in f.hashes]))


def rewrite_entry(engine: Engine, idx: int) -> None:
    """Edit entry idx and rebuild the hash chain after it, as a careful insider would."""
    with session_scope(engine) as s:
        rows = s.scalars(select(AuditEntry).where(AuditEntry.idx >= idx).order_by(AuditEntry.idx)).all()
        prev = bytes(s.scalar(select(AuditEntry.leaf_hash).where(AuditEntry.idx == idx - 1)) or b"").hex()
        for r in rows:
            fields = {k: v for k, v in json.loads(r.body).items() if k not in ("idx", "prev")}
            if r.idx == idx:
                fields["actor"] = "someone-else"
            r.body = entry_body(r.idx, prev, fields)
            r.leaf_hash = leaf_hash(r.body.encode())
            prev = r.leaf_hash.hex()


def append_one(engine: Engine) -> None:
    with session_scope(engine) as s:
        record_event(s, actor="alice", action="dataset.read", dataset_id="d1")


@pytest.mark.parametrize("edit", ["rewrite-middle", "truncate", "frontier", "delete-checkpoints-and-rewrite"])
def test_edited_database_is_never_signed(log: Engine, edit: str) -> None:
    if edit == "rewrite-middle":
        rewrite_entry(log, 4)
        rebuild_state(log)
    elif edit == "truncate":
        with session_scope(log) as s:
            s.execute(delete(AuditEntry).where(AuditEntry.idx >= N - 3))
            s.execute(delete(AuditCheckpoint).where(AuditCheckpoint.tree_size > N - 3))
        rebuild_state(log)
    elif edit == "frontier":
        with session_scope(log) as s:
            s.execute(update(AuditState).values(frontier=["00" * 32] * bin(N).count("1")))
    else:
        rewrite_entry(log, 2)
        rebuild_state(log)
        with session_scope(log) as s:
            s.execute(delete(AuditCheckpoint))
    before = count_checkpoints(log)
    with pytest.raises(AuditLogDamaged, match="audit log damaged") as err:
        append_one(log)
    assert "tre audit check" in str(err.value) and "docs/audit.md" in str(err.value)
    with pytest.raises(AuditLogDamaged), session_scope(log) as s:
        checkpoint(s)
    assert count_checkpoints(log) == before  # nothing new was signed


def test_rolled_back_checkpoint_does_not_move_the_pin(log: Engine, settings: Settings) -> None:
    pin = settings.keys_dir / PIN_FILE
    size_before = int(pin.read_text().split("\n")[1])
    with pytest.raises(RuntimeError), session_scope(log) as s:
        record_event(s, actor="alice", action="dataset.read")
        raise RuntimeError("the action failed")
    assert int(pin.read_text().split("\n")[1]) == size_before == N
    append_one(log)  # the log carries on
    assert int(pin.read_text().split("\n")[1]) == N + 1


def test_missing_pin_is_bootstrapped_from_the_database(log: Engine, settings: Settings) -> None:
    (settings.keys_dir / PIN_FILE).unlink()
    append_one(log)
    assert (settings.keys_dir / PIN_FILE).is_file()


def test_deleted_last_row_fails_closed_everywhere(
    client: tuple[TestClient, dict[str, str]], engine: Engine, settings: Settings
) -> None:
    c, h = client
    with session_scope(engine) as s:
        s.execute(delete(AuditEntry).where(AuditEntry.idx == N - 1))
    with pytest.raises(AuditLogDamaged, match="newest, is missing"):
        append_one(engine)
    for path in ("/api/v1/audit/export", "/api/v1/audit/checkpoint"):
        r = c.get(path, headers=h)
        assert r.status_code == 503, (path, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["type"] == "urn:tre:problem:audit-log-damaged" and "restore" in r.json()["detail"]
    # An admin command on the control-plane host: one line on stderr, no traceback.
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from tre.cli.main import run; run()",
            "admin",
            "user",
            "bob",
            "--role",
            "researcher",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("error: audit log damaged") and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_deleted_middle_row_gives_problem_documents_not_500(
    client: tuple[TestClient, dict[str, str]], engine: Engine, signer: AuditSigner
) -> None:
    c, h = client
    with session_scope(engine) as s:
        s.execute(delete(AuditEntry).where(AuditEntry.idx == 3))
    for path, params in (
        ("/api/v1/audit/proof/inclusion", {"index": 5, "tree_size": N}),
        ("/api/v1/audit/proof/consistency", {"first": 2, "second": N}),
        ("/api/v1/audit/entries/3", {}),
        ("/api/v1/audit/checkpoint", {}),
    ):
        r = c.get(path, params=params, headers=h)
        assert r.status_code == 503, (path, r.text)
        assert r.json()["type"] == "urn:tre:problem:audit-log-damaged", r.text
    # The bundle is still evidence: the offline verifier names the gap.
    r = c.get("/api/v1/audit/export", headers=h)
    assert r.status_code == 200
    report = verify_bundle(r.content, signer.verifier_key)
    assert not report.ok and report.first_bad_index == 3, report.errors


def test_search_and_display_come_from_the_hashed_body(
    client: tuple[TestClient, dict[str, str]], engine: Engine
) -> None:
    c, h = client
    with session_scope(engine) as s:
        s.execute(update(AuditEntry).where(AuditEntry.idx == 4).values(actor="dac-two", action="egress.vote"))
    by_actor = c.get("/api/v1/audit/entries", params={"actor": "u1"}, headers=h).json()
    assert [e["idx"] for e in by_actor["items"]] == [1, 4, 7]  # the column edit changes nothing
    assert c.get("/api/v1/audit/entries", params={"actor": "dac-two"}, headers=h).json()["items"] == []
    shown = c.get("/api/v1/audit/entries/4", headers=h).json()
    assert (shown["actor"], shown["action"]) == ("u1", "dataset.read")
    # Editing the body itself breaks its leaf hash: reported, never shown.
    with session_scope(engine) as s:
        row = s.get(AuditEntry, 7)
        assert row is not None
        row.body = row.body.replace('"actor":"u1"', '"actor":"u2"')
    page = c.get("/api/v1/audit/entries", params={"actor": "u2"}, headers=h).json()
    assert 7 not in [e["idx"] for e in page["items"]] and page["damaged"] == [7]
    assert c.get("/api/v1/audit/entries/7", headers=h).status_code == 503


def test_deleted_key_is_never_silently_replaced(log: Engine, settings: Settings, signer: AuditSigner) -> None:
    key = settings.keys_dir / KEY_FILE
    saved = key.read_bytes()
    key.unlink()
    with pytest.raises(AuditKeyError, match="will not create a new key"):
        append_one(log)
    assert not key.exists()
    # Even with every file beside it gone, the database's entries forbid a new identity.
    for f in settings.keys_dir.iterdir():
        if f.name.startswith("audit-"):
            f.unlink()
    with pytest.raises(AuditKeyError):
        append_one(log)
    assert not key.exists()
    key.write_bytes(saved)
    key.chmod(0o600)
    from tre.audit.signing import ORIGIN_FILE

    (settings.keys_dir / ORIGIN_FILE).write_text(signer.name + "\n")
    append_one(log)  # restored from backup: the log carries on under its old identity
    assert verify_bundle(export_bytes(log, signer), signer.verifier_key).ok


def test_origin_is_stable_and_stored(log: Engine, settings: Settings, signer: AuditSigner) -> None:
    from tre.audit.signing import ORIGIN_FILE

    assert (settings.keys_dir / ORIGIN_FILE).read_text().strip() == signer.name
    with session_scope(log) as s:
        note = s.scalars(select(AuditCheckpoint.note).order_by(AuditCheckpoint.id.desc())).first()
    assert note is not None and open_checkpoint(note, signer.verifier_key).origin == signer.name


def test_search_filters_the_body_on_both_backends(log: Engine) -> None:
    from datetime import UTC, datetime

    from tre.audit.service import EntryFilter, search

    with session_scope(log) as s:
        s.execute(update(AuditEntry).where(AuditEntry.idx == 1).values(actor="x", dataset_id="zz"))
    with session_scope(log) as s:
        got = search(s, EntryFilter(actor="u1", dataset_id="d1"))
        assert [e.idx for e in got.entries] == [1, 7] and got.damaged == []
        assert [e.idx for e in search(s, EntryFilter(dataset_id="zz")).entries] == []
        future = search(s, EntryFilter(since=datetime(2100, 1, 1, tzinfo=UTC)))
        assert future.entries == []
        page = search(s, EntryFilter(action="dataset.read"), after=2, limit=3)
        assert [e.idx for e in page.entries] == [3, 4, 5] and page.last_scanned == 5


def test_a_lagging_pin_is_checked_by_replaying_the_new_leaves(
    log: Engine, settings: Settings, signer: AuditSigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The PostgreSQL race: another request's append takes the tree lock right after this
    process committed checkpoint m, before anyone could see the pin move; the tree then has
    a few more entries than the newest checkpoint this process knows. That is checked by
    replaying the stored new leaves onto the frontier m was signed from (no proof from stored
    leaves), and an edited new leaf is still refused."""
    from tre.audit import guard
    from tre.audit.service import StoredTree

    pin = settings.keys_dir / PIN_FILE
    old_note = pin.read_text()
    with guard._pin_lock:
        remembered = dict(guard._committed_here)
    build(log, 3)  # three more entries, each committed with its own checkpoint
    # Back to the moment before those three: the pin file and this process's memory at m.
    pin.write_text(old_note)
    with guard._pin_lock:
        guard._committed_here.clear()
        guard._committed_here.update(remembered)
    guard._pin_cache.clear()

    def no_proof(*_a: object, **_k: object) -> None:
        raise AssertionError("the replay should have answered without a consistency proof")

    monkeypatch.setattr(StoredTree, "consistency", no_proof)
    with session_scope(log) as s:
        record_events(s, [AuditEvent("u1", "dataset.read", "p1", "d0")])  # replays 3 leaves
    monkeypatch.undo()

    # Again at the lagging point, with one of the replayed leaves edited in the database.
    pin.write_text(old_note)
    with guard._pin_lock:
        guard._committed_here.clear()
        guard._committed_here.update(remembered)
    guard._pin_cache.clear()
    with session_scope(log) as s:
        s.execute(update(AuditEntry).where(AuditEntry.idx == N + 1).values(leaf_hash=b"\x01" * 32))
    with pytest.raises(AuditLogDamaged), session_scope(log) as s:
        record_events(s, [AuditEvent("u1", "dataset.read", "p1", "d0")])
