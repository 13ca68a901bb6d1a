"""Tamper round 14: power loss (durable state files), refusals dropped under load, ambiguous
bundle JSON, one witness key counted twice, and variants of earlier classes (truncation at
every boundary, reordering equal timestamps, rollback, fork views, planted keys, back-dated
checkpoints, moved cosignatures).

Durability cannot be shown by cutting the power of the test machine. What is observed instead
is the order of the real system calls: a file that must survive a power cut is ``fsync``ed
before its name moves (``rename``/``link``), and its folder is ``fsync``ed after, else the
rename may be lost (the state rolls back) or point at an empty file. ``disk`` records those
calls (each still runs) by inode, so a test fails when a writer skips either step.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, delete, select, update

from tests.audit.conftest import export_bytes
from tests.audit.test_cli import seed
from tests.audit.test_tamper_round10 import _cli, _signed
from tre.audit import configure
from tre.audit.check import check_log
from tre.audit.log import canonical_json
from tre.audit.merkle import GENESIS_PREV, Frontier, leaf_hash
from tre.audit.note import (
    Checkpoint,
    VerifierKey,
    WitnessKey,
    add_signature_lines,
    cosign,
    sign_note,
    split_note,
)
from tre.audit.refusals import RefusalAudit, RefusalCounter
from tre.audit.signing import (
    HISTORY_FILE,
    KEY_FILE,
    ORIGIN_FILE,
    PIN_FILE,
    AuditSigner,
    get_signer,
    rotate_key,
)
from tre.audit.verify import KeyTransition, Policy, verify_bundle
from tre.audit.witness_server import Witness, encode_request
from tre.audit.witnessing import WITNESSES_FILE, add_witness
from tre.config import Settings
from tre.store import db as store_db
from tre.store.db import raw_writer_lock, session_scope
from tre.store.models import AuditEntry, AuditState

EMPTY_ROOT = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"  # RFC 9162

# --- power loss: the order of fsync and rename -------------------------------------------------


class Disk:
    """The fsync and rename/link calls of this process, in order (``("fsync", inode)``,
    ``("name", path)``); every call still reaches the kernel."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def durable(self, path: Path) -> bool:
        """Whether ``path``'s data was synced before its last rename and its folder after."""
        path = Path(os.path.abspath(path))
        named = [i for i, (op, arg) in enumerate(self.calls) if op == "name" and arg == str(path)]
        if not named:
            return False
        last = named[-1]
        ino, folder = os.stat(path).st_ino, os.stat(path.parent).st_ino
        data = any(c == ("fsync", ino) for c in self.calls[:last])
        name = any(c == ("fsync", folder) for c in self.calls[last + 1 :])
        return data and name


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch) -> Disk:
    d = Disk()
    real_fsync, real_replace, real_link = os.fsync, os.replace, os.link

    def fsync(fd: int) -> None:
        d.calls.append(("fsync", os.fstat(fd).st_ino))
        real_fsync(fd)

    def named(real: Callable[..., None]) -> Callable[..., None]:
        def call(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
            real(src, dst, *args, **kwargs)
            d.calls.append(("name", os.path.abspath(os.fspath(dst))))

        return call

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", named(real_replace))
    monkeypatch.setattr(os, "link", named(real_link))
    return d


def test_pin_beside_the_key_is_durable(engine: Engine, settings: Settings, disk: Disk) -> None:
    """The last signed checkpoint (the server's rollback guard) after each append: it was
    renamed into place without an fsync of the file or the folder."""
    configure(engine, settings.keys_dir)
    seed(engine, 2)
    assert disk.durable(settings.keys_dir / PIN_FILE), disk.calls


def test_new_key_origin_and_rotation_files_are_durable(
    tmp_path: Path, settings: Settings, disk: Disk
) -> None:
    """The key, the origin (created once) and the key history (a rotation's commit point):
    the file was synced, the folder never, so a power cut could undo the commit point."""
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    get_signer(keys)
    for name in (KEY_FILE, ORIGIN_FILE):
        assert disk.durable(keys / name), name
    rotate_key(keys, overlap_s=60)
    for name in (HISTORY_FILE, KEY_FILE):
        assert disk.durable(keys / name), name


def test_witness_states_are_durable(
    tmp_path: Path, signer: AuditSigner, settings: Settings, disk: Disk
) -> None:
    """The witness's last cosigned size (what refuses a rollback) and the log's witness list."""
    w = Witness(
        "w.example", Ed25519PrivateKey.generate(), tmp_path / "w" / "state.json", [signer.verifier_key]
    )
    note = signer.sign(Checkpoint(signer.name, 0, bytes.fromhex(EMPTY_ROOT), ()))
    w.add_checkpoint(encode_request(0, [], note))
    assert disk.durable(w.state_file)
    add_witness(settings.keys_dir, "http://127.0.0.1:9", w.public_key.encode())
    assert disk.durable(settings.keys_dir / WITNESSES_FILE)


def test_auditors_remembered_state_is_durable(
    engine: Engine, settings: Settings, signer: AuditSigner, tmp_path: Path, disk: Disk
) -> None:
    """`tre audit verify` remembers the key and the newest checkpoint: a power cut that moved
    the checkpoint back would make a later rollback to it look consistent."""
    configure(engine, settings.keys_dir)
    seed(engine, 3)
    bundle = tmp_path / "b.jsonl"
    bundle.write_bytes(export_bytes(engine, signer))
    code, out, _ = _cli("verify", str(bundle), "--key", signer.verifier_key.encode())
    assert code == 0, out
    state = settings.home / "audit"
    for name in ("log.vkey", "checkpoint.note"):
        assert disk.durable(state / name), name
    assert not list(state.glob("*.tmp"))


# --- refusals under load ------------------------------------------------------------------------


def _counter(app: FastAPI) -> RefusalCounter:
    for m in app.user_middleware:
        if m.cls is RefusalAudit:
            return m.kwargs["counter"]  # type: ignore[no-any-return]
    raise AssertionError("no refusal audit installed")


def _refused(engine: Engine) -> list[dict[str, Any]]:
    with session_scope(engine) as s:
        bodies = s.scalars(select(AuditEntry.body).order_by(AuditEntry.idx)).all()
    return [e for e in map(json.loads, bodies) if e["action"].startswith("auth.refused")]


def test_refusals_written_while_the_store_is_busy_are_kept(
    app: FastAPI, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under load the refusal's own write waits for the store and gives up (DatabaseBusy):
    its entry was dropped for good. Now it is written with the next one."""
    monkeypatch.setattr(store_db, "BUSY_TIMEOUT_S", 0.3)
    lock = raw_writer_lock(engine)
    assert lock is not None
    with TestClient(app) as client:
        assert lock.acquire(timeout=10)  # another writer holds the store meanwhile
        try:
            assert client.get("/api/v1/jobs", headers={"Authorization": "Bearer busy-1"}).status_code == 401
        finally:
            lock.release()
        assert _refused(engine) == []  # not written yet: the write timed out
        assert client.get("/api/v1/projects", headers={"Authorization": "Bearer x"}).status_code == 401
        routes = {e["details"]["route"] for e in _refused(engine)}
    assert routes == {"/api/v1/jobs", "/api/v1/projects"}


def test_repeated_refusals_are_counted_at_shutdown(app: FastAPI, engine: Engine) -> None:
    """Repeats are written as one summary when the window ends, but only at the next refusal:
    refusals followed by a restart (or silence) left no trace of the repeats."""
    with TestClient(app) as client:
        for i in range(6):
            assert client.get("/api/v1/jobs", headers={"Authorization": f"Bearer t{i}"}).status_code == 401
    repeats = [e for e in _refused(engine) if e["details"]["kind"] == "repeats"]
    assert [e["details"]["count"] for e in repeats] == [5]


def test_window_summary_is_written_by_the_next_answer_of_any_kind(app: FastAPI, engine: Engine) -> None:
    """After the window ends, an ordinary (not refused) answer writes its summary."""
    with TestClient(app) as client:
        for i in range(3):
            client.get("/api/v1/jobs", headers={"Authorization": f"Bearer t{i}"})
        _counter(app).start -= 3600  # the window ended an hour ago
        assert client.get("/api/v1/auth/config").status_code == 200
        repeats = [e for e in _refused(engine) if e["details"]["kind"] == "repeats"]
        assert [e["details"]["count"] for e in repeats] == [2]


def test_refusals_kept_past_their_bound_are_counted_not_lost() -> None:
    c = RefusalCounter(window_s=3600, max_keys=10)
    first = c.observe((401, "GET", "/x", "anonymous"))
    c.requeue(first * 5000)
    out = c.flush()
    kept = [e for e in out if e.action == "auth.refused"]
    overflow = [e for e in out if e.action == "auth.refused_overflow"]
    assert len(kept) < 5000 and overflow and overflow[0].details is not None
    assert len(kept) + overflow[0].details["count"] == 5000


# --- the bundle's JSON ---------------------------------------------------------------------------


@pytest.fixture
def exported(engine: Engine, settings: Settings, signer: AuditSigner) -> bytes:
    configure(engine, settings.keys_dir)
    seed(engine, 3)
    seed(engine, 2, actor="bob")
    return export_bytes(engine, signer)


def _lines(data: bytes) -> list[bytes]:
    return data.rstrip(b"\n").split(b"\n")


def _join(lines: list[bytes]) -> bytes:
    return b"\n".join(lines) + b"\n"


def _header(data: bytes) -> dict[str, Any]:
    return json.loads(_lines(data)[0])  # type: ignore[no-any-return]


def _edit_header(data: bytes, text: str) -> bytes:
    return _join([text.encode(), *_lines(data)[1:]])


def test_header_with_a_repeated_key_is_refused(exported: bytes, signer: AuditSigner) -> None:
    """`{"vkey": A, ..., "vkey": B}`: Python reads B, a reader that keeps the first reads A;
    the bundle says two things and verified. Same for a checkpoint line."""
    assert verify_bundle(exported, signer.verifier_key).ok
    head = _lines(exported)[0].decode()
    doubled = head[:-1] + ',"tree_size":' + str(_header(exported)["tree_size"]) + "}"
    report = verify_bundle(_edit_header(exported, doubled), signer.verifier_key)
    assert not report.ok and "repeated key" in report.errors[0]
    lines = _lines(exported)
    cp = json.loads(lines[-1])["checkpoint"]
    lines[-1] = (
        '{"checkpoint":' + json.dumps("not a note") + ',"checkpoint":' + json.dumps(cp) + "}"
    ).encode()
    report = verify_bundle(_join(lines), signer.verifier_key)
    assert not report.ok and "repeated key" in report.errors[0]


def test_header_with_nan_or_an_extra_field_in_a_checkpoint_line_is_refused(
    exported: bytes, signer: AuditSigner
) -> None:
    head = _header(exported)
    with_nan = json.dumps({**head, "exported_at": 0}).replace('"exported_at": 0', '"exported_at": NaN')
    assert "NaN" in with_nan
    assert not verify_bundle(_edit_header(exported, with_nan), signer.verifier_key).ok
    lines = _lines(exported)
    obj = json.loads(lines[-1])
    lines[-1] = json.dumps({**obj, "note": "x"}).encode()
    assert not verify_bundle(_join(lines), signer.verifier_key).ok


@pytest.mark.parametrize(
    "value", ['"6"', "6.0", "6e0", "true", "-6", "1" + "0" * 5000, "1" + "0" * 4000, "null", "[6]"]
)
def test_header_numbers_in_other_forms_are_refused(exported: bytes, signer: AuditSigner, value: str) -> None:
    """Numbers as strings, floats, booleans, negative or huge: held (no change)."""
    head = _lines(exported)[0].decode()
    size = _header(exported)["tree_size"]
    edited = head.replace(f'"tree_size":{size}', f'"tree_size":{value}').replace(
        f'"tree_size": {size}', f'"tree_size": {value}'
    )
    assert edited != head
    assert not verify_bundle(_edit_header(exported, edited), signer.verifier_key).ok


def test_entry_respelled_as_equal_json_or_other_unicode_is_caught(
    exported: bytes, signer: AuditSigner
) -> None:
    """The same JSON value spelt differently (an escaped letter, key order, a space), or a
    look-alike or differently normalised letter: entries are hashed as bytes. Held."""
    lines = _lines(exported)
    entry = lines[2].decode()
    variants = [
        entry.replace('"actor":"alice"', '"actor":"\\u0061lice"'),
        entry.replace('"actor":"alice"', '"actor":"\u0430lice"'),  # Cyrillic a
        entry.replace('"actor":"alice"', '"actor": "alice"'),
        entry.replace('"actor":"alice"', '"actor":"alic\u0065\u0301"'),
        entry.replace('"v":1}', '"v":1.0}'),
    ]
    for v in variants:
        assert v != entry
        lines[2] = v.encode()
        report = verify_bundle(_join(lines), signer.verifier_key)
        assert not report.ok and report.first_bad_index == 1, (v, report.errors)


# --- truncation, reordering, rollback, fork --------------------------------------------------


def test_bundle_cut_at_every_line_and_at_bytes_inside_lines_fails(
    exported: bytes, signer: AuditSigner
) -> None:
    lines = _lines(exported)
    for k in range(1, len(lines)):
        assert not verify_bundle(_join(lines[:k]), signer.verifier_key).ok, k
    for cut in range(len(lines[0]) + 1, len(exported) - 1, 97):
        assert not verify_bundle(exported[:cut], signer.verifier_key).ok, cut


def test_rollback_to_every_earlier_boundary_fails_against_the_remembered_checkpoint(
    engine: Engine, settings: Settings, signer: AuditSigner
) -> None:
    """A consistent older copy (entries and the checkpoints that still fit, header fixed):
    the checkpoint the auditor remembers catches it at every size."""
    configure(engine, settings.keys_dir)
    for _ in range(6):
        seed(engine, 1)  # one checkpoint per entry: every size is a signed size
    exported = export_bytes(engine, signer)
    lines = _lines(exported)
    head = _header(exported)
    n = head["tree_size"]
    cps = [json.loads(x)["checkpoint"] for x in lines[1 + n :]]
    newest = cps[-1]
    for size in range(1, n):
        fit = [c for c in cps if int(split_note(c)[0].split("\n")[1]) <= size]
        h = {**head, "tree_size": size, "checkpoints": len(fit)}
        older = _join(
            [
                json.dumps(h).encode(),
                *lines[1 : 1 + size],
                *(json.dumps({"checkpoint": c}).encode() for c in fit),
            ]
        )
        assert verify_bundle(older, signer.verifier_key).ok, size  # consistent in itself
        report = verify_bundle(older, signer.verifier_key, [newest])
        assert not report.ok and "truncated" in report.errors[0], size


def test_rollback_is_caught_by_the_state_the_cli_remembers(
    engine: Engine, settings: Settings, signer: AuditSigner, tmp_path: Path
) -> None:
    """`tre audit verify` remembers the newest checkpoint it verified and compares every later
    bundle with it: the log and its checkpoints rolled back to an older consistent copy (as
    the operator's own export of last week) fail, without --pin. Held."""
    configure(engine, settings.keys_dir)
    seed(engine, 2)
    older = export_bytes(engine, signer)
    seed(engine, 2)
    newer, old = tmp_path / "new.jsonl", tmp_path / "old.jsonl"
    newer.write_bytes(export_bytes(engine, signer))
    old.write_bytes(older)
    key = signer.verifier_key.encode()
    assert _cli("verify", str(old), "--key", key)[0] == 0
    assert _cli("verify", str(newer), "--key", key)[0] == 0
    code, out, _ = _cli("verify", str(old), "--key", key)
    assert code == 1 and "truncated" in out, out


def test_database_truncated_at_every_boundary_is_named(
    engine: Engine, settings: Settings, signer: AuditSigner
) -> None:
    configure(engine, settings.keys_dir)
    seed(engine, 3)
    seed(engine, 3, actor="bob")
    for keep in range(6):
        with session_scope(engine) as s:
            s.execute(delete(AuditEntry).where(AuditEntry.idx >= keep))
            s.execute(update(AuditState).values(tree_size=keep))
            _, problems = check_log(s, signer)
            s.rollback()
        assert problems, keep


def test_rows_with_equal_timestamps_reordered_are_caught(
    engine: Engine, settings: Settings, signer: AuditSigner
) -> None:
    """One batch shares its time; swapping two of its rows (bodies, hashes and index columns
    kept consistent per row) breaks the chain: `check` and the bundle name it. Held."""
    configure(engine, settings.keys_dir)
    seed(engine, 4)
    with session_scope(engine) as s:
        rows = {r.idx: (r.body, r.leaf_hash) for r in s.scalars(select(AuditEntry))}
        assert json.loads(rows[1][0])["ts"][:16] == json.loads(rows[2][0])["ts"][:16]
        for a, b in ((1, 2), (2, 1)):
            s.execute(
                update(AuditEntry).where(AuditEntry.idx == a).values(body=rows[b][0], leaf_hash=rows[b][1])
            )
        _, problems = check_log(s, signer)
        s.flush()
    assert problems
    report = verify_bundle(export_bytes(engine, signer), signer.verifier_key)
    assert not report.ok


def test_fork_views_for_two_auditors_are_caught_by_the_cli_state(
    engine: Engine, settings: Settings, signer: AuditSigner, tmp_path: Path
) -> None:
    """Auditor A verified one history; the server then shows A a fork of it (same size, one
    entry different, re-signed with the real key): `tre audit verify` fails on A's remembered
    checkpoint, and with B's checkpoint given as --pin. Held."""
    configure(engine, settings.keys_dir)
    seed(engine, 3)
    real = export_bytes(engine, signer)
    a = tmp_path / "a.jsonl"
    a.write_bytes(real)
    assert _cli("verify", str(a), "--key", signer.verifier_key.encode())[0] == 0
    bodies = [x.decode() for x in _lines(real)[1:4]]
    forked = _fork(bodies, 1)
    note = _signed(signer, forked, 3, int(time.time() * 1000))
    head = {**_header(real), "checkpoints": 1}
    b = tmp_path / "b.jsonl"
    b.write_bytes(
        _join(
            [
                json.dumps(head).encode(),
                *(x.encode() for x in forked),
                json.dumps({"checkpoint": note}).encode(),
            ]
        )
    )
    assert verify_bundle(b.read_bytes(), signer.verifier_key).ok  # a consistent history in itself
    code, out, _ = _cli("verify", str(b), "--key", signer.verifier_key.encode())
    assert code == 1 and "fork" in out.lower(), out
    other = tmp_path / "seen.note"
    other.write_text(json.loads(_lines(real)[-1])["checkpoint"])
    code, out, _ = _cli(
        "verify", str(b), "--no-pinned", "--key", signer.verifier_key.encode(), "--pin", str(other)
    )
    assert code == 1 and "fork" in out.lower(), out


def _fork(bodies: list[str], at: int) -> list[str]:
    """``bodies`` with entry ``at`` replaced (and the chain re-linked after it)."""
    out = bodies[:at]
    prev = leaf_hash(out[-1].encode()).hex() if out else GENESIS_PREV
    for i in range(at, len(bodies)):
        fields = json.loads(bodies[i])
        fields.pop("idx")
        fields.pop("prev")
        if i == at:
            fields["actor"] = "mallory"
        rest = canonical_json(fields)
        body = f'{{"idx":{i},"prev":"{prev}",{rest[1:]}'
        out.append(body)
        prev = leaf_hash(body.encode()).hex()
    return out


# --- keys, clocks, witnesses -----------------------------------------------------------------


def _vkey(name: str, key: Ed25519PrivateKey) -> VerifierKey:
    return VerifierKey(name, key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))


def test_key_planted_in_the_bundles_key_history_is_refused(exported: bytes, signer: AuditSigner) -> None:
    """A transition from the log's key to the attacker's, signed by the attacker's key only
    (twice, under both names), and the checkpoints re-signed with it. Held."""
    evil = Ed25519PrivateKey.generate()
    ek = _vkey(signer.name, evil)
    t = KeyTransition(signer.name, signer.verifier_key, ek, 2**62)
    planted = sign_note(t.text(), signer.name, evil, evil)
    head = {**_header(exported), "key_history": [planted], "vkey": ek.encode()}
    lines = _lines(exported)
    n = head["tree_size"]
    bodies = [x.decode() for x in lines[1 : 1 + n]]
    f = Frontier()
    for body in bodies:
        f.append(leaf_hash(body.encode()))
    root = base64.b64encode(f.root()).decode()
    note = sign_note(f"{signer.name}\n{n}\n{root}\ntimestamp {int(time.time() * 1000)}\n", signer.name, evil)
    data = _join(
        [
            json.dumps({**head, "checkpoints": 1}).encode(),
            *lines[1 : 1 + n],
            json.dumps({"checkpoint": note}).encode(),
        ]
    )
    report = verify_bundle(data, signer.verifier_key)
    assert not report.ok, report.summary()


def test_clock_set_back_an_hour_is_caught(exported: bytes, signer: AuditSigner) -> None:
    """A larger tree signed (with the real key) an hour before a smaller one. Held."""
    lines = _lines(exported)
    n = _header(exported)["tree_size"]
    bodies = [x.decode() for x in lines[1 : 1 + n]]
    now = int(time.time() * 1000)
    notes = [_signed(signer, bodies, 2, now), _signed(signer, bodies, n, now - 3600_000)]
    head = {**_header(exported), "checkpoints": 2}
    data = _join(
        [
            json.dumps(head).encode(),
            *lines[1 : 1 + n],
            *(json.dumps({"checkpoint": c}).encode() for c in notes),
        ]
    )
    report = verify_bundle(data, signer.verifier_key)
    assert not report.ok and "signed after" in " ".join(report.errors)


def _witness_key(name: str, key: Ed25519PrivateKey) -> WitnessKey:
    return WitnessKey(name, key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))


def _cosigned(data: bytes, signers: list[tuple[str, Ed25519PrivateKey]]) -> bytes:
    lines = _lines(data)
    n = _header(data)["tree_size"]
    out = lines[: 1 + n]
    for raw in lines[1 + n :]:
        note = json.loads(raw)["checkpoint"]
        text, _ = split_note(note)
        extra = [cosign(text, name, key, int(time.time())) for name, key in signers]
        out.append(json.dumps({"checkpoint": add_signature_lines(note, extra)}).encode())
    return _join(out)


def test_one_witness_key_under_two_names_is_not_a_quorum_of_two(exported: bytes, signer: AuditSigner) -> None:
    """A cosignature signs the checkpoint and a time, not the witness's name: one key listed
    as two witnesses cosigned twice and met quorum 2 alone. The policy is refused now; so is a
    witness holding the log's own key."""
    k = Ed25519PrivateKey.generate()
    data = _cosigned(exported, [("w1.example", k), ("w2.example", k)])
    text = (
        f"log {signer.verifier_key.encode()}\nwitness {_witness_key('w1.example', k).encode()}\n"
        f"witness {_witness_key('w2.example', k).encode()}\nquorum 2\n"
    )
    try:
        policy = Policy.parse(text)
    except ValueError as e:
        assert "key of another witness" in str(e)
    else:
        report = verify_bundle(data, signer.verifier_key, policy=policy)
        assert not report.ok, "one key met a quorum of two"
    own = WitnessKey("w.example", signer.verifier_key.public_key)
    with pytest.raises(ValueError, match="log's own key"):
        Policy.parse(f"log {signer.verifier_key.encode()}\nwitness {own.encode()}\n")


def test_cosignature_moved_to_another_size_or_origin_does_not_count(
    exported: bytes, signer: AuditSigner
) -> None:
    """Held (round 12's class, new variant): the newest checkpoint's cosignature copied onto
    the older checkpoints, and a cosignature made for another origin."""
    k = Ed25519PrivateKey.generate()
    wk = _witness_key("w.example", k)
    policy = Policy.parse(f"log {signer.verifier_key.encode()}\nwitness {wk.encode()}\n")
    lines = _lines(exported)
    n = _header(exported)["tree_size"]
    notes = [json.loads(x)["checkpoint"] for x in lines[1 + n :]]
    newest_text, _ = split_note(notes[-1])
    line = cosign(newest_text, "w.example", k, int(time.time()))
    other = cosign(
        newest_text.replace(signer.name, "tre.audit/0000000000000000", 1), "w.example", k, int(time.time())
    )
    moved = [add_signature_lines(c, [line if c != notes[-1] else other]) for c in notes]
    data = _join([*lines[: 1 + n], *(json.dumps({"checkpoint": c}).encode() for c in moved)])
    report = verify_bundle(data, signer.verifier_key, policy=policy)
    assert not report.ok and report.checkpoints_witnessed == 0, report.errors


def test_refusal_entries_on_sqlite_appear_under_concurrent_refusals(app: FastAPI, engine: Engine) -> None:
    """Many refused requests from threads at once: every distinct key has its first entry and
    the repeats are all counted by shutdown (none dropped). Held for the first entries; the
    repeats' count needed the shutdown flush."""
    import concurrent.futures

    def hit(i: int) -> int:
        return client.get(f"/api/v1/jobs/x{i}", headers={"Authorization": f"Bearer t{i % 7}"}).status_code

    with TestClient(app) as client, concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert set(pool.map(hit, range(120))) == {401}
    refused = _refused(engine)
    total = sum(max(e["details"]["count"], 0) for e in refused)
    assert total == 120, refused
