"""Tamper round 15: an insider with write access to the database or the state directory, and
someone holding an old (rotated-out) key.

Variants: rows deleted and the chain re-linked, signed with a rotated-out key; a checkpoint
rolled back to an older size; two checkpoints of one size shown to two auditors; tiles
replayed from an older tree; a witness cosignature over another origin line; timestamps moved
while the hashes are kept; a node's checkpoints sent to the hub twice, out of order, or forked;
a bundle with trailing data or other line endings. Each test says which command catches it
and whether it did before this round (docs/audit.md, *Tamper rounds*).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from sqlalchemy import Engine, delete, select, update

from tests.audit.conftest import export_bytes
from tests.audit.test_cli import seed
from tests.audit.test_tamper_round10 import _cli
from tests.federation.hubkit import signed
from tests.federation.test_hub_api import IMAGE, hub  # noqa: F401 - `hub` is a fixture
from tre.audit import configure
from tre.audit.check import check_log
from tre.audit.guard import AuditLogDamaged
from tre.audit.log import canonical_json
from tre.audit.merkle import GENESIS_PREV, Frontier, TreeLevels, leaf_hash
from tre.audit.note import (
    TIMESTAMP_EXT,
    Checkpoint,
    VerifierKey,
    WitnessKey,
    add_signature_lines,
    cosign,
    open_checkpoint,
    sign_checkpoint,
    split_note,
)
from tre.audit.signing import KEY_FILE, PIN_FILE, AuditSigner, get_signer, rotate_key
from tre.audit.tile_verify import TileError, verify_tiles
from tre.audit.verify import Policy, verify_bundle
from tre.audit.witness_server import Witness, WitnessError, encode_request
from tre.config import Settings
from tre.federation.wire import child_id
from tre.store.db import session_scope
from tre.store.models import AuditCheckpoint, AuditEntry, AuditState


def _lines(data: bytes) -> list[bytes]:
    return data.rstrip(b"\n").split(b"\n")


def _join(lines: list[bytes]) -> bytes:
    return b"\n".join(lines) + b"\n"


def _header(data: bytes) -> dict[str, Any]:
    return json.loads(_lines(data)[0])  # type: ignore[no-any-return]


def _relinked(bodies: list[str]) -> list[str]:
    """``bodies`` renumbered from 0 with the hash chain rebuilt (what an insider writes after
    deleting rows)."""
    out: list[str] = []
    prev = GENESIS_PREV
    for i, b in enumerate(bodies):
        fields = json.loads(b)
        fields.pop("idx")
        fields.pop("prev")
        body = f'{{"idx":{i},"prev":"{prev}",{canonical_json(fields)[1:]}'
        out.append(body)
        prev = leaf_hash(body.encode()).hex()
    return out


def _bodies(engine: Engine) -> list[str]:
    with session_scope(engine) as s:
        return list(s.scalars(select(AuditEntry.body).order_by(AuditEntry.idx)))


def _write_tree(engine: Engine, bodies: list[str], note: str) -> None:
    """Replace the stored log with ``bodies`` and one checkpoint ``note``, frontier rebuilt."""
    f = Frontier()
    with session_scope(engine) as s:
        s.execute(delete(AuditEntry))
        s.execute(delete(AuditCheckpoint))
        for i, b in enumerate(bodies):
            h = leaf_hash(b.encode())
            f.append(h)
            fields = json.loads(b)
            s.add(
                AuditEntry(
                    idx=i,
                    body=b,
                    leaf_hash=h,
                    timestamp=_ts(fields["ts"]),
                    actor=fields["actor"],
                    action=fields["action"],
                )
            )
        cp = open_checkpoint(note, _any_key(note))
        s.add(AuditCheckpoint(tree_size=cp.tree_size, root_hash=cp.root_hash, note=note))
        s.execute(update(AuditState).values(tree_size=f.size, frontier=[h.hex() for h in f.hashes]))


def _ts(text: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00"))


_KEYS: dict[str, VerifierKey] = {}


def _any_key(note: str) -> VerifierKey:
    """The key the test registered as having signed ``note`` (see `_sign`)."""
    return _KEYS[note]


def _sign(name: str, key: Ed25519PrivateKey, bodies: list[str], ts_ms: int) -> str:
    root = TreeLevels([leaf_hash(b.encode()) for b in bodies]).root()
    note = sign_checkpoint(Checkpoint(name, len(bodies), root, (f"{TIMESTAMP_EXT} {ts_ms}",)), name, key)
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    _KEYS[note] = VerifierKey(name, key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
    return note


# --- 1. rows deleted, the chain re-linked, signed with a rotated-out key --------------------------


@pytest.fixture
def rotated(engine: Engine, settings: Settings) -> Iterator[tuple[Ed25519PrivateKey, int]]:
    """A log of 3 entries signed by the first key, rotated (no overlap), then 3 more entries.
    Yields the first (now retired, leaked) private key and a time before the rotation."""
    configure(engine, settings.keys_dir)
    for _ in range(3):
        seed(engine, 1)
    old = load_pem_private_key((settings.keys_dir / KEY_FILE).read_bytes(), None)
    assert isinstance(old, Ed25519PrivateKey)
    before = int(time.time() * 1000)
    time.sleep(0.01)
    rotate_key(settings.keys_dir, overlap_s=0)
    time.sleep(0.01)
    for _ in range(3):
        seed(engine, 1)
    yield old, before


def _forge_with_old_key(engine: Engine, signer: AuditSigner, old: Ed25519PrivateKey, when: int) -> str:
    """Entry 1 (say, a vote) deleted, the rest re-linked, one checkpoint signed by the old key
    and dated before the rotation: stored in the database. Returns the forged note."""
    bodies = _relinked([b for i, b in enumerate(_bodies(engine)) if i != 1])
    note = _sign(signer.name, old, bodies, when)
    _write_tree(engine, bodies, note)
    return note


def test_rewrite_signed_with_a_rotated_out_key_is_refused_by_the_server(
    engine: Engine, settings: Settings, rotated: tuple[Ed25519PrivateKey, int]
) -> None:
    """Database only (the state folder untouched): the pin beside the key catches it, the
    server signs nothing more and `tre audit check` names it. Held."""
    old, when = rotated
    signer = get_signer(settings.keys_dir)
    _forge_with_old_key(engine, signer, old, when)
    with pytest.raises(AuditLogDamaged):
        seed(engine, 1)
    with session_scope(engine) as s:
        _, problems = check_log(s, signer)
    assert problems


def test_rewrite_signed_with_a_rotated_out_key_and_the_pin_replaced_is_refused(
    engine: Engine, settings: Settings, rotated: tuple[Ed25519PrivateKey, int]
) -> None:
    """Database *and* state folder: the forged checkpoint (old key, back-dated) also written
    beside the key as the last one signed. Was: the server took it as the checkpoint it signed
    last before the rotation and went on signing the forged history with the new key (auditors
    without a saved checkpoint or witnesses could not tell). Now the checkpoint kept beside the
    key must carry a signature of a key that signs now (a rotation co-signs it with the new
    key), so the server refuses, and so does `tre audit check`."""
    old, when = rotated
    signer = get_signer(settings.keys_dir)
    note = _forge_with_old_key(engine, signer, old, when)
    (settings.keys_dir / PIN_FILE).write_text(note)
    with pytest.raises(AuditLogDamaged):
        seed(engine, 1)
    with session_scope(engine) as s:
        _, problems = check_log(s, signer)
    assert problems


def test_rotation_cosigns_the_last_checkpoint_with_the_new_key(engine: Engine, settings: Settings) -> None:
    """A rotation without an append since (no overlap): the log keeps working, and the pin
    carries both keys' signatures."""
    configure(engine, settings.keys_dir)
    seed(engine, 2)
    rotate_key(settings.keys_dir, overlap_s=0)
    signer = get_signer(settings.keys_dir)
    pin = (settings.keys_dir / PIN_FILE).read_text()
    open_checkpoint(pin, signer.verifier_key)  # the new key signed it
    with session_scope(engine) as s:
        assert check_log(s, signer)[1] == []
    seed(engine, 1)  # and appends go on


def test_rewrite_signed_with_a_rotated_out_key_in_a_bundle(
    engine: Engine, settings: Settings, rotated: tuple[Ed25519PrivateKey, int], tmp_path: Path
) -> None:
    """The forged history as a bundle (the genuine header, its key history included): an
    auditor who verified the log before (remembered checkpoint) sees the fork; one with a
    witness policy sees no cosignature. A first-time auditor with neither cannot tell a
    leaked key's back-dated history from an old export (docs/audit.md). Held."""
    old, when = rotated
    signer = get_signer(settings.keys_dir)
    genuine = export_bytes(engine, signer)
    g = tmp_path / "genuine.jsonl"
    g.write_bytes(genuine)
    key = signer.verifier_key.encode()
    assert _cli("verify", str(g), "--key", key)[0] == 0
    bodies = _relinked([b for i, b in enumerate(_bodies(engine)) if i != 1])
    note = _sign(signer.name, old, bodies, when)
    head = {**_header(genuine), "tree_size": len(bodies), "checkpoints": 1}
    forged = _join(
        [json.dumps(head).encode(), *(b.encode() for b in bodies), json.dumps({"checkpoint": note}).encode()]
    )
    assert verify_bundle(forged, signer.verifier_key).ok  # alone: an old export, as far as it shows
    f = tmp_path / "forged.jsonl"
    f.write_bytes(forged)
    code, out, _ = _cli("verify", str(f), "--key", key)
    assert code == 1 and ("truncated" in out or "fork" in out.lower()), out
    w = Ed25519PrivateKey.generate()
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    wk = WitnessKey("w.example", w.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
    policy = Policy.parse(f"log {key}\nwitness {wk.encode()}\n")
    assert not verify_bundle(forged, signer.verifier_key, policy=policy).ok


# --- 2. a checkpoint rolled back to an older size -------------------------------------------------


def test_database_rolled_back_to_an_older_signed_size(
    engine: Engine, settings: Settings, signer: AuditSigner
) -> None:
    """Entries and checkpoints after size 2 deleted, the frontier rebuilt, the older genuine
    checkpoint left as the newest: the pin beside the key refuses it (appends 503, `check`). Held."""
    configure(engine, settings.keys_dir)
    for _ in range(4):
        seed(engine, 1)
    with session_scope(engine) as s:
        older = s.scalars(select(AuditCheckpoint).where(AuditCheckpoint.tree_size == 2)).first()
        assert older is not None
        note = older.note
    _KEYS[note] = signer.verifier_key
    _write_tree(engine, _bodies(engine)[:2], note)
    with pytest.raises(AuditLogDamaged):
        seed(engine, 1)
    with session_scope(engine) as s:
        assert check_log(s, signer)[1]


def test_database_and_pin_rolled_back_are_caught_by_the_auditor_and_the_witness(
    engine: Engine, settings: Settings, signer: AuditSigner, tmp_path: Path
) -> None:
    """The pin beside the key rolled back too (genuine older checkpoint, no key needed): the
    server cannot tell (documented); the auditor's remembered checkpoint and the witness can:
    `tre audit verify` says truncated, the witness refuses the shorter tree (409 with its size).
    Held."""
    configure(engine, settings.keys_dir)
    for _ in range(4):
        seed(engine, 1)
    bundle = tmp_path / "b.jsonl"
    bundle.write_bytes(export_bytes(engine, signer))
    key = signer.verifier_key.encode()
    assert _cli("verify", str(bundle), "--key", key)[0] == 0
    w = Witness("w.example", Ed25519PrivateKey.generate(), tmp_path / "w.json", [signer.verifier_key])
    with session_scope(engine) as s:
        notes = {c.tree_size: c.note for c in s.scalars(select(AuditCheckpoint))}
    w.add_checkpoint(encode_request(0, [], notes[4]))
    _KEYS[notes[2]] = signer.verifier_key
    _write_tree(engine, _bodies(engine)[:2], notes[2])
    (settings.keys_dir / PIN_FILE).write_text(notes[2])
    rolled = tmp_path / "rolled.jsonl"
    rolled.write_bytes(export_bytes(engine, signer))
    code, out, _ = _cli("verify", str(rolled), "--key", key)
    assert code == 1 and "truncated" in out, out
    with pytest.raises(WitnessError) as e:
        w.add_checkpoint(encode_request(2, [], notes[2]))
    assert e.value.status == 409


# --- 3. equivocation: two checkpoints of one size, one per auditor -----------------------------


def test_two_checkpoints_of_one_size_shown_to_two_auditors(
    engine: Engine, settings: Settings, signer: AuditSigner, tmp_path: Path
) -> None:
    """Signed with the real key (the key's holder equivocates): each bundle verifies alone;
    auditor B passing A's checkpoint (--pin) sees FORK, so does a bundle carrying both, and a
    witness that cosigned one refuses the other. Held."""
    configure(engine, settings.keys_dir)
    seed(engine, 3)
    real = export_bytes(engine, signer)
    bodies = [x.decode() for x in _lines(real)[1:4]]
    other = _relinked([bodies[0], bodies[2], bodies[1]])
    fake_note = signer.sign(
        Checkpoint(
            signer.name,
            3,
            TreeLevels([leaf_hash(b.encode()) for b in other]).root(),
            (f"{TIMESTAMP_EXT} {int(time.time() * 1000)}",),
        )
    )
    fake = _join(
        [
            json.dumps({**_header(real), "checkpoints": 1}).encode(),
            *(b.encode() for b in other),
            json.dumps({"checkpoint": fake_note}).encode(),
        ]
    )
    assert verify_bundle(fake, signer.verifier_key).ok
    a_note = json.loads(_lines(real)[-1])["checkpoint"]
    report = verify_bundle(fake, signer.verifier_key, [a_note])
    assert not report.ok and "fork" in " ".join(report.errors).lower()
    both = _join([*_lines(real), json.dumps({"checkpoint": fake_note}).encode()])
    both_head = {**_header(real), "checkpoints": _header(real)["checkpoints"] + 1}
    both = _join([json.dumps(both_head).encode(), *_lines(both)[1:]])
    assert "forked" in " ".join(verify_bundle(both, signer.verifier_key).errors)
    w = Witness("w.example", Ed25519PrivateKey.generate(), tmp_path / "w.json", [signer.verifier_key])
    w.add_checkpoint(encode_request(0, [], a_note))
    with pytest.raises(WitnessError):
        w.add_checkpoint(encode_request(3, [], fake_note))


# --- 4. tiles replayed from an older tree ------------------------------------------------------


def test_tiles_of_an_older_tree_under_the_newest_checkpoint(
    engine: Engine, settings: Settings, signer: AuditSigner
) -> None:
    """A mirror serving the newest checkpoint with the tiles and entry bundles it kept from an
    older tree (a partial tile grown since, or a tree later rewritten): named. Held."""
    configure(engine, settings.keys_dir)
    seed(engine, 3)
    seed(engine, 2)
    with session_scope(engine) as s:
        newest = s.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.tree_size.desc())).first()
        assert newest is not None
        note = newest.note
    bodies = [b.encode() for b in _bodies(engine)]
    n = len(bodies)
    old_bodies = bodies[:3]

    def fetch(path: str) -> bytes:
        # the older tree's level-0 tile and bundle, served under the new tree's names
        if path == f"tile/0/000.p/{n}":
            return b"".join(leaf_hash(b) for b in old_bodies) + bytes(32) * (n - 3)
        if path == f"tile/entries/000.p/{n}":
            return b"".join(len(b).to_bytes(2, "big") + b for b in old_bodies + [b"{}"] * (n - 3))
        raise AssertionError(path)

    with pytest.raises(TileError):
        verify_tiles(fetch, note, [signer.verifier_key], signer.name)


# --- 5. a witness cosignature over another origin line --------------------------------------


def test_cosignature_over_another_origin_line_does_not_count(
    engine: Engine, settings: Settings, signer: AuditSigner
) -> None:
    """A witness's genuine cosignature of the same size and root under another origin (a
    second log of the same operator) attached to this log's checkpoint: not a cosignature of
    it. And a checkpoint whose origin line is not the log's, signed by the log's key: refused
    by the witness and by verify. Held."""
    configure(engine, settings.keys_dir)
    seed(engine, 3)
    data = export_bytes(engine, signer)
    k = Ed25519PrivateKey.generate()
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    wk = WitnessKey("w.example", k.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
    policy = Policy.parse(f"log {signer.verifier_key.encode()}\nwitness {wk.encode()}\n")
    lines = _lines(data)
    note = json.loads(lines[-1])["checkpoint"]
    text, _ = split_note(note)
    other_text = text.replace(signer.name, "tre.audit/ffffffffffffffff", 1)
    line = cosign(other_text, "w.example", k, int(time.time()))
    lines[-1] = json.dumps({"checkpoint": add_signature_lines(note, [line])}).encode()
    report = verify_bundle(_join(lines), signer.verifier_key, policy=policy)
    assert not report.ok and report.checkpoints_witnessed == 0
    # The log's key over a checkpoint naming another origin.
    cp = open_checkpoint(note, signer.verifier_key)
    alien = sign_checkpoint(
        Checkpoint("tre.audit/ffffffffffffffff", cp.tree_size, cp.root_hash, cp.extensions),
        signer.name,
        signer.private_key,
    )
    lines[-1] = json.dumps({"checkpoint": alien}).encode()
    assert not verify_bundle(_join(lines), signer.verifier_key).ok
    w = Witness("w.example", k, Path(settings.home) / "w.json", [signer.verifier_key])
    with pytest.raises(WitnessError):
        w.add_checkpoint(encode_request(0, [], alien))


# --- 6. timestamps moved, hashes kept ---------------------------------------------------------


def test_timestamps_moved_in_the_columns_while_bodies_and_hashes_are_kept(
    engine: Engine, settings: Settings, signer: AuditSigner
) -> None:
    """The rows' ``timestamp`` copies and the checkpoints' ``created_at`` moved a year back,
    bodies and hashes untouched: nothing reads them for search, display or the guard (the
    body's ``ts`` is what is hashed). Was: `tre audit check` said "intact". Now it names the
    rows whose copies disagree with their bodies. Appends go on (the log itself is intact)."""
    configure(engine, settings.keys_dir)
    seed(engine, 3)
    with session_scope(engine) as s:
        for e in s.scalars(select(AuditEntry)):
            e.timestamp = e.timestamp - timedelta(days=365)
        for c in s.scalars(select(AuditCheckpoint)):
            c.created_at = c.created_at - timedelta(days=365)
    with session_scope(engine) as s:
        _, problems = check_log(s, signer)
    assert any("timestamp" in p for p in problems), problems
    seed(engine, 1)


def test_checkpoint_row_columns_moved_change_neither_the_answer_nor_the_re_signing(
    engine: Engine, settings: Settings, signer: AuditSigner
) -> None:
    """The newest checkpoint row's ``created_at`` moved a day ahead and its ``root_hash``
    column edited, the signed note untouched. Was: the re-signing every minute looked at the
    column and stopped for a day (auditors then saw a STALE log), and the API's checkpoint
    JSON showed the edited root and time. Now both come from the signed note."""
    from tre.audit.log import checkpoint, latest_checkpoint
    from tre.audit.service import checkpoint_json

    configure(engine, settings.keys_dir)
    seed(engine, 2)
    with session_scope(engine) as s:
        row = latest_checkpoint(s)
        assert row is not None
        original = row.note
        row.created_at = row.created_at + timedelta(days=1)
    time.sleep(0.05)
    with session_scope(engine) as s:
        fresh = checkpoint(s, max_age_s=0.01, signer=signer)
        assert fresh.note != original  # older than 10 ms by its signed time: signed again
    with session_scope(engine) as s:
        row = latest_checkpoint(s)
        assert row is not None
        row.root_hash = hashlib.sha256(b"edited").digest()
        row.created_at = row.created_at + timedelta(days=1)
        shown = checkpoint_json(row)
    signed = open_checkpoint(str(shown["note"]), signer.verifier_key)
    assert shown["root_hash"] == signed.root_hash.hex() and shown["tree_size"] == signed.tree_size
    assert signed.timestamp_ms is not None
    assert str(shown["timestamp"]).startswith(
        time.strftime("%Y-%m-%dT%H:%M", time.gmtime(signed.timestamp_ms / 1000))
    )


def test_a_body_timestamp_moved_is_caught_with_or_without_its_hash(
    engine: Engine, settings: Settings, signer: AuditSigner
) -> None:
    """The body's own ``ts`` edited (leaf hash kept, or recomputed): the body no longer hashes
    to its leaf, or the chain breaks at the next entry. Held."""
    configure(engine, settings.keys_dir)
    seed(engine, 3)
    with session_scope(engine) as s:
        row = s.get(AuditEntry, 1)
        assert row is not None
        fields = json.loads(row.body)
        moved = row.body.replace(fields["ts"], "2020-01-01T00:00:00.000000Z")
        row.body = moved
    with session_scope(engine) as s:
        assert check_log(s, signer)[1]
    assert not verify_bundle(export_bytes(engine, signer), signer.verifier_key).ok
    with session_scope(engine) as s:
        row = s.get(AuditEntry, 1)
        assert row is not None
        row.leaf_hash = leaf_hash(moved.encode())
    with session_scope(engine) as s:
        assert check_log(s, signer)[1]
    assert not verify_bundle(export_bytes(engine, signer), signer.verifier_key).ok


def test_checkpoint_timestamp_line_moved_breaks_its_signature(
    engine: Engine, settings: Settings, signer: AuditSigner
) -> None:
    """In a bundle: a checkpoint's ``timestamp`` line moved (root and size kept). Held."""
    configure(engine, settings.keys_dir)
    seed(engine, 3)
    data = export_bytes(engine, signer)
    lines = _lines(data)
    note = json.loads(lines[-1])["checkpoint"]
    text, _ = split_note(note)
    stamp = text.split("\n")[3]
    lines[-1] = json.dumps({"checkpoint": note.replace(stamp, f"{TIMESTAMP_EXT} 1000")}).encode()
    assert not verify_bundle(_join(lines), signer.verifier_key).ok


# --- 7. a node's checkpoints at the hub: twice, out of order, forked ---------------------------


def _release(client: Any, node: Any, checkpoint: str) -> Any:
    job = client.post(
        "/api/v1/jobs",
        json={"project_id": "fedlung", "image": IMAGE, "command": ["true"]},
        headers=client.tokens["alice"],
    ).json()["id"]
    cid = child_id(job, node.name)
    data = f"released for {job}\n".encode()
    sha = hashlib.sha256(data).hexdigest()
    put = signed(client, node, "PUT", f"/hub/v1/agent/children/{cid}/files/{sha}", raw=data)
    assert put.status_code == 200
    body = {
        "files": [{"name": "r.txt", "sha256": sha, "size": len(data)}],
        "disclosure_record": {
            "released": True,
            "files": [{"path": "r.txt", "sha256": sha, "size": len(data)}],
        },
        "checkpoint": checkpoint,
    }
    path = f"/hub/v1/agent/children/{cid}/release"
    return lambda: signed(client, node, "POST", path, body)


def _hub_entries(client: Any, action: str) -> list[dict[str, Any]]:
    with session_scope(client.hub_app.state.engine) as s:
        bodies = s.scalars(select(AuditEntry.body).order_by(AuditEntry.idx)).all()
    return [e for e in map(json.loads, bodies) if e["action"] == action]


def test_node_checkpoint_sent_twice_or_out_of_order(hub) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """The same release sent twice is one release; the same checkpoint with a second release
    is fine; an older one after a newer one is refused as a rollback, and (new) the refusal is
    an entry of the hub's log. Held (the entry is new)."""
    a = hub.nodes["a"]
    older, newer = a.checkpoint(), a.checkpoint()
    send = _release(hub, a, newer)
    assert send().status_code == 200
    assert send().status_code == 200  # twice: idempotent
    assert _release(hub, a, newer)().status_code == 200  # the same checkpoint again
    resp = _release(hub, a, older)()
    assert resp.status_code == 422 and resp.json()["type"].endswith("checkpoint-rollback"), resp.text
    got = _hub_entries(hub, "federation.node_checkpoint_refused")
    assert [(e["actor"], e["details"]["reason"]) for e in got] == [("node:node-a", "rollback")]
    assert len(_hub_entries(hub, "federation.results_received")) == 2


def test_node_checkpoint_of_the_same_size_with_another_root_is_a_fork(hub) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """Whoever holds the node's audit key signs a second checkpoint of the size the hub
    verified, over another tree (the node shows one history with each release). Was: taken
    (the hub kept the size only). Now refused as a fork and audited."""
    a = hub.nodes["a"]
    genuine = a.checkpoint()
    node_signer = get_signer(a.keys_dir)
    cp = open_checkpoint(genuine, node_signer.verifier_key)
    forked = node_signer.sign(
        Checkpoint(cp.origin, cp.tree_size, hashlib.sha256(b"other").digest(), cp.extensions)
    )
    assert _release(hub, a, genuine)().status_code == 200
    resp = _release(hub, a, forked)()
    assert resp.status_code == 422 and resp.json()["type"].endswith("checkpoint-fork"), resp.text
    got = _hub_entries(hub, "federation.node_checkpoint_refused")
    assert [e["details"]["reason"] for e in got] == ["fork"]


# --- 8. the verifier against a bundle with trailing data or other line endings ------------------


@pytest.fixture
def bundle(engine: Engine, settings: Settings, signer: AuditSigner) -> bytes:
    configure(engine, settings.keys_dir)
    seed(engine, 3)
    seed(engine, 2, actor="bob")
    return export_bytes(engine, signer)


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d + b"\n",  # a blank line after the end
        lambda d: d + b"trailing",
        lambda d: d + b'{"checkpoint":"x"}\n',
        lambda d: d + d,  # a second bundle appended
        lambda d: d.replace(b"\n", b"\r\n"),
        lambda d: d.replace(b"\n", b"\r"),
        lambda d: d.rstrip(b"\n").replace(b"\n", b"\r\n", 1) + b"\n",  # the header only
        lambda d: b"\xef\xbb\xbf" + d,  # a byte-order mark
    ],
    ids=["blank-line", "bytes", "extra-line", "two-bundles", "crlf", "cr", "crlf-header", "bom"],
)
def test_trailing_data_and_other_line_endings_fail_with_one_line(
    bundle: bytes, signer: AuditSigner, tmp_path: Path, change: Callable[[bytes], bytes]
) -> None:
    """Every variant fails `verify_bundle` and `tre audit verify` (exit 1, no traceback): a
    bundle has one spelling, the server's. Was: a UTF-8 byte-order mark, or a carriage return
    ending the header or checkpoint lines, verified (JSON ignores them); a converted bundle
    failed on its first entry's hash, not named; and every unreadable bundle also printed
    "key change: the key you gave (K) is not your pinned key (K)", the same key twice."""
    assert verify_bundle(bundle, signer.verifier_key).ok
    edited = change(bundle)
    assert edited != bundle
    assert not verify_bundle(edited, signer.verifier_key).ok
    path = tmp_path / "edited.jsonl"
    path.write_bytes(edited)
    code, out, exc = _cli("verify", str(path), "--no-pinned", "--key", signer.verifier_key.encode())
    assert code == 1 and "Traceback" not in out, (out, exc)
    assert "key change" not in out, out
