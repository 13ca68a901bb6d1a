"""Tampering is always detected, and the verifier names the first bad index.

The log is tampered with where an insider would do it (rows in the database, or lines of an
exported bundle); the bundle is then checked with the offline verifier against the pinned key.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete, select, text, update

from tests.audit.conftest import export_bytes
from tre.audit import AuditEvent, record_events
from tre.audit.log import entry_body, latest_checkpoint
from tre.audit.merkle import ProofError, verify_consistency
from tre.audit.note import Checkpoint, open_checkpoint
from tre.audit.service import StoredTree
from tre.audit.signing import AuditSigner, configure, load_or_create_signer
from tre.audit.verify import verify_bundle
from tre.config import Settings
from tre.store.db import init_db, make_engine, session_scope
from tre.store.models import AuditCheckpoint, AuditEntry

N = 30
BATCHES = [1, 1, 5, 3, 1, 1, 1, 7, 2, 1, 1, 1, 1, 1, 1, 1, 1]  # sums to 30


def build(engine: Engine, signer: AuditSigner, tag: str = "") -> None:
    i = 0
    for size in BATCHES:
        with session_scope(engine) as s:
            record_events(
                s,
                [
                    AuditEvent(
                        f"user{(i + k) % 4}",
                        "job.submit",
                        project_id="p1",
                        job_id=f"j{i + k}",
                        details={"n": i + k, "tag": tag},
                    )
                    for k in range(size)
                ],
                signer=signer,
            )
        i += size
    assert i == N


def check(data: bytes, signer: AuditSigner, pins: list[str] | None = None) -> tuple[bool, int | None, str]:
    report = verify_bundle(data, signer.verifier_key, pins or [])
    return report.ok, report.first_bad_index, " | ".join(report.errors)


@pytest.fixture
def built(log_engine: Engine, signer: AuditSigner) -> Engine:
    build(log_engine, signer)
    return log_engine


@pytest.fixture
def bundle(engine: Engine, settings: Settings, signer: AuditSigner) -> bytes:
    """A clean exported bundle (SQLite only: file tampering does not depend on the backend)."""
    configure(engine, settings.keys_dir)
    build(engine, signer)
    return export_bytes(engine, signer)


def test_untouched_log_verifies(built: Engine, signer: AuditSigner) -> None:
    data = export_bytes(built, signer)
    report = verify_bundle(data, signer.verifier_key)
    assert report.ok, report.errors
    assert report.tree_size == N and report.checkpoints_verified == len(BATCHES)
    assert report.latest is not None and report.latest.tree_size == N
    assert not report.warnings


@pytest.mark.parametrize("k", [0, 7, 17, N - 1])
def test_edited_entry_is_named(built: Engine, signer: AuditSigner, k: int) -> None:
    with session_scope(built) as s:
        body = s.scalar(select(AuditEntry.body).where(AuditEntry.idx == k))
        assert body is not None
        s.execute(
            update(AuditEntry)
            .where(AuditEntry.idx == k)
            .values(body=body.replace("job.submit", "job.cancel"))
        )
    ok, bad, why = check(export_bytes(built, signer), signer)
    assert not ok and bad == k, why


def test_edited_entry_with_recomputed_leaf_hash_is_named(built: Engine, signer: AuditSigner) -> None:
    import hashlib

    with session_scope(built) as s:
        row = s.get(AuditEntry, 12)
        assert row is not None
        row.body = row.body.replace('"user0"', '"user3"')
        row.leaf_hash = hashlib.sha256(b"\x00" + row.body.encode()).digest()
    ok, bad, why = check(export_bytes(built, signer), signer)
    assert not ok and bad == 12, why


def test_deleted_entry_is_named(built: Engine, signer: AuditSigner) -> None:
    with session_scope(built) as s:
        s.execute(delete(AuditEntry).where(AuditEntry.idx == 9))
    ok, bad, why = check(export_bytes(built, signer), signer)
    assert not ok and bad == 9, why


def test_reordered_entries_are_named(built: Engine, signer: AuditSigner) -> None:
    with session_scope(built) as s:
        a = s.get(AuditEntry, 20)
        b = s.get(AuditEntry, 21)
        assert a is not None and b is not None
        a.body, b.body = b.body, a.body
    ok, bad, why = check(export_bytes(built, signer), signer)
    assert not ok and bad == 20, why


def test_truncated_log_is_detected(built: Engine, signer: AuditSigner) -> None:
    with session_scope(built) as s:
        s.execute(delete(AuditEntry).where(AuditEntry.idx >= 25))
    ok, bad, why = check(export_bytes(built, signer), signer)
    assert not ok and bad == 25 and "truncated" in why, why


def test_truncation_hidden_from_checkpoints_is_caught_by_a_pin(built: Engine, signer: AuditSigner) -> None:
    """An insider drops the last entries and every checkpoint that mentions them."""
    with session_scope(built) as s:
        seen = latest_checkpoint(s)
        assert seen is not None
        pinned = seen.note  # what an auditor saw (and kept) earlier
        s.execute(delete(AuditEntry).where(AuditEntry.idx >= 25))
        s.execute(delete(AuditCheckpoint).where(AuditCheckpoint.tree_size > 25))
    data = export_bytes(built, signer, size=25)
    assert check(data, signer)[0]  # self-consistent on its own...
    ok, bad, why = check(data, signer, [pinned])
    assert not ok and bad == 25 and "truncated" in why, why  # ...but not with the auditor's pin


def test_checkpoint_signed_by_another_key_is_rejected(
    built: Engine, signer: AuditSigner, tmp_path: Path
) -> None:
    rogue = load_or_create_signer(tmp_path / "rogue")
    with session_scope(built) as s:
        cp = latest_checkpoint(s)
        assert cp is not None
        forged = AuditSigner(rogue.private_key, signer.name).sign(
            Checkpoint(signer.name, N, bytes(cp.root_hash))
        )
        s.add(AuditCheckpoint(tree_size=N, root_hash=bytes(cp.root_hash), note=forged))
    ok, _, why = check(export_bytes(built, signer), signer)
    assert not ok and "not signed by the trusted key" in why, why


def test_whole_log_resigned_with_another_key_is_rejected(
    engine: Engine, settings: Settings, signer: AuditSigner, tmp_path: Path
) -> None:
    """Trusting the bundle's own key would accept it; the pinned key does not."""
    configure(engine, settings.keys_dir)
    build(engine, signer)
    rogue = load_or_create_signer(tmp_path / "rogue")
    data = export_bytes(engine, rogue)  # header names the rogue key; checkpoints are the real ones
    assert not verify_bundle(data, rogue.verifier_key).ok
    # The checkpoints still verify under the pinned key, but a header naming another key is
    # a key change, reported as a failure.
    report = verify_bundle(data, signer.verifier_key)
    assert not report.ok and "key change" in report.errors[0]


def test_rewritten_history_with_resigned_checkpoints_is_named(bundle: bytes, signer: AuditSigner) -> None:
    """An insider with the key edits entry 23, rebuilds the chain after it and re-signs the head.

    The hash chain and the latest checkpoint are self-consistent, but the older signed
    checkpoints are not: the verifier names the first index they no longer vouch for.
    """
    lines = bundle.split(b"\n")[:-1]
    header, entries, cps = lines[0], lines[1 : 1 + N], lines[1 + N :]
    import hashlib

    prev_hash = hashlib.sha256(b"\x00" + entries[22]).hexdigest()
    new_entries = entries[:23]
    for i in range(23, N):
        obj = json.loads(entries[i])
        fields = {k: v for k, v in obj.items() if k not in ("idx", "prev")}
        if i == 23:
            fields["actor"] = "someone-else"
        line = entry_body(i, prev_hash, fields).encode()  # the genuine format, chain intact
        new_entries.append(line)
        prev_hash = hashlib.sha256(b"\x00" + line).hexdigest()
    from tre.audit.merkle import TreeLevels, leaf_hashes

    root = TreeLevels(leaf_hashes(new_entries)).root()
    late = f"timestamp {2**41}"  # signed after every genuine checkpoint
    head = json.dumps({"checkpoint": signer.sign(Checkpoint(signer.name, N, root, (late,)))}).encode()
    hdr = json.loads(header)
    hdr["checkpoints"] = len(cps) + 1
    tampered = b"\n".join([json.dumps(hdr).encode(), *new_entries, *cps, head]) + b"\n"
    ok, bad, why = check(tampered, signer)
    assert not ok and bad == 23 and "forked" in why, why
    assert "hash recorded by" not in why  # the chain itself was rebuilt consistently


@pytest.mark.parametrize(
    ("how", "want"),
    [("edit", 4), ("delete", 4), ("swap", 4), ("truncate", N - 3), ("garble", 4)],
)
def test_tampered_bundle_file(bundle: bytes, signer: AuditSigner, how: str, want: int) -> None:
    lines = bundle.split(b"\n")
    e = 1 + 4  # line of entry 4
    if how == "edit":
        lines[e] = lines[e].replace(b'"p1"', b'"p2"')
    elif how == "delete":
        del lines[e]
    elif how == "swap":
        lines[e], lines[e + 1] = lines[e + 1], lines[e]
    elif how == "truncate":
        del lines[1 + N - 3 : 1 + N]
    else:
        lines[e] = lines[e][:-5]
    ok, bad, why = check(b"\n".join(lines), signer)
    assert not ok and bad == want, why


def test_fork_between_two_auditors_is_detected_by_consistency_proof(
    built: Engine, signer: AuditSigner, tmp_path: Path
) -> None:
    """The server shows auditor A the real log, then auditor B a different history (same key).

    A pinned the size-20 checkpoint. B's tree (or any later view of a rewritten log) cannot
    produce a consistency proof from A's pin, while the honest tree can.
    """
    with session_scope(built) as s:
        pin_row = s.scalar(select(AuditCheckpoint).where(AuditCheckpoint.tree_size == 20))
        assert pin_row is not None
        pin = open_checkpoint(pin_row.note, signer.verifier_key)
        honest = StoredTree(s, N)
        verify_consistency(20, N, pin.root_hash, honest.root(), honest.consistency(20))

    other = make_engine(f"sqlite:///{tmp_path / 'fork.db'}")
    init_db(other)
    # A dishonest operator signs with the real key outside tre's own guard (keys_dir=None:
    # no last-checkpoint file to prove consistency with): same key, shape, other content.
    build(other, dataclasses.replace(signer, keys_dir=None), tag="forked")
    with session_scope(other) as s:
        head = latest_checkpoint(s)
        assert head is not None
        forked_head = open_checkpoint(head.note, signer.verifier_key)  # validly signed!
        proof = StoredTree(s, N).consistency(20)
    with pytest.raises(ProofError, match="rewritten"):
        verify_consistency(20, N, pin.root_hash, forked_head.root_hash, proof)
    # Offline too: B's bundle contradicts A's pinned checkpoint.
    ok, _, why = check(export_bytes(other, signer), signer, [pin_row.note])
    assert not ok and "fork" in why, why
    other.dispose()


def test_storage_damage_is_reported_by_proofs(built: Engine) -> None:
    with session_scope(built) as s:
        s.execute(text("DELETE FROM audit_entries WHERE idx = 3"))
    from tre.audit.guard import AuditLogDamaged

    with session_scope(built) as s, pytest.raises(AuditLogDamaged, match="missing"):
        StoredTree(s, N).inclusion(10)
