"""Key rotation keeps the origin, overlaps signatures, and verifiers follow the signed history;
`tre audit check` tells an admin whether the stored log is intact."""

from __future__ import annotations

import json
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine, select, update
from typer.testing import CliRunner

from tests.audit.conftest import export_bytes
from tre.audit import AuditEvent, record_events
from tre.audit.log import latest_checkpoint
from tre.audit.note import Checkpoint, VerifierKey, sign_checkpoint, sign_note, split_note
from tre.audit.signing import AuditSigner, get_signer, rotate_key
from tre.audit.verify import KeyTransition, verify_bundle
from tre.cli.audit import app as audit_app
from tre.config import Settings
from tre.store.db import session_scope
from tre.store.models import AuditCheckpoint, AuditEntry

runner = CliRunner()


def append(engine: Engine, n: int = 3) -> None:
    for i in range(n):
        with session_scope(engine) as s:
            record_events(s, [AuditEvent("alice", "dataset.read", dataset_id=f"d{i}")])


def test_rotation_overlap_and_history(log_engine: Engine, settings: Settings, signer: AuditSigner) -> None:
    append(log_engine)
    old = signer.verifier_key
    t = rotate_key(settings.keys_dir, overlap_s=3600)
    new_signer = get_signer(settings.keys_dir)
    assert new_signer.name == signer.name and new_signer.verifier_key == t.new != old
    append(log_engine)
    with session_scope(log_engine) as s:
        cp = latest_checkpoint(s)
        assert cp is not None
        _, sigs = split_note(cp.note)
    assert {kid for _, kid, _ in sigs} == {old.key_id, t.new.key_id}  # both sign in the overlap

    data = export_bytes(log_engine, new_signer)
    report = verify_bundle(data, old)  # an auditor who pinned the old key follows the history
    assert report.ok, report.errors
    assert report.keys == [old, t.new]
    assert verify_bundle(data, t.new).ok


def test_cli_follows_the_rotation_and_repins(
    log_engine: Engine, settings: Settings, signer: AuditSigner, tmp_path: Path
) -> None:
    append(log_engine)
    bundle = tmp_path / "b.jsonl"
    bundle.write_bytes(export_bytes(log_engine, signer))
    assert (
        runner.invoke(audit_app, ["verify", str(bundle), "--key", signer.verifier_key.encode()]).exit_code
        == 0
    )
    res = runner.invoke(audit_app, ["rotate-key", "--overlap", "0"])
    assert res.exit_code == 0 and "rotated the key" in res.output, res.output
    append(log_engine)  # signed by the new key only (no overlap)
    new_signer = get_signer(settings.keys_dir)
    bundle.write_bytes(export_bytes(log_engine, new_signer))
    res = runner.invoke(audit_app, ["verify", str(bundle)])
    assert res.exit_code == 0 and "rotated its key" in res.output, res.output
    pinned = (settings.home / "audit" / "log.vkey").read_text().strip()
    assert pinned == new_signer.verifier_key.encode()


def test_retired_key_cannot_sign_after_its_overlap(
    log_engine: Engine, settings: Settings, signer: AuditSigner
) -> None:
    append(log_engine)
    rotate_key(settings.keys_dir, overlap_s=0)
    append(log_engine)
    new_signer = get_signer(settings.keys_dir)
    with session_scope(log_engine) as s:
        cp = latest_checkpoint(s)
        assert cp is not None
        late = int(time.time() * 1000) + 3_600_000
        forged = sign_checkpoint(
            Checkpoint(signer.name, cp.tree_size, bytes(cp.root_hash), (f"timestamp {late}",)),
            signer.name,
            signer.private_key,
        )
        s.add(AuditCheckpoint(tree_size=cp.tree_size, root_hash=bytes(cp.root_hash), note=forged))
    report = verify_bundle(export_bytes(log_engine, new_signer), signer.verifier_key)
    assert not report.ok and any("retired key" in e for e in report.errors), report.errors


def test_forged_transition_to_an_attackers_key_is_not_followed(
    log_engine: Engine, signer: AuditSigner
) -> None:
    append(log_engine)
    attacker = Ed25519PrivateKey.generate()
    evil = VerifierKey(signer.name, attacker.public_key().public_bytes_raw())
    t = KeyTransition(signer.name, signer.verifier_key, evil, 0)
    note = sign_note(t.text(), signer.name, attacker)  # not signed by the old key
    data = export_bytes(log_engine, signer)
    header_raw, rest = data.split(b"\n", 1)
    header = json.loads(header_raw)
    header["key_history"] = [note]
    header["vkey"] = evil.encode()
    report = verify_bundle(json.dumps(header).encode() + b"\n" + rest, signer.verifier_key)
    assert not report.ok and report.keys == [signer.verifier_key]
    assert any("key change" in e for e in report.errors)


def test_check_command(log_engine: Engine, settings: Settings) -> None:
    if log_engine.dialect.name != "sqlite":
        return  # the command opens the configured (SQLite) database
    append(log_engine, 5)
    res = runner.invoke(audit_app, ["check"])
    assert res.exit_code == 0 and "intact: 5 entries" in res.output, res.output
    with session_scope(log_engine) as s:
        s.execute(update(AuditEntry).where(AuditEntry.idx == 2).values(body=AuditEntry.body + " "))
        assert s.scalar(select(AuditEntry.idx).where(AuditEntry.idx == 2)) == 2
    res = runner.invoke(audit_app, ["check"])
    assert res.exit_code == 1 and "entry 2: body does not match" in res.output + str(res.exception)
