"""Tamper round 16: the audit tables through Alembic, an auditor who keeps state between runs
shown two histories, and an auditor's state of another deployment.

Each test says which command catches the variant and whether it did before this round
(docs/audit.md, *Tests*). The spool's variants are in ``test_tamper_round16_spool.py``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from alembic import command
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from tests.audit.conftest import export_bytes
from tests.audit.test_cli import seed
from tests.audit.test_tamper_round10 import _cli
from tests.audit.test_tamper_round15 import (
    _KEYS,
    _bodies,
    _header,
    _join,
    _lines,
    _relinked,
    _sign,
    _write_tree,
)
from tests.conftest import seed_sqlite
from tre.audit import configure, refusal_spool
from tre.audit.check import check_log
from tre.audit.guard import AuditLogDamaged
from tre.audit.log import AuditEvent
from tre.audit.merkle import TreeLevels, leaf_hash
from tre.audit.note import TIMESTAMP_EXT, Checkpoint, VerifierKey, add_signature_lines, cosign, split_note
from tre.audit.signing import AuditSigner
from tre.audit.verify import verify_bundle
from tre.config import Settings
from tre.store.db import alembic_config, init_db, make_engine, session_scope
from tre.store.models import AuditEntry

BEFORE_SPOOL_TABLE = "0017_tamper15_node_cp_root"


def test_audit_tables_downgraded_and_upgraded_empty_are_refused(
    engine_any: Engine, settings: Settings, signer: AuditSigner
) -> None:
    """``alembic downgrade base`` then ``upgrade head``: the audit tables come back empty.
    The checkpoint kept beside the key says the log held 5 entries: nothing is signed on the
    empty tree (appends fail closed) and `tre audit check` names the lost entries. Held."""
    configure(engine_any, settings.keys_dir)
    seed(engine_any, 5)
    cfg = alembic_config(engine_any)
    command.downgrade(cfg, "base")
    init_db(engine_any)  # what every start does: upgrade to head
    with pytest.raises(AuditLogDamaged):
        seed(engine_any, 1)
    with session_scope(engine_any) as s:
        problems = check_log(s, signer)[1]
    assert any("do not contain the last signed checkpoint" in p for p in problems), problems


def test_a_spool_batch_written_again_after_the_spool_table_was_emptied_is_named(
    engine: Engine, settings: Settings, signer: AuditSigner
) -> None:
    """The table that remembers written spool batches dropped (``downgrade`` past 0018 and
    ``upgrade`` again, or its rows deleted) and a batch put back in the spool: the server
    cannot tell, so it writes the batch again; but each entry names its batch, and `tre audit
    check` names the second copy. Was: the copy was written as a new refusal and `check` said
    intact (the entries did not name their batch)."""
    from tre.api.app import create_app

    configure(engine, settings.keys_dir)
    seed(engine, 2)
    event = AuditEvent("alice", "auth.refused", details={"status": 403, "route": "/api/v1/audit/export"})
    path = refusal_spool.keep(settings.home, [event])
    copy = path.read_bytes()
    with TestClient(create_app(settings, engine)):
        pass
    cfg = alembic_config(engine)
    command.downgrade(cfg, BEFORE_SPOOL_TABLE)
    init_db(engine)
    path.write_bytes(copy)
    with TestClient(create_app(settings, engine)):
        pass
    with session_scope(engine) as s:
        refused = [r.idx for r in s.scalars(select(AuditEntry).where(AuditEntry.action == "auth.refused"))]
        problems = check_log(s, signer)[1]
    assert len(refused) == 2
    assert problems == [
        f"entry {refused[1]}: the same spooled refusal as entry {refused[0]} (a batch of the refusal "
        "spool written twice: put back in the spool)"
    ]


def _fork_of(real: bytes, signer: AuditSigner) -> bytes:
    """Another history of the same size, signed with the real key (its holder equivocates)."""
    n = _header(real)["tree_size"]
    bodies = [x.decode() for x in _lines(real)[1 : n + 1]]
    other = _relinked([bodies[0], bodies[2], bodies[1], *bodies[3:]])
    note = signer.sign(
        Checkpoint(
            signer.name,
            n,
            TreeLevels([leaf_hash(b.encode()) for b in other]).root(),
            (f"{TIMESTAMP_EXT} {int(time.time() * 1000)}",),
        )
    )
    head = {**_header(real), "checkpoints": 1}
    return _join(
        [json.dumps(head).encode(), *(b.encode() for b in other), json.dumps({"checkpoint": note}).encode()]
    )


@pytest.mark.parametrize("first", ["real", "fork"])
def test_two_histories_of_one_size_to_an_auditor_who_keeps_state_between_runs(
    engine: Engine, settings: Settings, signer: AuditSigner, tmp_path: Path, first: str
) -> None:
    """Equivocation over time: one auditor (one ``TRE_HOME``) verifies one bundle, later
    another of the same size and another root, both signed with the real key. The checkpoint
    `tre audit verify` saved after the first run makes the second a FORK, in either order.
    Held."""
    configure(engine, settings.keys_dir)
    seed(engine, 4)
    real = export_bytes(engine, signer)
    bundles = {"real": real, "fork": _fork_of(real, signer)}
    second = "fork" if first == "real" else "real"
    for name, data in bundles.items():
        (tmp_path / name).write_bytes(data)
    key = signer.verifier_key.encode()
    code, out, _ = _cli("verify", str(tmp_path / first), "--key", key)
    assert code == 0, out
    code, out, _ = _cli("verify", str(tmp_path / second))
    assert code == 1 and "fork" in out.lower(), out
    assert len(out.strip().splitlines()) <= 3, out


def test_an_auditors_state_of_another_deployment_refuses_the_bundle(
    engine: Engine, settings: Settings, signer: AuditSigner
) -> None:
    """``TRE_HOME`` pointing at the state an auditor keeps for another deployment (its pinned
    key of another origin): the bundle fails as a key change, in one line, and the pins stay
    as they were. Held."""
    configure(engine, settings.keys_dir)
    seed(engine, 3)
    bundle = settings.home / "b.jsonl"
    bundle.write_bytes(export_bytes(engine, signer))
    raw = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    other = VerifierKey("tre.audit/00112233445566aa", raw)
    state = settings.home / "audit"
    state.mkdir(parents=True, exist_ok=True)
    (state / "log.vkey").write_text(other.encode() + "\n")
    code, out, _ = _cli("verify", str(bundle))
    assert code == 1 and "key change" in out.lower(), out
    assert (state / "log.vkey").read_text().strip() == other.encode()


def test_a_rewrite_signed_and_cosigned_with_a_witness_key_is_refused(
    engine_any: Engine, settings: Settings, signer: AuditSigner
) -> None:
    """Someone holding a witness's key (not the log's): entry 1 deleted, the chain re-linked,
    the checkpoint signed with the witness's key under the log's name and cosigned by the
    witness. The server signs nothing on it (appends fail closed), `tre audit check` names
    it, and the bundle holds no checkpoint the log's key signed. Held."""
    configure(engine_any, settings.keys_dir)
    seed(engine_any, 4)
    real = export_bytes(engine_any, signer)
    witness = Ed25519PrivateKey.generate()
    bodies = _relinked([b for i, b in enumerate(_bodies(engine_any)) if i != 1])
    note = _sign(signer.name, witness, bodies, int(time.time() * 1000))
    signed = note
    note = add_signature_lines(note, [cosign(split_note(note)[0], "w.example", witness, int(time.time()))])
    _KEYS[note] = _KEYS[signed]
    _write_tree(engine_any, bodies, note)
    with pytest.raises(AuditLogDamaged):
        seed(engine_any, 1)
    with session_scope(engine_any) as s:
        assert check_log(s, signer)[1]
    forged = _join(
        [
            json.dumps({**_header(real), "tree_size": 3, "checkpoints": 1}).encode(),
            *(b.encode() for b in bodies),
            json.dumps({"checkpoint": note}).encode(),
        ]
    )
    report = verify_bundle(forged, signer.verifier_key)
    assert not report.ok and "no valid signed checkpoint" in " ".join(report.errors), report.errors


def test_keys_of_one_deployment_on_the_database_of_another_sign_nothing(
    engine: Engine, settings: Settings, signer: AuditSigner, tmp_path: Path, migrated_sqlite: Path
) -> None:
    """A server of deployment A started against deployment B's database (a wrong
    ``TRE_DATABASE_URL``, a restored copy): B's tree does not extend the checkpoint kept beside
    A's key and B's checkpoints are not signed by A's keys, so appends fail closed and `tre
    audit check` names it; nothing of B is signed under A's identity. Held."""
    configure(engine, settings.keys_dir)
    seed(engine, 3)
    url = f"sqlite:///{tmp_path / 'b.db'}"
    seed_sqlite(url, migrated_sqlite)
    other = make_engine(url)
    try:
        b_keys = tmp_path / "b-keys"
        b_keys.mkdir(mode=0o700)
        configure(other, b_keys)
        seed(other, 5)
        configure(other, settings.keys_dir)  # A's keys, B's database
        with pytest.raises(AuditLogDamaged):
            seed(other, 1)
        with session_scope(other) as s:
            assert check_log(s, signer)[1]
    finally:
        other.dispose()


ENCODINGS = ["utf-16-le", "utf-16-be", "utf-16", "utf-32-le", "utf-32-be"]


@pytest.mark.parametrize("line", ["header", "checkpoint"])
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_bundle_line_in_another_encoding_fails(
    engine: Engine, settings: Settings, signer: AuditSigner, line: str, encoding: str
) -> None:
    """The header or a checkpoint line re-encoded (UTF-16, UTF-32, with or without a BOM):
    ``json.loads`` guesses the encoding of bytes, so each verified (10 variants failed before),
    though a bundle has one spelling, the server's UTF-8. Now each fails, saying why."""
    configure(engine, settings.keys_dir)
    seed(engine, 3)
    lines = _lines(export_bytes(engine, signer))
    at = 0 if line == "header" else len(lines) - 1
    lines[at] = lines[at].decode().encode(encoding)
    report = verify_bundle(_join(lines), signer.verifier_key)
    assert not report.ok
    said = " ".join(report.errors).lower()
    assert ("header" in said or "utf-8" in said) if line == "header" else "checkpoint line" in said, said


@pytest.mark.parametrize("how", ["gzip", "utf-16", "utf-32"])
def test_a_whole_bundle_compressed_or_re_encoded_is_named(
    engine: Engine, settings: Settings, signer: AuditSigner, tmp_path: Path, how: str
) -> None:
    """Was refused, but as "line 2 holds a carriage return" (gzip) or "bad checkpoint line"
    (UTF-16): misleading. Now named, in one line."""
    import gzip

    configure(engine, settings.keys_dir)
    seed(engine, 3)
    real = export_bytes(engine, signer)
    data = gzip.compress(real) if how == "gzip" else real.decode().encode(how)
    (tmp_path / "b").write_bytes(data)
    code, out, _ = _cli("verify", str(tmp_path / "b"), "--key", signer.verifier_key.encode(), "--no-pinned")
    assert code == 1 and ("gzip" if how == "gzip" else "not utf-8") in out.lower(), out
    assert len(out.strip().splitlines()) <= 2, out
