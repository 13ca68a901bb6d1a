"""Round 12 of the audit tamper run: conformance with the C2SP texts the log claims to follow
(signed-note, tlog-checkpoint, tlog-cosignature, tlog-tiles, tlog-witness), each test naming
the rule it checks, and the tamper variants of this round.

Every test here failed before its fix (see docs/audit.md, "Round 12").
"""

from __future__ import annotations

import base64
import hashlib
import logging
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from tests.audit.test_server_guard import client  # noqa: F401 - `client` is a fixture
from tests.audit.test_witness import Served, append, make_witness, witnesses  # noqa: F401
from tre.audit.log import latest_checkpoint
from tre.audit.note import (
    SIG_PREFIX,
    Checkpoint,
    NoteError,
    VerifierKey,
    WitnessKey,
    cosign,
    cosignatures,
    cosigned_message,
    key_id,
    open_note,
    sign_checkpoint,
    split_note,
)
from tre.audit.signing import AuditSigner
from tre.audit.witness_server import Witness, WitnessError, create_witness_app, encode_request
from tre.audit.witnessing import ALERT, witness_latest
from tre.store.db import session_factory, session_scope

LEAF = hashlib.sha256(b"\x00x").digest()
OTHER_ROOT = hashlib.sha256(b"\x00y").digest()


def _cosigned_at_one(tmp_path: Path, signer: AuditSigner) -> tuple[Witness, str]:
    """A witness that has cosigned the log at size 1."""
    w = make_witness(tmp_path, "w.example", signer)
    note1 = signer.sign(Checkpoint(signer.name, 1, LEAF, ()))
    w.add_checkpoint(encode_request(0, [], note1))
    return w, note1


# --- C2SP tlog-witness ------------------------------------------------------------------------


def test_witness_409_content_type_is_exactly_text_x_tlog_size(signer: AuditSigner, tmp_path: Path) -> None:
    """tlog-witness: "The response MUST have a Content-Type of text/x.tlog.size". Go clients
    (transparency-dev) compare the header whole, so "; charset=utf-8" makes them miss the size."""
    w, note1 = _cosigned_at_one(tmp_path, signer)
    with TestClient(create_witness_app(w)) as c:
        r = c.post("/add-checkpoint", content=encode_request(0, [], note1))
    assert r.status_code == 409
    assert r.headers["content-type"] == "text/x.tlog.size"
    assert r.content == b"1\n"


def test_witness_old_size_beyond_the_checkpoint_is_400_not_409(signer: AuditSigner, tmp_path: Path) -> None:
    """tlog-witness: "The old size MUST be equal to or lower than the checkpoint size.
    Otherwise, the witness MUST respond with a 400": a malformed request, whatever the witness
    holds (it answered 409 when ``old`` also differed from its own size)."""
    w, _ = _cosigned_at_one(tmp_path, signer)
    note3 = signer.sign(Checkpoint(signer.name, 3, OTHER_ROOT, ()))
    for old in (5, 4):
        with pytest.raises(WitnessError) as err:
            w.add_checkpoint(encode_request(old, [], note3))
        assert err.value.status == 400, err.value.message


def test_witness_same_size_other_root_is_409(signer: AuditSigner, tmp_path: Path) -> None:
    """tlog-witness: "If the old size matches the checkpoint size, the witness MUST check that
    the root hashes are also identical. If they don't match, ... 409 Conflict" (it was 422)."""
    w, _ = _cosigned_at_one(tmp_path, signer)
    fork = signer.sign(Checkpoint(signer.name, 1, OTHER_ROOT, ()))
    with TestClient(create_witness_app(w)) as c:
        r = c.post("/add-checkpoint", content=encode_request(1, [], fork))
    assert r.status_code == 409, r.text
    # Not a size body: the log must not read it as "resync to size 1" and try again.
    assert r.headers["content-type"].startswith("text/plain")
    assert "root" in r.text
    # The witness still holds its first root.
    assert w.latest(signer.name).split("\n")[2] == base64.b64encode(LEAF).decode()


def test_witness_proof_lines_are_canonical_base64(signer: AuditSigner, tmp_path: Path) -> None:
    """One spelling per hash, as everywhere else in the formats."""
    w, _ = _cosigned_at_one(tmp_path, signer)
    note2 = signer.sign(Checkpoint(signer.name, 2, OTHER_ROOT, ()))
    good = base64.b64encode(LEAF).decode()
    respelled = good[:-2] + chr(ord(good[-2]) + 1) + "="  # same bytes, unused bits set
    assert base64.b64decode(respelled) == base64.b64decode(good)
    body = f"old 1\n{respelled}\n\n{note2}".encode()
    with pytest.raises(WitnessError) as err:
        w.add_checkpoint(body)
    assert err.value.status == 400


# --- C2SP tlog-cosignature ---------------------------------------------------------------------


def test_cosignature_timestamp_beyond_2_63_is_refused() -> None:
    """tlog-cosignature: the timestamp "MUST NOT exceed 2^63 - 1". A witness key that signs a
    larger one (a broken clock, a hostile witness) must not count toward a quorum."""
    priv = Ed25519PrivateKey.generate()
    key = WitnessKey("w.example", priv.public_key().public_bytes_raw())
    body = "example.org/log\n1\n" + base64.b64encode(LEAF).decode() + "\n"
    for t in (2**63, 2**64 - 1):
        sig = priv.sign(cosigned_message(body, t))
        blob = key.key_id + t.to_bytes(8, "big") + sig
        assert key.verify(body, blob[4:]) is None
        note = body + "\n" + f"{SIG_PREFIX}w.example {base64.b64encode(blob).decode()}\n"
        assert cosignatures(note, [key]) == {}
        with pytest.raises(ValueError):
            cosign(body, "w.example", priv, t)
    assert key.verify(body, base64.b64decode(cosign(body, "w.example", priv, 2**63 - 1).split(" ")[-1])[4:])


# --- C2SP signed-note --------------------------------------------------------------------------


def _note_and_key() -> tuple[str, VerifierKey]:
    priv = Ed25519PrivateKey.generate()
    key = VerifierKey("example.org/log", priv.public_key().public_bytes_raw())
    return sign_checkpoint(Checkpoint("example.org/log", 5, LEAF, ()), key.name, priv), key


@pytest.mark.parametrize("name", ["", "exa\u00a0mple", "exa\u2003mple", "a+b", "a\u3000b"])
def test_signature_line_with_an_invalid_key_name_is_a_malformed_note(name: str) -> None:
    """signed-note: key names "MUST be non-empty and MUST NOT contain any Unicode spaces or
    plus"; a signature line naming one is malformed (Go's note.Open refuses the note), not an
    unknown key to skip."""
    note, key = _note_and_key()
    blob = base64.b64encode(b"\x01\x02\x03\x04" + b"\x00" * 64).decode()
    bad = note + f"{SIG_PREFIX}{name} {blob}\n"
    with pytest.raises(NoteError, match="key name"):
        split_note(bad)
    with pytest.raises(NoteError):
        open_note(bad, key)
    assert open_note(note, key)  # the note itself is fine


@pytest.mark.parametrize("mangle", [" ", "0x", "+"])
def test_verifier_key_id_is_eight_hex_digits(mangle: str) -> None:
    """signed-note vkey: ``<name>+<hex key ID>+<base64 key>``, the key ID a uint32 in hex;
    ``bytes.fromhex`` also took spaces between the digits, giving one key many spellings."""
    _, key = _note_and_key()
    name, hex_id, blob = key.encode().split("+", 2)
    assert VerifierKey.parse(f"{name}+{hex_id.upper()}+{blob}") == key  # as Go's ParseUint
    spelled = {" ": f"{hex_id[:2]} {hex_id[2:]}", "0x": "0x" + hex_id, "+": hex_id[:6]}[mangle]
    with pytest.raises(NoteError):
        VerifierKey.parse(f"{name}+{spelled}+{blob}")


def test_key_id_is_the_hash_of_name_newline_type_and_key() -> None:
    """signed-note: key ID = SHA-256(name || 0x0A || type || key)[:4]; 0x01 Ed25519 notes,
    0x04 cosignature/v1 (the same key under both types has two IDs)."""
    pub = bytes(range(32))
    assert key_id("n", pub) == hashlib.sha256(b"n\n\x01" + pub).digest()[:4]
    assert key_id("n", pub, 0x04) == hashlib.sha256(b"n\n\x04" + pub).digest()[:4]
    assert VerifierKey("n", pub).encode().split("+")[2] == base64.b64encode(b"\x01" + pub).decode()
    assert WitnessKey("n", pub).encode().split("+")[2] == base64.b64encode(b"\x04" + pub).decode()


def test_a_note_accepts_sixteen_signatures() -> None:
    """signed-note: verifiers "MUST accept at least up to 16 signatures"."""
    note, key = _note_and_key()
    for i in range(15):
        other = Ed25519PrivateKey.generate()
        sig = other.sign(split_note(note)[0].encode())
        kid = key_id(f"w{i}.example", other.public_key().public_bytes_raw())
        note += f"{SIG_PREFIX}w{i}.example {base64.b64encode(kid + sig).decode()}\n"
    assert len(split_note(note)[1]) == 16
    assert open_note(note, key)


# --- C2SP tlog-tiles ---------------------------------------------------------------------------


@pytest.mark.parametrize("level", ["00", "+0", "0.0", "0_0", " 0", "064", "64"])
def test_tile_level_has_one_spelling(
    client: tuple[TestClient, dict[str, str]],  # noqa: F811
    level: str,
) -> None:
    """tlog-tiles: ``<L>`` "MUST be a decimal ASCII integer between 0 and 63, with no
    additional leading zeroes"; the route parsed it as a Python int ("00", "+0", "0_0" were
    level 0), so one tile had many URLs and a cache kept copies under each."""
    c, h = client
    r = c.get(f"/api/v1/audit/tlog/tile/{level}/000.p/3", headers=h)
    assert r.status_code == 404, (level, r.status_code, r.text[:200])
    assert r.json()["type"] == "urn:tre:problem:audit-tile-not-found"
    assert c.get("/api/v1/audit/tlog/tile/0/000.p/3", headers=h).status_code == 200


def test_tiles_content_types_and_caching(client: tuple[TestClient, dict[str, str]]) -> None:  # noqa: F811
    """tlog-tiles: checkpoint as ``text/plain; charset=utf-8``, not cached beyond seconds;
    tiles (full and partial: a ``.p/W`` tile never changes either) ``application/octet-stream``
    with long-lived caching."""
    c, h = client
    cp = c.get("/api/v1/audit/tlog/checkpoint", headers=h)
    assert cp.headers["content-type"] == "text/plain; charset=utf-8"
    assert "no-store" in cp.headers["cache-control"]
    for path in ("0/000.p/3", "entries/000.p/3", "0/000.p/1"):
        r = c.get(f"/api/v1/audit/tlog/tile/{path}", headers=h)
        assert r.status_code == 200, path
        assert r.headers["content-type"] == "application/octet-stream"
        assert "immutable" in r.headers.get("cache-control", ""), path
        assert "private" in r.headers["cache-control"]  # an authenticated answer


def test_the_log_reads_a_409_fork_answer_as_a_refusal_not_a_resync(
    log_engine: Engine,
    signer: AuditSigner,
    witnesses: tuple[Served, Served, WitnessKey],  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A witness holding another root at the log's size answers 409 with a reason: the log
    must raise the fork alarm, not take the answer for a size and loop."""
    a, _, _ = witnesses
    append(log_engine, 3)
    witness_latest(session_factory(log_engine), signer, timeout_s=2)
    append(log_engine, 1)
    with session_scope(log_engine) as s:
        size = latest_checkpoint(s).tree_size  # type: ignore[union-attr]
    # What witness a saw at this size (another tree shown to it: a split view).
    a.witness._state[signer.name] = {"size": size, "root": OTHER_ROOT.hex(), "note": ""}
    with caplog.at_level(logging.CRITICAL, logger=ALERT.name):
        outcomes = {o.witness: o for o in witness_latest(session_factory(log_engine), signer, timeout_s=2)}
    got = outcomes[a.witness.name]
    assert got.status == "refused" and "root" in got.detail, got
    assert any("forked" in r.getMessage() for r in caplog.records)
    assert outcomes[witnesses[1].witness.name].status == "cosigned"
