"""The verifier trusts only what the auditor pinned, run exactly as the README says:

    tre audit public-key > log.vkey          (once, compared out of band)
    tre audit export bundle.jsonl && tre audit verify bundle.jsonl --key log.vkey

Attacks: forged appends no checkpoint covers, a rewritten tail with its checkpoints dropped,
a bundle re-signed with an attacker's key (with and without --key), a history rewritten by
the operator with the real key while the auditor holds a saved checkpoint, and honest logs
appended by hosts whose clocks disagree.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete, select
from typer.testing import CliRunner

from tests.audit.conftest import export_bytes
from tre.audit import AuditEvent, record_events
from tre.audit.log import entry_body
from tre.audit.merkle import leaf_hash
from tre.audit.note import Checkpoint, open_checkpoint
from tre.audit.signing import AuditSigner, configure, load_or_create_signer
from tre.audit.verify import verify_bundle
from tre.cli.audit import app as audit_app
from tre.config import Settings
from tre.store.db import init_db, make_engine, session_scope
from tre.store.models import AuditCheckpoint, AuditEntry

runner = CliRunner()
N = 12


def build(engine: Engine, signer: AuditSigner, n: int = N, tag: str = "") -> None:
    for i in range(n):
        with session_scope(engine) as s:
            record_events(
                s,
                [AuditEvent(f"u{i % 3}", "dataset.read", "p1", f"d{i % 2}", details={"i": i, "t": tag})],
                signer=signer,
            )


@pytest.fixture
def log(engine: Engine, settings: Settings, signer: AuditSigner) -> Engine:
    configure(engine, settings.keys_dir)
    build(engine, signer)
    return engine


def cli_verify(bundle: Path, *args: str) -> tuple[int, str]:
    res = runner.invoke(audit_app, ["verify", str(bundle), *args])
    msg = str(res.exception) if res.exception else ""
    return res.exit_code, res.output + msg


def write(tmp_path: Path, data: bytes, name: str = "bundle.jsonl") -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def key_file(tmp_path: Path, signer: AuditSigner) -> Path:
    p = tmp_path / "log.vkey"
    p.write_text(signer.verifier_key.encode() + "\n")
    return p


def forge_append(data: bytes, actor: str = "mallory") -> bytes:
    """Append an entry with a valid index and chain link, and fix the header's size."""
    header_raw, *rest = data.rstrip(b"\n").split(b"\n")
    header = json.loads(header_raw)
    n, c = header["tree_size"], header["checkpoints"]
    entries, cps = rest[:n], rest[n:]
    prev = leaf_hash(entries[-1]).hex()
    fields = {"v": 1, "ts": "2026-01-01T00:00:00.000000Z", "actor": actor, "action": "x", "details": {}}
    entries.append(entry_body(n, prev, fields).encode())
    header["tree_size"] = n + 1
    assert len(cps) == c
    return b"\n".join([json.dumps(header).encode(), *entries, *cps]) + b"\n"


def test_clean_bundle_verifies_as_the_readme_says(log: Engine, signer: AuditSigner, tmp_path: Path) -> None:
    bundle = write(tmp_path, export_bytes(log, signer))
    code, out = cli_verify(bundle, "--key", str(key_file(tmp_path, signer)))
    assert code == 0 and f"OK: {N} entries verified" in out, out


def test_forged_append_not_covered_by_a_checkpoint_fails(
    log: Engine, signer: AuditSigner, tmp_path: Path
) -> None:
    bundle = write(tmp_path, forge_append(export_bytes(log, signer)))
    code, out = cli_verify(bundle, "--key", str(key_file(tmp_path, signer)))
    assert code == 1, out
    assert f"first bad index {N}" in out and "not covered by any signed checkpoint" in out, out


def test_rewritten_tail_with_dropped_checkpoints_fails(
    log: Engine, signer: AuditSigner, tmp_path: Path
) -> None:
    """The insider rewrites entries 8.. (rebuilding the chain) and drops their checkpoints."""
    with session_scope(log) as s:
        s.execute(delete(AuditCheckpoint).where(AuditCheckpoint.tree_size > 8))
        rows = s.scalars(select(AuditEntry).where(AuditEntry.idx >= 8).order_by(AuditEntry.idx)).all()
        prev = bytes(s.scalar(select(AuditEntry.leaf_hash).where(AuditEntry.idx == 7)) or b"").hex()
        for row in rows:
            fields = json.loads(row.body)
            fields["actor"] = "nobody"
            body = entry_body(row.idx, prev, {k: v for k, v in fields.items() if k not in ("idx", "prev")})
            row.body, row.leaf_hash = body, leaf_hash(body.encode())
            prev = row.leaf_hash.hex()
    bundle = write(tmp_path, export_bytes(log, signer, size=8))
    assert cli_verify(bundle, "--key", str(key_file(tmp_path, signer)))[0] == 0  # the signed part
    raw = export_bytes(log, signer, size=8)
    # The operator hands out everything, claiming the unsigned tail is part of the log.
    with session_scope(log) as s:
        tail = [r.body.encode() for r in s.scalars(select(AuditEntry).where(AuditEntry.idx >= 8))]
    header_raw, *rest = raw.rstrip(b"\n").split(b"\n")
    header = json.loads(header_raw)
    header["tree_size"] = N
    data = b"\n".join([json.dumps(header).encode(), *rest[:8], *tail, *rest[8:]]) + b"\n"
    code, out = cli_verify(write(tmp_path, data, "tail.jsonl"), "--key", str(key_file(tmp_path, signer)))
    assert code == 1 and "first bad index 8" in out and "not covered" in out, out


def test_bundle_resigned_with_an_attackers_key_fails_against_the_pinned_key(
    log: Engine, settings: Settings, signer: AuditSigner, tmp_path: Path
) -> None:
    """First run pins the real key (loudly); a bundle re-signed by another key then fails,
    with or without --key, even though it carries the attacker's key in its header."""
    good = write(tmp_path, export_bytes(log, signer))
    code, out = cli_verify(good)
    assert code == 0 and "ON FIRST USE" in out, out
    assert (settings.home / "audit" / "log.vkey").read_text().strip() == signer.verifier_key.encode()

    rogue = load_or_create_signer(tmp_path / "rogue")
    evil = make_engine(f"sqlite:///{tmp_path / 'evil.db'}")
    init_db(evil)
    build(evil, dataclasses.replace(rogue, keys_dir=None), tag="rewritten")
    bad = write(tmp_path, export_bytes(evil, rogue), "evil.jsonl")
    assert verify_bundle(bad.read_bytes(), rogue.verifier_key).ok  # self-consistent under its own key
    code, out = cli_verify(bad)
    assert code == 1 and "key change" in out and "ON FIRST USE" not in out, out
    code, out = cli_verify(bad, "--key", rogue.verifier_key.encode())
    assert code == 1 and "key change" in out, out
    evil.dispose()


def test_key_flag_keeps_the_saved_checkpoint_pin(
    log: Engine, settings: Settings, signer: AuditSigner, tmp_path: Path
) -> None:
    """The auditor verified once (saving the checkpoint); the operator then rewrites history
    in the database and re-signs it with the real key. --key does not drop the saved pin."""
    kf = key_file(tmp_path, signer)
    assert cli_verify(write(tmp_path, export_bytes(log, signer)), "--key", str(kf))[0] == 0
    assert (settings.home / "audit" / "checkpoint.note").is_file()

    other = make_engine(f"sqlite:///{tmp_path / 'rewritten.db'}")
    init_db(other)
    build(other, dataclasses.replace(signer, keys_dir=None), n=N + 3, tag="rewritten")
    data = export_bytes(other, signer)
    assert verify_bundle(data, signer.verifier_key).ok  # fine without the pin...
    code, out = cli_verify(write(tmp_path, data, "rw.jsonl"), "--key", str(kf))
    assert code == 1 and "fork" in out, out  # ...caught with it
    other.dispose()


def _resign(note: str, signer: AuditSigner, shift_ms: int) -> str:
    cp = open_checkpoint(note, signer.verifier_key)
    ts = (cp.timestamp_ms or 0) + shift_ms
    return signer.sign(Checkpoint(cp.origin, cp.tree_size, cp.root_hash, (f"timestamp {ts}",)))


@pytest.mark.parametrize(("skew_ms", "ok"), [(2_000, True), (60_000, True), (20 * 60_000, False)])
def test_clock_skew_between_hosts(
    log: Engine, signer: AuditSigner, tmp_path: Path, skew_ms: int, ok: bool
) -> None:
    """Odd sizes are signed by a host whose clock runs ahead: honest within the bound."""
    with session_scope(log) as s:
        for row in s.scalars(select(AuditCheckpoint)):
            if row.tree_size % 2:
                row.note = _resign(row.note, signer, skew_ms)
    bundle = write(tmp_path, export_bytes(log, signer))
    code, out = cli_verify(bundle, "--key", str(key_file(tmp_path, signer)))
    assert (code == 0) is ok, out
    if not ok:
        assert "was signed after one of size" in out


def test_verifier_module_refuses_to_run_without_a_key(log: Engine, signer: AuditSigner) -> None:
    report = verify_bundle(export_bytes(log, signer))
    assert not report.ok and "no trusted key" in report.errors[0]


def test_timestamps_in_entries_may_disagree(engine: Engine, settings: Settings, signer: AuditSigner) -> None:
    """Entries carry each host's own time; the log's order is the index, never the clock."""
    configure(engine, settings.keys_dir)
    with session_scope(engine) as s:
        record_events(s, [AuditEvent("a", "x", timestamp=datetime(2026, 1, 1, 0, 0, 5, tzinfo=UTC))])
    with session_scope(engine) as s:
        record_events(s, [AuditEvent("b", "x", timestamp=datetime(2026, 1, 1, 0, 0, 3, tzinfo=UTC))])
    assert verify_bundle(export_bytes(engine, signer), signer.verifier_key).ok
