"""Round 10 of the audit tamper run: what an insider with write access to the database (but
not the signing key) can still make the server sign, and hostile bundles for the verifier.

Every legitimate append writes its entries *and* a checkpoint signed over them in one
transaction, so every committed tree is exactly covered by a signed checkpoint. Entries
slipped in behind the log's back (a careful insider computes the right ``idx``, ``prev``,
leaf hash and frontier, so the tree still extends everything signed) have no such
checkpoint: the server must refuse to sign over them, not adopt them with the next append.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from tests.audit.conftest import export_bytes
from tests.audit.test_server_guard import (  # noqa: F401 - `client` is a fixture
    REPO,
    N,
    append_one,
    build,
    client,
    count_checkpoints,
    rebuild_state,
)
from tests.audit.test_tamper import bundle  # noqa: F401 - a fixture
from tre.audit import checkpoint
from tre.audit.check import check_log
from tre.audit.guard import AuditLogDamaged
from tre.audit.log import entry_body, format_ts
from tre.audit.merkle import leaf_hash
from tre.audit.note import WitnessKey
from tre.audit.signing import AuditSigner
from tre.audit.verify import verify_bundle
from tre.config import Settings
from tre.store.db import session_scope
from tre.store.models import AuditCheckpoint, AuditEntry


@pytest.fixture
def log(log_engine: Engine) -> Engine:
    build(log_engine)
    return log_engine


def forge_tail(engine: Engine, count: int = 1, actor: str = "mallory") -> None:
    """Append ``count`` well-formed entries straight into the tables, as an insider would."""
    from datetime import UTC, datetime

    with session_scope(engine) as s:
        size = int(s.scalar(select(func.count(AuditEntry.idx))) or 0)
        prev = bytes(s.scalar(select(AuditEntry.leaf_hash).where(AuditEntry.idx == size - 1)) or b"").hex()
        now = datetime.now(UTC)
        for i in range(size, size + count):
            fields = {
                "v": 1,
                "ts": format_ts(now),
                "actor": actor,
                "action": "egress.vote",
                "project_id": "p1",
                "dataset_id": None,
                "job_id": None,
                "details": {"vote": "approve"},
            }
            body = entry_body(i, prev, fields)
            leaf = leaf_hash(body.encode())
            s.add(
                AuditEntry(
                    idx=i,
                    timestamp=now,
                    actor=actor,
                    action="egress.vote",
                    project_id="p1",
                    body=body,
                    leaf_hash=leaf,
                )
            )
            prev = leaf.hex()
    rebuild_state(engine)


@pytest.mark.parametrize("count", [1, 3])
def test_entries_forged_into_the_database_are_never_signed(
    log: Engine, signer: AuditSigner, count: int
) -> None:
    forge_tail(log, count)
    before = count_checkpoints(log)
    with pytest.raises(AuditLogDamaged, match="not covered by a checkpoint the log signed"):
        append_one(log)
    with pytest.raises(AuditLogDamaged, match="not covered"), session_scope(log) as s:
        checkpoint(s)  # the periodic re-signing must not adopt them either
    assert count_checkpoints(log) == before
    # What auditors get stops at the last signed size: the forged entries are not in it.
    report = verify_bundle(export_bytes(log, signer), signer.verifier_key)
    assert report.ok and report.tree_size == N, report.errors
    with session_scope(log) as s:
        _, problems = check_log(s, signer)
    assert any(f"entries {N}..{N + count - 1} are not covered" in p for p in problems), problems


def test_forged_tail_with_a_relabelled_checkpoint_row_is_refused(log: Engine) -> None:
    """The insider also copies the newest real checkpoint row and relabels its size columns:
    the note inside is what counts, and it is signed over the old tree."""
    forge_tail(log)
    with session_scope(log) as s:
        newest = s.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.id.desc())).first()
        assert newest is not None
        s.add(AuditCheckpoint(tree_size=N + 1, root_hash=bytes(newest.root_hash), note=newest.note))
    with pytest.raises(AuditLogDamaged, match="not covered"):
        append_one(log)


def test_forged_checkpoint_note_under_another_key_is_refused(log: Engine) -> None:
    from tre.audit.merkle import Frontier
    from tre.audit.note import TIMESTAMP_EXT, Checkpoint

    forge_tail(log)
    with session_scope(log) as s:
        leaves = [bytes(h) for h in s.scalars(select(AuditEntry.leaf_hash).order_by(AuditEntry.idx))]
        f = Frontier()
        for leaf in leaves:
            f.append(leaf)
        name = s.scalars(select(AuditCheckpoint.note)).first().split("\n", 1)[0]  # type: ignore[union-attr]
        rogue = AuditSigner(Ed25519PrivateKey.generate(), name)
        note = rogue.sign(Checkpoint(name, f.size, f.root(), (f"{TIMESTAMP_EXT} 1",)))
        s.add(AuditCheckpoint(tree_size=f.size, root_hash=f.root(), note=note))
    with pytest.raises(AuditLogDamaged, match="does not verify under the log.s keys"):
        append_one(log)


def test_an_intact_log_still_appends_and_checks_clean(log: Engine, signer: AuditSigner) -> None:
    append_one(log)
    with session_scope(log) as s:
        checkpoint(s)
        size, problems = check_log(s, signer)
    assert size == N + 1 and problems == []
    assert verify_bundle(export_bytes(log, signer), signer.verifier_key).ok


def test_a_transaction_that_appends_twice_checks_against_its_own_checkpoint(log: Engine) -> None:
    from tre.audit import record_event

    with session_scope(log) as s:
        record_event(s, actor="alice", action="dataset.read")
        record_event(s, actor="alice", action="dataset.read")
        checkpoint(s)
    append_one(log)
    assert count_checkpoints(log) == N + 4  # one per append, one re-signed


# --- Hostile bundles (someone who intercepts the export, or a malicious server) -----------


def _lines(data: bytes) -> list[bytes]:
    return data.rstrip(b"\n").split(b"\n")


def _deep(kind: str, data: bytes) -> bytes:
    lines = _lines(data)
    header = json.loads(lines[0])
    deep = b"[" * 200_000
    if kind == "header":
        lines[0] = b'{"format":"tre-audit-bundle/1","nested":' + deep
    elif kind == "entry":
        lines[1 + 3] = deep  # entry 3
    elif kind == "checkpoint":
        lines[-1] = b'{"checkpoint":' + deep
    else:  # booleans are not counts
        header["tree_size"] = True
        header["checkpoints"] = True
        lines[0] = json.dumps(header).encode()
    return b"\n".join(lines) + b"\n"


@pytest.mark.parametrize("kind", ["header", "entry", "checkpoint", "boolean-counts"])
def test_hostile_bundles_fail_with_one_line_not_a_traceback(
    bundle: bytes,  # noqa: F811
    signer: AuditSigner,
    tmp_path: Path,
    kind: str,
) -> None:
    data = _deep(kind, bundle)
    report = verify_bundle(data, signer.verifier_key)
    assert not report.ok
    if kind == "entry":
        assert report.first_bad_index == 3, report.errors
    path = tmp_path / "hostile.jsonl"
    path.write_bytes(data)
    # The standalone verifier an auditor runs without tre's dependencies.
    proc = subprocess.run(
        [sys.executable, "-m", "tre.audit.verify", str(path), "--key", signer.verifier_key.encode()],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout.startswith("FAILED"), proc.stderr[-2000:]


# --- A hostile witness (its answers reach the export endpoint and the admin's terminal) -----


@pytest.mark.parametrize("answer", ["9" * 5000, "\u0663", "-1", "1e3", "99999999999999999999999"])
def test_a_witness_answering_409_with_a_hostile_size_breaks_nothing(
    log: Engine, settings: Settings, signer: AuditSigner, answer: str
) -> None:
    """tlog-witness: 409 carries the witness's size as ASCII digits. Anything else (a number
    Python refuses to convert, Unicode digits, a size beyond any tree) is an error outcome
    for that witness, never an exception in the export endpoint that submits to witnesses."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from tre.audit.witnessing import WITNESS_STATE_FILE, add_witness, witness_latest
    from tre.store.db import session_factory

    class Hostile(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            self.rfile.read(int(self.headers.get("content-length", 0)))
            body = answer.encode()
            self.send_response(409)
            self.send_header("Content-Type", "text/x.tlog.size")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_a: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        wkey = WitnessKey("hostile.example", Ed25519PrivateKey.generate().public_key().public_bytes_raw())
        add_witness(settings.keys_dir, f"http://127.0.0.1:{server.server_address[1]}", wkey.encode())
        outcomes = witness_latest(session_factory(log), signer, timeout_s=2)
        assert [o.status for o in outcomes] in (["error"], ["conflict"]), outcomes
        state = json.loads((settings.keys_dir / WITNESS_STATE_FILE).read_text())
        assert all(isinstance(v, int) and 0 <= v < 2**64 for v in state.values()), state
        append_one(log)  # the log carries on, and the next submission still works
        assert witness_latest(session_factory(log), signer, timeout_s=2)
    finally:
        server.shutdown()
        server.server_close()


# --- A malicious server answering the auditor's CLI ------------------------------------------
# It holds the real key (a compromised operator), so it can sign any tree; what it must not
# do is drive the auditor's terminal, crash the CLI, or show an entry one way that another
# JSON reader would read another way.

ESC = "\x1b]0;owned\x07\x1b[2J[bold red]"


def _hostile_log(signer: AuditSigner) -> tuple[list[str], str]:
    """Entries (a duplicated key in 0, terminal controls and markup in 1) and a note over them."""
    from tre.audit.log import canonical_json
    from tre.audit.merkle import GENESIS_PREV, Frontier
    from tre.audit.note import TIMESTAMP_EXT, Checkpoint

    zero = (
        f'{{"idx":0,"prev":"{GENESIS_PREV}","action":"dataset.read","actor":"alice","actor":"mallory",'
        '"details":{},"ts":"2026-11-30T00:00:00.000000Z","v":1}'
    )
    rest = canonical_json({"action": "egress.vote", "actor": ESC, "details": {}, "ts": ESC, "v": 1})
    one = f'{{"idx":1,"prev":"{leaf_hash(zero.encode()).hex()}",{rest[1:]}'
    rest = canonical_json({"action": "dataset.read", "actor": "bob", "details": {}, "ts": "x", "v": 1})
    two = f'{{"idx":2,"prev":"{leaf_hash(one.encode()).hex()}",{rest[1:]}'
    f = Frontier()
    for body in (zero, one):
        f.append(leaf_hash(body.encode()))
    note = signer.sign(Checkpoint(signer.name, 2, f.root(), (f"{TIMESTAMP_EXT} 1",)))
    return [zero, one, two], note


def _signed(signer: AuditSigner, bodies: list[str], size: int, ts_ms: int) -> str:
    from tre.audit.merkle import TreeLevels
    from tre.audit.note import TIMESTAMP_EXT, Checkpoint

    root = TreeLevels([leaf_hash(b.encode()) for b in bodies[:size]]).root()
    return signer.sign(Checkpoint(signer.name, size, root, (f"{TIMESTAMP_EXT} {ts_ms}",)))


@pytest.fixture
def evil(
    signer: AuditSigner, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, object]]:
    """A server that answers the audit API's routes with what the test puts in ``answers``."""
    import time

    import uvicorn
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, Response

    from tests.ports import free_port
    from tre.audit.merkle import TreeLevels
    from tre.config import reset_settings_cache

    bodies, note = _hostile_log(signer)
    tree = TreeLevels([leaf_hash(b.encode()) for b in bodies])
    answers: dict[str, object] = {
        "bodies": bodies,
        "public-key": {"vkey": signer.verifier_key.encode(), "key_history": []},
        "checkpoint": {"note": note},
        "damaged": [],
    }
    app = FastAPI()

    @app.get("/api/v1/audit/public-key")
    def public_key() -> JSONResponse:
        return JSONResponse(answers["public-key"])

    @app.get("/api/v1/audit/checkpoint")
    def cp() -> JSONResponse:
        return JSONResponse(answers["checkpoint"])

    @app.get("/api/v1/audit/entries/{idx}")
    def entry(idx: int) -> JSONResponse:
        return JSONResponse({"idx": idx, "body": bodies[idx]})

    @app.get("/api/v1/audit/entries")
    def entries() -> Response:
        bomb = answers.get("bomb")
        if isinstance(bomb, bytes):
            return Response(bomb, media_type="application/json", headers={"Content-Encoding": "gzip"})
        return JSONResponse({"items": [], "damaged": answers["damaged"], "next_after": None})

    @app.get("/api/v1/audit/export")
    def export() -> Response:
        bomb = answers.get("bomb")
        assert isinstance(bomb, bytes)
        return Response(bomb, media_type="application/x-ndjson", headers={"Content-Encoding": "gzip"})

    @app.get("/api/v1/audit/proof/inclusion")
    def inclusion(index: int, tree_size: int) -> JSONResponse:
        proof = answers.get("proof") or [h.hex() for h in tree.inclusion_proof(index, tree_size)]
        return JSONResponse({"proof": proof})

    @app.get("/api/v1/audit/proof/consistency")
    def consistency(first: int, second: int) -> JSONResponse:
        return JSONResponse({"proof": [h.hex() for h in tree.consistency_proof(first, second)]})

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    monkeypatch.setenv("TRE_API_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("TRE_TOKEN", "not-checked-by-this-server")
    reset_settings_cache()
    yield answers
    server.should_exit = True
    thread.join(timeout=10)


def _cli(*args: str) -> tuple[int, str, BaseException | None]:
    from typer.testing import CliRunner

    from tre.cli.audit import app as audit_app

    res = CliRunner().invoke(audit_app, list(args))
    return res.exit_code, res.output, res.exception


def test_public_key_from_the_server_is_parsed_before_it_is_printed(evil: dict[str, object]) -> None:
    from tre.cli.client import CliError

    code, out, _ = _cli("public-key")
    assert code == 0 and out.strip().startswith("tre.audit/"), out
    evil["public-key"] = {"vkey": str(evil["public-key"]["vkey"]) + ESC}  # type: ignore[index]
    code, out, exc = _cli("public-key")
    assert code == 1 and isinstance(exc, CliError) and "\x1b" not in out, (out, exc)
    evil["public-key"] = ["not", "an", "object"]
    code, out, exc = _cli("checkpoint")
    assert isinstance(exc, CliError), exc


def test_prove_refuses_a_body_with_a_repeated_key_and_escapes_what_it_shows(
    evil: dict[str, object],
) -> None:
    from tre.cli.client import CliError

    code, out, exc = _cli("checkpoint", "--max-age", str(10**10))  # the fake server's note is from 1970
    assert code == 0, (out, exc)
    code, out, exc = _cli("prove", "0")  # proven, but "actor" twice: alice or mallory?
    assert isinstance(exc, CliError) and "distinct keys" in str(exc), (out, exc)
    code, out, exc = _cli("prove", "1")
    assert code == 0, (out, exc)
    assert "\x1b" not in out and "\x07" not in out and "\\x1b]0;owned\\x07" in out, repr(out)
    assert "[bold red]" in out  # shown as text, not applied as markup
    evil["proof"] = ["zz" * 32]
    code, out, exc = _cli("prove", "1")
    assert isinstance(exc, CliError) and "malformed" in str(exc), (out, exc)
    evil["proof"] = {"not": "a list"}
    code, out, exc = _cli("prove", "1")
    assert isinstance(exc, CliError) and "malformed" in str(exc), (out, exc)


def test_search_warnings_escape_what_the_server_sent(evil: dict[str, object]) -> None:
    evil["damaged"] = [ESC]
    code, out, exc = _cli("search")
    assert "\x1b" not in out and "\\x1b" in out, repr(out)


# --- tlog-tiles paths ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "0/x000/000",  # tile 0 under a second name (C2SP: N in the shortest x-grouped form)
        "0/x000/x000/000.p/3",
        "entries/x000/000.p/3",
        "0/" + "x000/" * 1500 + "000",  # thousands of digits: Python refuses to convert them
        "entries/" + "x000/" * 1500 + "000.p/1",
        "0/" + "x999/" * 7 + "999",  # beyond any uint64 tree
    ],
)
def test_tile_paths_have_one_canonical_form(
    client: tuple[TestClient, dict[str, str]],  # noqa: F811
    path: str,
) -> None:
    c, h = client
    r = c.get(f"/api/v1/audit/tlog/tile/{path}", headers=h)
    assert r.status_code == 404, (r.status_code, r.text[:300])
    assert r.json()["type"] == "urn:tre:problem:audit-tile-not-found"
    ok = c.get("/api/v1/audit/tlog/tile/0/000.p/3", headers=h)
    assert ok.status_code == 200 and len(ok.content) == 3 * 32


# --- A retired key (rotated out, perhaps because it leaked) ----------------------------------


def test_a_retired_key_cannot_vouch_for_forged_entries(log: Engine, settings: Settings) -> None:
    import time

    from tre.audit.merkle import Frontier
    from tre.audit.note import TIMESTAMP_EXT, Checkpoint
    from tre.audit.signing import get_signer, rotate_key

    old = get_signer(settings.keys_dir)
    rotate_key(settings.keys_dir, 0)  # no overlap: the old key is retired at once
    time.sleep(0.01)
    append_one(log)  # the tip signed by the old key is the log's own last checkpoint: fine
    append_one(log)
    forge_tail(log)
    with session_scope(log) as s:
        f = Frontier()
        for leaf in s.scalars(select(AuditEntry.leaf_hash).order_by(AuditEntry.idx)):
            f.append(bytes(leaf))
        # Backdated into the (empty) overlap, signed with the retired key the insider holds.
        backdated = (f"{TIMESTAMP_EXT} {int(time.time() * 1000) - 60_000}",)
        note = AuditSigner(old.private_key, old.name).sign(Checkpoint(old.name, f.size, f.root(), backdated))
        s.add(AuditCheckpoint(tree_size=f.size, root_hash=f.root(), note=note))
    before = count_checkpoints(log)
    with pytest.raises(AuditLogDamaged, match="retired key"):
        append_one(log)
    assert count_checkpoints(log) == before


def test_first_append_after_a_rotation_without_overlap_carries_on(log: Engine, settings: Settings) -> None:
    import time

    from tre.audit.signing import get_signer, rotate_key

    rotate_key(settings.keys_dir, 0)
    time.sleep(0.01)
    append_one(log)
    signer = get_signer(settings.keys_dir)
    assert verify_bundle(export_bytes(log, signer), signer.verifier_key).ok


# --- Actors that look like other actors ---------------------------------------------------


@pytest.mark.parametrize(
    "actor",
    [
        "\u0430lice",  # Cyrillic a
        "\uff41lice",  # fullwidth a
        "alice\u0301",  # combining accent
        "al\u200bice",  # zero-width space
        "alice\x1b[0m",
        "alice bob",
        "-alice",
        "a" * 65,
        "",
    ],
)
def test_an_actor_is_an_ascii_id(log: Engine, actor: str) -> None:
    from tre.audit import record_event

    with pytest.raises(ValueError, match="audit actor"), session_scope(log) as s:
        record_event(s, actor=actor, action="dataset.read")
    for fine in ("alice", "node:hospital-a", "tre:panel-cards", "u1@example.org"):
        with session_scope(log) as s:
            record_event(s, actor=fine, action="dataset.read")


def test_checkpoint_refuses_a_stale_one_and_a_backdated_larger_one(
    evil: dict[str, object], signer: AuditSigner
) -> None:
    """Replaying an old checkpoint: /checkpoint re-signs every minute, so an hours-old one
    is a replay or a frozen log (refused since round 11, not pinned: a warning scrolls past
    unread in a cron job; --max-age widens the bound); a larger tree signed before the tree the
    auditor pinned cannot come from an honest log (refused, like the verifier's time-order rule)."""
    import time

    from tre.cli.client import CliError

    bodies = evil["bodies"]
    assert isinstance(bodies, list)
    code, out, exc = _cli("checkpoint")  # the note of size 2 signed at Unix time 0.001
    assert isinstance(exc, CliError) and "STALE" in str(exc) and "replayed" in str(exc), (out, exc)
    assert not (Path(os.environ["TRE_HOME"]) / "audit" / "checkpoint.note").exists()  # not pinned
    code, out, exc = _cli("checkpoint", "--max-age", str(10**10))  # an auditor who accepts it
    assert code == 0, (out, exc)
    now = int(time.time() * 1000)
    evil["checkpoint"] = {"note": _signed(signer, bodies, 2, now)}
    code, out, exc = _cli("checkpoint", "--json")
    assert code == 0 and json.loads(out)["age_s"] < 60, (out, exc)
    evil["checkpoint"] = {"note": _signed(signer, bodies, 3, now - 3_600_000)}
    code, out, exc = _cli("checkpoint")
    assert isinstance(exc, CliError) and "signed before" in str(exc), (out, exc)
    evil["checkpoint"] = {"note": _signed(signer, bodies, 3, now)}
    code, out, exc = _cli("checkpoint")
    assert code == 0 and "WARNING" not in out, (out, exc)


def test_compressed_answers_are_refused_unread(evil: dict[str, object], tmp_path: Path) -> None:
    """A gzip "bomb": 64 MiB of valid JSON (and of bundle) in about 64 KiB on the wire. The
    CLI asks for uncompressed answers (tre never compresses) and refuses a compressed one
    before decoding it, so nothing is inflated in memory or on disk."""
    import gzip

    from tre.cli.client import CliError

    pad = b" " * (64 << 20)
    evil["bomb"] = gzip.compress(b'{"items":[],"damaged":[],"next_after":null}' + pad, compresslevel=9)
    assert len(evil["bomb"]) < 1 << 20  # type: ignore[arg-type]
    code, out, exc = _cli("search")
    assert isinstance(exc, CliError) and "compressed" in str(exc), (out, exc)
    evil["bomb"] = gzip.compress(pad, compresslevel=9)
    out_file = tmp_path / "bundle.jsonl"
    code, out, exc = _cli("export", str(out_file))
    assert isinstance(exc, CliError) and "compressed" in str(exc), (out, exc)
    assert not out_file.exists() and not list(tmp_path.glob("*.part"))


# --- Numbers in notes and witness requests: uint64, ASCII digits --------------------------


def _note_text(origin: str, size: str, root: bytes, ts: str) -> str:
    import base64

    return f"{origin}\n{size}\n{base64.b64encode(root).decode()}\ntimestamp {ts}\n"


@pytest.mark.parametrize(
    ("old", "size", "ts"),
    [
        ("9" * 5000, "1", "1"),  # old line: Python refuses to convert 5,000 digits
        ("0", "9" * 5000, "1"),  # the (unverified) checkpoint's size
        ("0", "18446744073709551616", "1"),  # 2**64: beyond C2SP's uint64
    ],
)
def test_a_witness_answers_huge_numbers_with_400_not_500(
    signer: AuditSigner, tmp_path: Path, old: str, size: str, ts: str
) -> None:
    from tests.audit.test_witness import make_witness
    from tre.audit.note import sign_note
    from tre.audit.witness_server import create_witness_app

    w = make_witness(tmp_path, "w.example", signer)
    note = sign_note(_note_text(signer.name, size, b"\x01" * 32, ts), signer.name, signer.private_key)
    with TestClient(create_witness_app(w), raise_server_exceptions=False) as c:
        r = c.post("/add-checkpoint", content=f"old {old}\n\n{note}".encode())
    assert r.status_code in (400, 403), (r.status_code, r.text[:200])


@pytest.mark.parametrize("field", ["size", "timestamp"])
def test_a_signed_note_with_a_huge_number_fails_verification_in_one_line(
    bundle: bytes,  # noqa: F811
    signer: AuditSigner,
    tmp_path: Path,
    field: str,
) -> None:
    """A malicious server holds the key and signs what it likes; the verifier still answers
    with FAILED, never a ValueError traceback."""
    from tre.audit.merkle import TreeLevels
    from tre.audit.note import sign_note

    lines = _lines(bundle)
    header = json.loads(lines[0])
    entries = lines[1 : 1 + header["tree_size"]]
    root = TreeLevels([leaf_hash(e) for e in entries]).root()
    size, ts = ("9" * 5000, "1") if field == "size" else (str(len(entries)), "9" * 5000)
    note = sign_note(_note_text(signer.name, size, root, ts), signer.name, signer.private_key)
    lines.append(json.dumps({"checkpoint": note}).encode())
    header["checkpoints"] += 1
    lines[0] = json.dumps(header).encode()
    path = tmp_path / "huge.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    report = verify_bundle(path.read_bytes(), signer.verifier_key)
    # A size beyond uint64 is a bad checkpoint; an unreadable timestamp is no timestamp (the
    # checkpoint is otherwise genuine, and timestamps are optional in C2SP).
    assert report.ok is (field == "timestamp"), report.errors
    proc = subprocess.run(
        [sys.executable, "-m", "tre.audit.verify", str(path), "--key", signer.verifier_key.encode()],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
    )
    assert proc.returncode == (0 if report.ok else 1) and "Traceback" not in proc.stderr, proc.stderr[-2000:]


# --- Non-canonical base64 (the same bytes under another spelling) ---------------------------


def _respell(b64: str) -> str:
    """The same bytes, spelled with the unused low bits of the last base64 digit set."""
    import string

    alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "+/"
    body = b64.rstrip("=")
    pad = len(b64) - len(body)
    spare = {1: 2, 2: 4}[pad]  # unused bits in the last digit
    last = alphabet[alphabet.index(body[-1]) | ((1 << spare) - 1)]
    return body[:-1] + last + "=" * pad


@pytest.mark.parametrize("part", ["signature", "root"])
def test_a_respelled_note_is_refused(log: Engine, signer: AuditSigner, part: str) -> None:
    """Python's and Go's lenient base64 decoders read the unused bits of the last digit as
    nothing, so one signed note had several spellings of its signature line: an interceptor
    could change a note's bytes without breaking its signature, and two auditors comparing
    the notes they pinned would see different text. Only the canonical spelling is accepted.
    (A respelled root changes the signed text; keys have no unused bits: 33 bytes.)"""
    import base64

    from tre.audit.note import NoteError, open_checkpoint

    with session_scope(log) as s:
        note = s.scalars(select(AuditCheckpoint.note).order_by(AuditCheckpoint.id.desc())).first()
    assert note is not None
    open_checkpoint(note, signer.verifier_key)
    lines = note.split("\n")
    if part == "signature":
        prefix, blob = lines[-2].rsplit(" ", 1)
        lines[-2] = f"{prefix} {_respell(blob)}"
        assert base64.b64decode(_respell(blob)) == base64.b64decode(blob)
    else:
        lines[2] = _respell(lines[2])
    with pytest.raises(NoteError):
        open_checkpoint("\n".join(lines), signer.verifier_key)


def test_a_policy_with_a_huge_quorum_is_a_policy_error(signer: AuditSigner) -> None:
    from tre.audit.note import NoteError
    from tre.audit.verify import Policy

    with pytest.raises(NoteError):
        Policy.parse(f"log {signer.verifier_key.encode()}\nquorum {'9' * 5000}\n")


def test_a_witness_flooding_valid_cosignatures_cannot_break_the_log(
    log: Engine, settings: Settings, signer: AuditSigner
) -> None:
    """A witness answers 200 with 150 genuine cosignature lines (one key, different times).
    Kept whole, they pushed the stored note past the 100 signature lines a note may carry:
    the checkpoint stopped verifying for auditors and the server (every audited action then
    failed). One cosignature per witness is kept."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from tre.audit.note import cosign, split_note
    from tre.audit.witnessing import add_witness, witness_latest
    from tre.store.db import session_factory

    wkey = Ed25519PrivateKey.generate()
    witness = WitnessKey("flood.example", wkey.public_key().public_bytes_raw())

    class Flood(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            req = self.rfile.read(int(self.headers.get("content-length", 0))).decode()
            text, _ = split_note(req.split("\n\n", 1)[1])
            body = "".join(
                cosign(text, "flood.example", wkey, 1_700_000_000 + i) for i in range(150)
            ).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_a: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Flood)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        add_witness(settings.keys_dir, f"http://127.0.0.1:{server.server_address[1]}", witness.encode())
        assert [o.status for o in witness_latest(session_factory(log), signer, timeout_s=5)] == ["cosigned"]
    finally:
        server.shutdown()
        server.server_close()
    append_one(log)  # the log carries on
    report = verify_bundle(export_bytes(log, signer), signer.verifier_key)
    assert report.ok, report.errors
    with session_scope(log) as s:
        notes = s.scalars(select(AuditCheckpoint.note)).all()
    assert max(n.count("\u2014 flood.example ") for n in notes) == 1
