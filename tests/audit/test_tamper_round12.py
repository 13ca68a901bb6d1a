"""Round 12 of the audit tamper run: conformance with the C2SP texts the log claims to follow
(signed-note, tlog-checkpoint, tlog-cosignature, tlog-tiles, tlog-witness), each test naming
the rule it checks, and the tamper variants of this round.

Every test here failed before its fix (see docs/audit.md, "Round 12").
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, delete, func, select
from typer.testing import CliRunner

from tests.audit.conftest import export_bytes
from tests.audit.test_cli import live, seed  # noqa: F401 - `live` is a fixture
from tests.audit.test_server_guard import N, append_one, client, count_checkpoints, log, rebuild_state  # noqa: F401
from tests.audit.test_tamper_round10 import forge_tail
from tests.audit.test_witness import Served, append, make_witness, witnesses  # noqa: F401
from tests.ports import free_port
from tre.audit import AuditEvent, checkpoint, record_events
from tre.audit.check import check_log
from tre.audit.guard import AuditLogDamaged
from tre.audit.log import latest_checkpoint
from tre.audit.merkle import leaf_hash
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
    open_checkpoint,
    open_note,
    sign_checkpoint,
    split_note,
)
from tre.audit.signing import (
    HISTORY_FILE,
    KEY_FILE,
    ORIGIN_FILE,
    PREVIOUS_KEY_FILE,
    ROTATION_FILE,
    AuditSigner,
    configure,
)
from tre.audit.tile_verify import TileError, verify_tiles
from tre.audit.verify import verify_bundle
from tre.audit.witness_server import Witness, WitnessError, create_witness_app, encode_request
from tre.audit.witnessing import ALERT, witness_latest
from tre.cli.audit import app as audit_app
from tre.cli.client import CliError
from tre.config import Settings
from tre.store.db import session_factory, session_scope
from tre.store.models import AuditCheckpoint, AuditEntry

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


# --- A tile mirror that lies: every byte it serves is checked against the signed root ---------

MIRRORED = 300  # with the auditor token's first use: a full level-0 tile, a partial one, level 1


@pytest.fixture
def mirror(
    app: FastAPI,
    engine: Engine,
    settings: Settings,
    make_user: Callable[..., object],
    token_for: Callable[..., str],
) -> Iterator[tuple[Callable[[str], bytes], str]]:
    """The real server's tiles (fetch by path under ``tlog/``) and its newest checkpoint."""
    configure(engine, settings.keys_dir)
    with session_scope(engine) as s:
        make_user(s, "audrey", "auditor")
    for start in range(0, MIRRORED, 100):
        with session_scope(engine) as s:
            record_events(
                s,
                [AuditEvent(f"u{i % 5}", "dataset.read", dataset_id="d1") for i in range(start, start + 100)],
            )
    with TestClient(app) as c:
        h = {"Authorization": f"Bearer {token_for('audrey', 'auditor')}"}

        def fetch(path: str) -> bytes:
            r = c.get(f"/api/v1/audit/tlog/{path}", headers=h)
            assert r.status_code == 200, (path, r.text[:200])
            return r.content

        yield fetch, fetch("checkpoint").decode()


def _lying(
    fetch: Callable[[str], bytes], path: str, change: Callable[[bytes], bytes]
) -> Callable[[str], bytes]:
    return lambda p: change(fetch(p)) if p == path else fetch(p)


def _entries(data: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(data):
        n = int.from_bytes(data[pos : pos + 2], "big")
        out.append(data[pos + 2 : pos + 2 + n])
        pos += 2 + n
    return out


def _bundle(entries: list[bytes]) -> bytes:
    return b"".join(len(e).to_bytes(2, "big") + e for e in entries)


def test_an_honest_mirror_reproduces_the_signed_root(
    mirror: tuple[Callable[[str], bytes], str], signer: AuditSigner
) -> None:
    fetch, note = mirror
    got = verify_tiles(fetch, note, [signer.verifier_key], signer.name)
    assert got.checkpoint.tree_size == MIRRORED + 1 == len(got.entries)
    assert [leaf_hash(e) for e in got.entries] == list(got.tree.levels[0])


def _edit_entry(data: bytes) -> bytes:
    es = _entries(data)
    es[3] = es[3].replace(b"dataset.read", b"dataset.READ")
    return _bundle(es)


def _swap_entries(data: bytes) -> bytes:
    es = _entries(data)
    es[1], es[2] = es[2], es[1]
    return _bundle(es)


def _swap_hashes(data: bytes) -> bytes:
    return data[:32] + data[64:96] + data[32:64] + data[96:]


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"tile/entries/000": _edit_entry}, "does not hash to its level-0 tile hash"),
        ({"tile/entries/000": _swap_entries}, "does not hash"),
        # Reordered consistently in both: each entry hashes to its place, the root breaks.
        ({"tile/entries/000": _swap_entries, "tile/0/000": _swap_hashes}, "do not reproduce the signed root"),
        ({"tile/entries/001.p/45": lambda d: _bundle(_entries(d)[:-1])}, "exactly 45 entries"),
        ({"tile/entries/001.p/45": lambda d: d + b"\x00\x01A"}, "exactly 45 entries"),
        ({"tile/entries/001.p/45": lambda d: d[:-1]}, "ends inside entry"),
        ({"tile/0/001.p/45": lambda d: d[:-32]}, "not 45 hashes"),
        ({"tile/0/001.p/45": lambda d: d + bytes(32)}, "not 45 hashes"),
        ({"tile/1/000.p/1": lambda d: bytes(32)}, "tile 1/000.p/1 does not match"),
    ],
)
def test_a_lying_mirror_is_named(
    mirror: tuple[Callable[[str], bytes], str],
    signer: AuditSigner,
    changes: dict[str, Callable[[bytes], bytes]],
    reason: str,
) -> None:
    fetch, note = mirror
    for path, change in changes.items():
        fetch = _lying(fetch, path, change)
    with pytest.raises(TileError, match=reason):
        verify_tiles(fetch, note, [signer.verifier_key], signer.name)


def test_a_mirror_replaying_an_old_checkpoint_or_a_fork_is_refused(
    mirror: tuple[Callable[[str], bytes], str], signer: AuditSigner, engine: Engine
) -> None:
    fetch, note = mirror
    keys = [signer.verifier_key]
    newest = open_checkpoint(note, signer.verifier_key)
    with session_scope(engine) as s:
        record_events(s, [AuditEvent("u1", "dataset.read", dataset_id="d1")])
        later = checkpoint(s, signer=signer)
    assert later.tree_size > newest.tree_size
    # The mirror still serves the older (genuinely signed) checkpoint and its tiles.
    with pytest.raises(TileError, match="old checkpoint replayed"):
        verify_tiles(
            fetch, note, keys, signer.name, earlier=[open_checkpoint(later.note, signer.verifier_key)]
        )
    # A checkpoint someone else saw, signed by the real key over another tree: a fork.
    forked = open_checkpoint(signer.sign(Checkpoint(signer.name, 7, OTHER_ROOT, ())), signer.verifier_key)
    with pytest.raises(TileError, match="FORK"):
        verify_tiles(fetch, note, keys, signer.name, earlier=[forked])
    # A checkpoint under another key is not the log's.
    stranger = Ed25519PrivateKey.generate()
    alien = sign_checkpoint(newest, signer.name, stranger)
    with pytest.raises(TileError, match="does not verify"):
        verify_tiles(fetch, alien, keys, signer.name)
    ok = verify_tiles(fetch, note, keys, signer.name, earlier=[open_checkpoint(note, signer.verifier_key)])
    assert ok.checkpoint.tree_size == newest.tree_size


class _Mirror:
    """A static tiles mirror on a real port (stdlib HTTP server), serving what it was given."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        files_ = files

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                body = files_.get(self.path.removeprefix("/log/"))
                self.send_response(200 if body is not None else 404)
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *_: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/log"

    def stop(self) -> None:
        self.server.shutdown()


def _copy_of_the_server(base: str, paths: list[str]) -> dict[str, bytes]:
    token = os.environ["TRE_TOKEN"]
    with httpx.Client(
        base_url=f"{base}/api/v1/audit/tlog/", headers={"Authorization": f"Bearer {token}"}
    ) as c:
        return {p: c.get(p).raise_for_status().content for p in paths}


def test_tre_audit_tiles_checks_the_server_and_a_mirror(
    live: str,  # noqa: F811
    engine: Engine,
) -> None:
    runner = CliRunner()
    assert runner.invoke(audit_app, ["checkpoint"]).exit_code == 0  # pins key and checkpoint
    ok = runner.invoke(audit_app, ["tiles"])
    assert ok.exit_code == 0 and "tiles OK: 7 entries" in ok.output, ok.output
    # Reading the entry bundles is itself recorded (round 16): the log has grown since, so the
    # mirror copies the checkpoint first and the tiles of its size.
    note = _copy_of_the_server(live, ["checkpoint"])["checkpoint"]
    n = int(note.decode().split("\n")[1])
    files = _copy_of_the_server(live, [f"tile/0/000.p/{n}", f"tile/entries/000.p/{n}"])
    files["checkpoint"] = note
    honest = _Mirror(dict(files))
    lying = _Mirror({**files, f"tile/entries/000.p/{n}": _edit_entry(files[f"tile/entries/000.p/{n}"])})
    try:
        res = runner.invoke(audit_app, ["tiles", "--mirror", honest.url, "--json"])
        assert res.exit_code == 0 and json.loads(res.output)["tree_size"] == n > 7, res.output
        res = runner.invoke(audit_app, ["tiles", "--mirror", lying.url])
        assert res.exit_code == 1 and isinstance(res.exception, CliError), res.output
        assert f"entry 3 in bundle 000.p/{n} does not hash" in str(res.exception)
        # The log grows and the auditor pins the new checkpoint; the honest mirror is now a
        # stale copy serving an old, genuinely signed checkpoint: refused as a replay.
        seed(engine, 2)
        assert runner.invoke(audit_app, ["checkpoint"]).exit_code == 0
        res = runner.invoke(audit_app, ["tiles", "--mirror", honest.url])
        assert res.exit_code == 1 and "old checkpoint replayed" in str(res.exception), res.output
        res = runner.invoke(audit_app, ["tiles", "--mirror", "ftp://x"])
        assert res.exit_code == 1 and "http(s)" in str(res.exception)
        # Newcomer round 21: a mirror nobody answers at is named, and no verdict is given.
        nowhere = f"http://127.0.0.1:{free_port()}/log"
        res = runner.invoke(audit_app, ["tiles", "--mirror", nowhere])
        said = str(res.exception)
        assert res.exit_code == 1 and f"could not be reached at {nowhere}/checkpoint" in said, said
        assert said.endswith("check the --mirror address; the log was not checked") and "TILES" not in said
    finally:
        honest.stop()
        lying.stop()


# --- A corrupted key file, key history or origin file --------------------------------------


def _rsa_pem() -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.mark.parametrize(
    ("file", "content"),
    [
        (KEY_FILE, b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
        (KEY_FILE, b""),
        (KEY_FILE, "rsa"),
        (HISTORY_FILE, b"{not json\n"),
        (HISTORY_FILE, b'{"no": "transition"}\n'),
        (ORIGIN_FILE, b"\n"),
        (ORIGIN_FILE, b"two words\n"),
        (ROTATION_FILE, b"[]"),
        (KEY_FILE, "world-readable"),
    ],
)
def test_a_corrupted_key_file_is_a_503_problem_and_signs_nothing(
    client: tuple[TestClient, dict[str, str]],  # noqa: F811
    settings: Settings,
    engine: Engine,
    file: str,
    content: bytes | str,
) -> None:
    """Each of the log's key files damaged (bit rot, a bad restore, an edit): every audit
    endpoint answers the documented 503 problem naming the file, never a 500 or a traceback,
    and no entry is appended or checkpoint signed with anything else."""
    c, h = client
    path = settings.keys_dir / file
    with session_scope(engine) as s:
        before = (
            s.scalar(select(func.count(AuditEntry.idx))),
            s.scalar(select(func.count(AuditCheckpoint.id))),
        )
    if content == "rsa":
        path.write_bytes(_rsa_pem())
    elif content == "world-readable":
        path.chmod(0o644)
    else:
        assert isinstance(content, bytes)
        if file == ROTATION_FILE:  # a rotation file only counts beside a previous key
            (settings.keys_dir / PREVIOUS_KEY_FILE).write_bytes((settings.keys_dir / KEY_FILE).read_bytes())
            (settings.keys_dir / PREVIOUS_KEY_FILE).chmod(0o600)
        path.write_bytes(content)
    for url in ("/api/v1/audit/checkpoint", "/api/v1/audit/public-key", "/api/v1/audit/tlog/checkpoint"):
        r = c.get(url, headers=h)
        assert r.status_code == 503, (url, r.status_code, r.text[:300])
        problem = r.json()
        assert problem["type"] == "urn:tre:problem:audit-key-unavailable"
        assert file in problem["detail"] and "Traceback" not in problem["detail"]
    with session_scope(engine) as s:
        after = (
            s.scalar(select(func.count(AuditEntry.idx))),
            s.scalar(select(func.count(AuditCheckpoint.id))),
        )
    assert after == before


# --- Role limits on every audit endpoint, enumerated from the app (new routes included) --------

ADMIN_MAY_READ = {
    "/api/v1/audit/public-key",
    "/api/v1/audit/checkpoint",
    "/api/v1/audit/tlog/checkpoint",
    "/api/v1/audit/tlog/tile/{level}/{path:path}",  # hashes only, no entry
}
EXAMPLE = {
    "/api/v1/audit/entries/{idx}": "/api/v1/audit/entries/0",
    "/api/v1/audit/proof/inclusion": "/api/v1/audit/proof/inclusion?index=0&tree_size=1",
    "/api/v1/audit/proof/consistency": "/api/v1/audit/proof/consistency?first=1&second=2",
    "/api/v1/audit/tlog/tile/entries/{path:path}": "/api/v1/audit/tlog/tile/entries/000.p/1",
    "/api/v1/audit/tlog/tile/{level}/{path:path}": "/api/v1/audit/tlog/tile/0/000.p/1",
}


def test_every_audit_endpoint_is_auditor_only_but_the_documented_few(
    client: tuple[TestClient, dict[str, str]],  # noqa: F811
    token_for: Callable[..., str],
    make_user: Callable[..., object],
    engine: Engine,
    settings: Settings,
) -> None:
    """Deny by default, checked on the routes the app really has (a new audit route that
    forgets its role check fails here): no token 401; researcher and dac 403 problems; admin
    only the key, checkpoints and hash tiles; no answer to anyone carries a private key."""
    from tre.store.models import Role

    api_client, auditor = client
    with session_scope(engine) as s:
        for role in Role:
            make_user(s, f"u-{role.value}", role.value)
    from tre.audit.api import router

    routes = [r for r in router.routes if getattr(r, "path", "").startswith("/api/v1/audit")]
    assert len(routes) >= 10
    private = (settings.keys_dir / KEY_FILE).read_text()
    for route in routes:
        path = str(getattr(route, "path", ""))
        url = EXAMPLE.get(path, path)
        assert "{" not in url, f"add an example URL for the new audit route {path}"
        for method in sorted(set(getattr(route, "methods", ())) - {"HEAD"}):
            assert method == "GET", f"{path} accepts {method}: the audit API is read-only"
        assert api_client.get(url).status_code == 401, url
        for role in Role:
            r = api_client.get(
                url, headers={"Authorization": f"Bearer {token_for(f'u-{role.value}', role.value)}"}
            )
            allowed = role is Role.auditor or (role is Role.admin and path in ADMIN_MAY_READ)
            if allowed:
                assert r.status_code == 200, (url, role, r.status_code, r.text[:200])
            else:
                assert r.status_code == 403, (url, role, r.status_code)
                assert r.headers["content-type"] == "application/problem+json"
            assert "PRIVATE KEY" not in r.text and private.splitlines()[1] not in r.text, (url, role)
        for verb in ("post", "put", "delete", "patch"):
            assert getattr(api_client, verb)(url, headers=auditor).status_code in (401, 403, 405), (verb, url)


# --- The database rewritten behind the log's back (SQLite and PostgreSQL) ----------------------


def _drop_tail(engine: Engine, count: int) -> int:
    """Delete the last ``count`` entries and every checkpoint beyond what is left."""
    with session_scope(engine) as s:
        size = int(s.scalar(select(func.count(AuditEntry.idx))) or 0) - count
        s.execute(delete(AuditEntry).where(AuditEntry.idx >= size))
        s.execute(delete(AuditCheckpoint).where(AuditCheckpoint.tree_size > size))
    rebuild_state(engine)
    return size


@pytest.mark.parametrize("count", [1, 2])
def test_truncated_and_regrown_to_the_same_size_is_never_signed(
    log: Engine,  # noqa: F811
    signer: AuditSigner,
    count: int,
) -> None:
    """An insider without the key drops the last entries (and the checkpoints over them) and
    writes as many others in their place: the same size, another content. The checkpoint kept
    beside the key still names the old tree: nothing is signed on top, `tre audit check` and
    the exported bundle show the signed history only."""
    before = N
    kept = _drop_tail(log, count)
    forge_tail(log, count)
    with session_scope(log) as s:
        assert int(s.scalar(select(func.count(AuditEntry.idx))) or 0) == before
    n_cp = count_checkpoints(log)
    with pytest.raises(AuditLogDamaged):
        append_one(log)
    with pytest.raises(AuditLogDamaged), session_scope(log) as s:
        checkpoint(s)
    assert count_checkpoints(log) == n_cp
    with session_scope(log) as s:
        _, problems = check_log(s, signer)
    assert problems, "check_log called a regrown log intact"
    report = verify_bundle(export_bytes(log, signer), signer.verifier_key)
    assert report.tree_size <= kept or not report.ok, (report.tree_size, report.errors)


def test_an_entry_edited_by_another_connection_mid_append_is_caught(
    log: Engine,  # noqa: F811
    signer: AuditSigner,
) -> None:
    """A second connection rewrites entry 2's body (leaf hash recomputed) while an append holds
    its transaction open. SQLite serialises writers (the edit waits, then fails or follows);
    PostgreSQL lets it commit first: the append then signs its frontier, which never re-reads
    entry 2, so the edited row no longer matches the signed tree and is named."""
    from sqlalchemy.exc import OperationalError

    appending = session_factory(log)()
    edited = False
    try:
        record_events(appending, [AuditEvent("alice", "dataset.read", dataset_id="d1")])
        appending.flush()
        try:
            with session_scope(log) as other:
                row = other.get(AuditEntry, 2)
                assert row is not None
                body = row.body.replace('"actor":"u2"', '"actor":"mallory"')
                assert body != row.body
                row.body, row.leaf_hash = body, leaf_hash(body.encode())
            edited = True
        except OperationalError:  # SQLite: the database is locked by the append
            pass
        appending.commit()
    finally:
        appending.close()
    with session_scope(log) as s:
        _, problems = check_log(s, signer)
    report = verify_bundle(export_bytes(log, signer), signer.verifier_key)
    if edited:
        assert problems, "check_log missed an entry edited mid-append"
        assert not report.ok and report.first_bad_index == 2, report.errors
    else:
        assert not problems and report.ok, (problems, report.errors)


def test_a_cosignature_replayed_onto_another_origin_or_size_counts_for_nothing() -> None:
    """cosignature/v1 signs the whole checkpoint body (origin line included) and its time: the
    line copied onto a checkpoint of another log with the same size and root, onto another
    size, or with its time changed, verifies for no one."""
    priv = Ed25519PrivateKey.generate()
    key = WitnessKey("w.example", priv.public_key().public_bytes_raw())
    root = base64.b64encode(LEAF).decode()
    body_a = f"a.example/log\n3\n{root}\n"
    line = cosign(body_a, "w.example", priv, 1_800_000_000)
    assert cosignatures(body_a + "\n" + line, [key])
    for other in (
        f"b.example/log\n3\n{root}\n",
        f"a.example/log\n4\n{root}\n",
        f"a.example/log\n3\n{root}\nx y\n",
    ):
        assert cosignatures(other + "\n" + line, [key]) == {}
    blob = bytearray(base64.b64decode(line.split(" ")[-1]))
    blob[11] ^= 1  # the time, one second off
    moved = f"{SIG_PREFIX}w.example {base64.b64encode(bytes(blob)).decode()}\n"
    assert cosignatures(body_a + "\n" + moved, [key]) == {}


# --- Key rotation racing appends, and two rotations at once ------------------------------------


def test_rotation_while_appends_race_keeps_one_verifiable_history(
    log_engine: Engine, settings: Settings, signer: AuditSigner
) -> None:
    """Three threads append while the key is rotated: every append lands in one tree, each
    checkpoint is signed by the key of its moment, and an auditor who pinned the old key
    follows the transition through the whole bundle."""
    from tre.audit.signing import get_signer, rotate_key

    old = signer.verifier_key
    stop = threading.Event()
    errors: list[BaseException] = []

    def appender(tag: int) -> None:
        try:
            while not stop.is_set():
                with session_scope(log_engine) as s:
                    record_events(s, [AuditEvent(f"u{tag}", "dataset.read", dataset_id="d1")])
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=appender, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        transition = rotate_key(settings.keys_dir, overlap_s=3600)
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert not errors, errors
    new = get_signer(settings.keys_dir)
    with session_scope(log_engine) as s:
        _, problems = check_log(s, new)
    assert not problems, problems
    report = verify_bundle(export_bytes(log_engine, new), old)
    assert report.ok, report.errors[:3]
    assert report.keys == [old, transition.new]


def test_two_rotations_at_once_hand_over_once(log_engine: Engine, settings: Settings) -> None:
    """Two operators rotate at the same moment: one hand-over happens, the other is refused.
    Two transitions from one key would be a forked key history that no auditor can follow."""
    from tre.audit.signing import AuditKeyError, get_signer, rotate_key

    pinned = get_signer(settings.keys_dir).verifier_key
    barrier = threading.Barrier(2)
    results: list[object] = []

    def rotate() -> None:
        barrier.wait()
        try:
            results.append(rotate_key(settings.keys_dir, overlap_s=3600))
        except Exception as e:  # noqa: BLE001 - anything but AuditKeyError fails the test below
            results.append(e)

    threads = [threading.Thread(target=rotate) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(results) == 2 and sum(isinstance(r, AuditKeyError) for r in results) == 1, results
    refused = next(r for r in results if isinstance(r, AuditKeyError))
    assert re.search(r"overlap period, until \d{4}-\d\d-\d\d \d\d:\d\d UTC; rotate again", str(refused))
    with session_scope(log_engine) as s:
        record_events(s, [AuditEvent("alice", "dataset.read", dataset_id="d1")])
    new = get_signer(settings.keys_dir)
    assert len(new.history) == 1
    report = verify_bundle(export_bytes(log_engine, new), pinned)
    assert report.ok, report.errors[:3]
