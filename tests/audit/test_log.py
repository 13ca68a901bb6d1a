"""Appending: dense indices, one signed checkpoint per batch, rollback, key handling."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from tre.audit import AuditEvent, checkpoint, record_event, record_events
from tre.audit.merkle import TreeLevels, leaf_hash
from tre.audit.note import open_checkpoint
from tre.audit.signing import KEY_FILE, ORIGIN_FILE, AuditKeyError, AuditSigner, load_or_create_signer
from tre.config import Settings
from tre.store.db import session_scope
from tre.store.models import AuditCheckpoint, AuditEntry, AuditState


def test_record_event_appends_signed_entries(log_engine: Engine, signer: AuditSigner) -> None:
    with session_scope(log_engine) as s:
        a = record_event(
            s,
            actor="alice",
            action="job.submit",
            project_id="p1",
            job_id="j1",
            details={"image": "x@sha256:ab", "when": datetime(2026, 1, 1, tzinfo=UTC)},
        )
        b = record_event(s, actor="dana", action="egress.vote", details={"vote": "approve"})
    with session_scope(log_engine) as s:
        c = record_events(s, [AuditEvent("bob", "dataset.access", dataset_id="ct1")] * 3)
    assert (a, b, c) == (0, 1, [2, 3, 4])
    with session_scope(log_engine) as s:
        rows = s.scalars(select(AuditEntry).order_by(AuditEntry.idx)).all()
        cps = s.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.id)).all()
        state = s.get(AuditState, 1)
        assert state is not None and state.tree_size == 5
        bodies = [json.loads(r.body) for r in rows]
        assert [bd["idx"] for bd in bodies] == [0, 1, 2, 3, 4]
        assert bodies[0]["details"]["when"] == "2026-01-01T00:00:00Z"
        assert bodies[0]["prev"] == "0" * 64
        for prev, cur in zip(rows, bodies[1:], strict=False):
            assert cur["prev"] == bytes(prev.leaf_hash).hex()
        assert rows[0].project_id == "p1" and rows[4].dataset_id == "ct1"
        leaves = [leaf_hash(r.body.encode()) for r in rows]
        assert leaves == [bytes(r.leaf_hash) for r in rows]
        # One checkpoint per append call, each a valid signature over that prefix's root.
        assert [cp.tree_size for cp in cps] == [1, 2, 5]
        tree = TreeLevels(leaves)
        for cp in cps:
            opened = open_checkpoint(cp.note, signer.verifier_key)
            assert opened.root_hash == tree.root(cp.tree_size) == bytes(cp.root_hash)


def test_rolled_back_action_leaves_no_trace(log_engine: Engine) -> None:
    with session_scope(log_engine) as s:
        record_event(s, actor="alice", action="login")
    with pytest.raises(RuntimeError), session_scope(log_engine) as s:
        record_event(s, actor="alice", action="job.submit")
        raise RuntimeError("the action failed")
    with session_scope(log_engine) as s:
        assert s.scalar(select(func.count()).select_from(AuditEntry)) == 1
        assert s.get(AuditState, 1).tree_size == 1  # type: ignore[union-attr]
        assert record_event(s, actor="alice", action="job.submit") == 1


def test_invalid_events_are_refused(log_engine: Engine) -> None:
    with session_scope(log_engine) as s:
        for kw in (
            {"actor": "", "action": "x"},
            {"actor": "a", "action": "has space"},
            {"actor": "a", "action": "x", "job_id": "j" * 33},
        ):
            with pytest.raises(ValueError):
                record_event(s, **kw)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            record_event(s, actor="a", action="x", details={"obj": object()})
        assert s.scalar(select(func.count()).select_from(AuditEntry)) == 0


def test_periodic_checkpoint_reuses_fresh_and_resigns_stale(log_engine: Engine, signer: AuditSigner) -> None:
    with session_scope(log_engine) as s:
        empty = checkpoint(s)
        assert open_checkpoint(empty.note, signer.verifier_key).tree_size == 0
        record_event(s, actor="alice", action="login")
    with session_scope(log_engine) as s:
        first = checkpoint(s, max_age_s=3600)
        assert first.tree_size == 1
        assert checkpoint(s, max_age_s=3600).id == first.id
        assert checkpoint(s, max_age_s=0).id != first.id


def test_signing_key_is_private_and_stable(settings: Settings) -> None:
    one = load_or_create_signer(settings.keys_dir)
    two = load_or_create_signer(settings.keys_dir)
    path = settings.keys_dir / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert one.public_key == two.public_key and one.name == two.name
    path.chmod(0o644)
    with pytest.raises(AuditKeyError, match="readable by others"):  # the API's 503 problem
        load_or_create_signer(settings.keys_dir)


def test_concurrent_key_creation_yields_one_key(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        keys = list(pool.map(lambda _: load_or_create_signer(tmp_path / "k").public_key, range(16)))
    assert len(set(keys)) == 1
    assert sorted(p.name for p in (tmp_path / "k").iterdir()) == sorted([KEY_FILE, ORIGIN_FILE])
