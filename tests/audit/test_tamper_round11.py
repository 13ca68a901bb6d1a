"""Round 11 of the audit tamper run: an admin who also holds the signing key, and the
auditor's tools (``tre audit check``, ``tre audit checkpoint``, ``tre audit verify``).

The signing key lets its holder sign anything, so the server's own guard cannot stop a
rollback: only what someone *outside* the server kept (an auditor's saved checkpoint, a
witness's cosigned one) can. These tests roll real databases back with the real key and show
which of the documented procedures catch it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from tests.audit.conftest import export_bytes
from tests.audit.test_cli import live, seed  # noqa: F401, F811 - `live` is a fixture
from tests.audit.test_server_guard import append_one, build, client, rebuild_state  # noqa: F401
from tests.audit.test_tamper_round10 import evil, forge_tail  # noqa: F401 - `evil` is a fixture
from tests.audit.test_witness import Served, append, make_witness
from tre.audit import checkpoint
from tre.audit.check import check_log
from tre.audit.merkle import Frontier
from tre.audit.note import TIMESTAMP_EXT, Checkpoint, cosignatures, open_checkpoint
from tre.audit.signing import AuditSigner, get_signer, rotate_key
from tre.audit.verify import Policy, verify_bundle
from tre.audit.witness_server import WitnessError, encode_request
from tre.audit.witnessing import add_witness, witness_latest
from tre.cli.audit import app as audit_app
from tre.cli.client import CliError
from tre.config import Settings
from tre.store.db import session_factory, session_scope
from tre.store.models import AuditCheckpoint, AuditEntry

runner = CliRunner()


def _frontier(engine: Engine) -> Frontier:
    with session_scope(engine) as s:
        f = Frontier()
        for leaf in s.scalars(select(AuditEntry.leaf_hash).order_by(AuditEntry.idx)):
            f.append(bytes(leaf))
        return f


# --- tre audit check and a retired key --------------------------------------------------


def test_check_names_a_tip_signed_only_by_a_retired_key(log_engine: Engine, settings: Settings) -> None:
    """An insider holding a key rotated out (kept to verify history; perhaps rotated *because*
    it leaked) forges entries and signs the tip with it, backdated into the overlap. The server
    refuses to sign on top (round 10); `tre audit check`, the admin's tool for deciding what to
    restore, said `intact`."""
    build(log_engine)
    old = get_signer(settings.keys_dir)
    rotate_key(settings.keys_dir, 0)  # no overlap: the old key is retired at once
    time.sleep(0.01)
    append_one(log_engine)  # signed by the new key
    forge_tail(log_engine, 2)
    f = _frontier(log_engine)
    backdated = (f"{TIMESTAMP_EXT} {int(time.time() * 1000) - 60_000}",)
    note = AuditSigner(old.private_key, old.name).sign(Checkpoint(old.name, f.size, f.root(), backdated))
    with session_scope(log_engine) as s:
        s.add(AuditCheckpoint(tree_size=f.size, root_hash=f.root(), note=note))
    signer = get_signer(settings.keys_dir)
    with session_scope(log_engine) as s:
        _, problems = check_log(s, signer)
    assert any("signed only by a retired key" in p for p in problems), problems


def test_check_accepts_the_last_checkpoint_the_old_key_signed(log_engine: Engine, settings: Settings) -> None:
    """Right after a rotation without overlap the tip is the old key's last checkpoint (the one
    kept beside the key): that is the log's own history, not a problem."""
    build(log_engine)
    rotate_key(settings.keys_dir, 0)
    time.sleep(0.01)
    signer = get_signer(settings.keys_dir)
    with session_scope(log_engine) as s:
        _, problems = check_log(s, signer)
    assert problems == []
    append_one(log_engine)
    with session_scope(log_engine) as s:
        _, problems = check_log(s, signer)
    assert problems == []


# --- A rollback by an admin who holds the signing key ------------------------------------


def roll_back(engine: Engine, keys_dir: Path, size: int) -> None:
    """What an admin with the database, the state folder and the key does to hide entries
    [size, ...): restore the tables to `size` (a backup, or deletes), put the checkpoint of that
    size back beside the key, rewind the witness state file, restart the server."""
    from sqlalchemy import delete

    from tre.audit import guard
    from tre.audit.guard import PIN_FILE
    from tre.audit.witnessing import WITNESS_STATE_FILE

    with session_scope(engine) as s:
        s.execute(delete(AuditEntry).where(AuditEntry.idx >= size))
        s.execute(delete(AuditCheckpoint).where(AuditCheckpoint.tree_size > size))
        note = s.scalar(
            select(AuditCheckpoint.note)
            .where(AuditCheckpoint.tree_size == size)
            .order_by(AuditCheckpoint.id.desc())
            .limit(1)
        )
    assert note is not None
    rebuild_state(engine)
    (keys_dir / PIN_FILE).write_text(note)
    state = keys_dir / WITNESS_STATE_FILE
    if state.exists():
        state.write_text(json.dumps({k: min(v, size) for k, v in json.loads(state.read_text()).items()}))
    with guard._pin_lock:  # a restarted server process remembers nothing
        guard._committed_here.clear()
        guard._tip_cache.clear()
    guard._pin_cache.clear()


def witness_policy(signer: AuditSigner, served: list[Served], quorum: int, urls: bool = True) -> str:
    lines = [f"log {signer.verifier_key.encode()}"]
    lines += [f"witness {w.witness.public_key.encode()}" + (f" {w.url}" if urls else "") for w in served]
    return "\n".join([*lines, f"quorum {quorum}", ""])


@pytest.fixture
def two_witnesses(settings: Settings, signer: AuditSigner, tmp_path: Path) -> Iterator[list[Served]]:
    served = [Served(make_witness(tmp_path, n, signer)) for n in ("dpo.hospital-a.example", "dpo.b.example")]
    for w in served:
        add_witness(settings.keys_dir, w.url, w.witness.public_key.encode())
    yield served
    for w in served:
        w.stop()


@pytest.mark.parametrize("then_append", [0, 4])
def test_a_rollback_with_the_key_is_caught_by_the_witnesses_checkpoints(
    log_engine: Engine,
    settings: Settings,
    signer: AuditSigner,
    two_witnesses: list[Served],
    tmp_path: Path,
    then_append: int,
) -> None:
    """The admin holds the key: the rolled-back log (and a fork grown on it, signed with the
    real key) verifies under a witness policy, because the bundle still ends at checkpoints the
    witnesses cosigned before. The witnesses remember the larger tree; `tre audit verify
    --policy` fetches what each cosigned and the bundle must contain it."""
    new = session_factory(log_engine)
    append(log_engine, 3)
    assert [o.status for o in witness_latest(new, signer)] == ["cosigned", "cosigned"]
    append(log_engine, 3, "hidden")
    assert [o.status for o in witness_latest(new, signer)] == ["cosigned", "cosigned"]
    size_hidden = two_witnesses[0].witness.latest(signer.name).split("\n")[1]

    roll_back(log_engine, settings.keys_dir, 3)
    append(log_engine, then_append, "fork", signer=get_signer(settings.keys_dir))
    with session_scope(log_engine) as s:
        checkpoint(s, max_age_s=0)  # a fresh signature, as the API's /checkpoint gives
    outcomes = witness_latest(new, signer)
    # They refuse: a witness that saw 6 entries never cosigns 3 (409, its size is larger),
    # nor a tree of 7 that does not extend its 6 (422).
    assert [o.status for o in outcomes] == ["conflict" if then_append == 0 else "refused"] * 2, outcomes

    data = export_bytes(log_engine, signer)
    bundle = tmp_path / "rolled-back.jsonl"
    bundle.write_bytes(data)
    pol_file = tmp_path / "witnesses.policy"
    pol_file.write_text(witness_policy(signer, two_witnesses, 2))
    pol = Policy.parse(pol_file.read_text())
    if then_append == 0:
        # The gap: the witnesses' cosigned checkpoint of size 3 is still in the bundle.
        assert verify_bundle(data, signer.verifier_key, policy=pol).ok
    res = runner.invoke(audit_app, ["verify", str(bundle), "--policy", str(pol_file)])
    assert res.exit_code == 1, res.output
    assert isinstance(res.exception, CliError)
    expected = "log truncated" if then_append == 0 else "fork"
    assert expected in str(res.exception) + res.output, (res.output, size_hidden)
    # Offline (no witness fetched), the same bundle passes: the fetch is what catches it.
    offline = runner.invoke(audit_app, ["verify", str(bundle), "--policy", str(pol_file), "--offline"])
    assert (offline.exit_code == 0) == (then_append == 0), offline.output


def test_witness_serves_what_it_cosigned_and_nothing_a_submitter_added(
    signer: AuditSigner, tmp_path: Path
) -> None:
    w = make_witness(tmp_path, "dpo.example", signer)
    with pytest.raises(WitnessError) as e:
        w.latest(signer.name)
    assert e.value.status == 404
    note = signer.sign(Checkpoint(signer.name, 0, hashlib.sha256(b"").digest(), ()))
    junk = f"\u2014 someone {base64.b64encode(b'x' * 68).decode()}\n"
    line = w.add_checkpoint(encode_request(0, [], note + junk))
    served = w.latest(signer.name)
    assert served == note + line and "someone" not in served
    assert cosignatures(served, [w.public_key]) and open_checkpoint(served, signer.verifier_key)


def test_checkpoint_with_a_policy_catches_a_rollback_on_a_live_server(
    live: str,  # noqa: F811 - the fixture
    engine: Engine,
    settings: Settings,
    signer: AuditSigner,
    two_witnesses: list[Served],
    tmp_path: Path,
) -> None:
    """`tre audit checkpoint --policy` against the real API: an auditor with no pin yet (a new
    one, or one whose pin is older than the hidden entries) sees the rolled-back log as
    consistent; the policy's witnesses' checkpoints make the same command fail."""
    new = session_factory(engine)
    assert [o.status for o in witness_latest(new, signer)] == ["cosigned", "cosigned"]
    with session_scope(engine) as s:
        kept = int(s.scalar(select(func.count(AuditEntry.idx))) or 0)
    seed(engine, 10, actor="carol")  # what the admin will hide
    assert [o.status for o in witness_latest(new, signer)] == ["cosigned", "cosigned"]
    pol_file = tmp_path / "witnesses.policy"
    pol_file.write_text(witness_policy(signer, two_witnesses, 2))
    key = signer.verifier_key.encode()
    ok = runner.invoke(audit_app, ["checkpoint", "--key", key, "--policy", str(pol_file)])
    assert ok.exit_code == 0, ok.output
    # It says the witnesses were asked (newcomer round 23: the line read as without --policy).
    assert "extends what the policy's witnesses cosigned (2 checkpoints, up to " in ok.output, ok.output
    for name in ("checkpoint.note", "log.vkey"):  # a new auditor from here on: no pin of their own
        (settings.home / "audit" / name).unlink()

    roll_back(engine, settings.keys_dir, kept)
    res = runner.invoke(audit_app, ["checkpoint", "--key", key, "--policy", str(pol_file)])
    assert isinstance(res.exception, CliError), res.output
    assert "ROLLBACK" in str(res.exception) or "FORK" in str(res.exception), res.exception
    assert not (settings.home / "audit" / "checkpoint.note").exists()  # nothing pinned
    # Without the witnesses' checkpoints the same auditor accepts the rolled-back log.
    blind = runner.invoke(audit_app, ["checkpoint", "--key", key])
    assert blind.exit_code == 0 and "first pin" in blind.output, blind.output


def test_a_witness_that_does_not_answer_with_its_own_cosignature_fails_the_check(
    log_engine: Engine, settings: Settings, signer: AuditSigner, two_witnesses: list[Served], tmp_path: Path
) -> None:
    """The witness URL answers with another witness's checkpoint (a server in the middle, or a
    malicious witness), or nobody listens: fewer valid answers than the quorum is an error, not
    a silent skip that would hide a rollback again."""
    from tests.ports import free_port

    append(log_engine, 2)
    witness_latest(session_factory(log_engine), signer)
    bundle = tmp_path / "b.jsonl"
    bundle.write_bytes(export_bytes(log_engine, signer))
    a, b = two_witnesses
    pol_file = tmp_path / "p.policy"
    for url in (b.url, f"http://127.0.0.1:{free_port()}", f"{a.url}/nowhere"):
        pol_file.write_text(
            f"log {signer.verifier_key.encode()}\nwitness {a.witness.public_key.encode()} {url}\nquorum 1\n"
        )
        res = runner.invoke(audit_app, ["verify", str(bundle), "--policy", str(pol_file), "--no-pinned"])
        assert isinstance(res.exception, CliError), res.output
        assert "cannot rule out a rollback" in str(res.exception)
    pol_file.write_text(
        f"log {signer.verifier_key.encode()}\nwitness {a.witness.public_key.encode()} {a.url}\nquorum 1\n"
    )
    res = runner.invoke(audit_app, ["verify", str(bundle), "--policy", str(pol_file), "--no-pinned"])
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize(
    "url", ["ftp://w.example", "http://", "http://w.example/?x=1", "javascript:alert(1)", "http://w .example"]
)
def test_a_policy_witness_url_is_http_and_plain(signer: AuditSigner, url: str) -> None:
    from tre.audit.note import NoteError, WitnessKey

    w = WitnessKey("w.example", b"\x01" * 32).encode()
    with pytest.raises(NoteError, match="witness URL"):
        Policy.parse(f"log {signer.verifier_key.encode()}\nwitness {w} {url}\n")


# --- Time: the server's clock set back -----------------------------------------------------


def test_a_server_clock_set_back_never_signs_a_checkpoint_that_breaks_the_log(
    log_engine: Engine, signer: AuditSigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The log's order is its size; a larger tree signed more than the skew bound *before* a
    smaller one is an error for every verifier, forever (both checkpoints stay in the log). A
    server whose clock steps back an hour (a VM restored, NTP corrected, or an admin) signed
    exactly that, and the whole log failed verification from then on. Timestamps now never go
    back: a checkpoint is dated no earlier than the tip it extends."""
    from datetime import UTC, datetime, timedelta

    import tre.audit.log as log_mod

    build(log_engine, 3)
    real = datetime.now(UTC)

    class Behind(datetime):
        @classmethod
        def now(cls, tz: object = None) -> datetime:  # type: ignore[override]
            return real - timedelta(hours=1)

    monkeypatch.setattr(log_mod, "datetime", Behind)
    append_one(log_engine)
    with session_scope(log_engine) as s:
        checkpoint(s, max_age_s=None)
    monkeypatch.undo()
    report = verify_bundle(export_bytes(log_engine, signer), signer.verifier_key)
    assert report.ok, report.errors
    with session_scope(log_engine) as s:
        stamps = [
            open_checkpoint(n, signer.verifier_key).timestamp_ms
            for n in s.scalars(select(AuditCheckpoint.note).order_by(AuditCheckpoint.id))
        ]
    assert stamps == sorted(stamps), stamps


def test_checkpoint_refuses_one_signed_in_the_future(
    evil: dict[str, object],  # noqa: F811 - the fixture
    signer: AuditSigner,
) -> None:
    """A checkpoint dated ahead (signed in advance by whoever holds the key, to be replayed
    while the log is frozen, or a server clock far ahead) read as zero seconds old: it passed
    the staleness check for as long as its date lay ahead."""
    from tests.audit.test_tamper_round10 import _cli, _signed

    bodies = evil["bodies"]
    assert isinstance(bodies, list)
    now = int(time.time() * 1000)
    evil["checkpoint"] = {"note": _signed(signer, bodies, 2, now + 3_600_000)}
    code, out, exc = _cli("checkpoint")
    assert isinstance(exc, CliError) and "future" in str(exc), (out, exc)
    evil["checkpoint"] = {"note": _signed(signer, bodies, 2, now + 30_000)}  # within the skew
    code, out, exc = _cli("checkpoint")
    assert code == 0, (out, exc)


def test_two_auditors_compare_checkpoints_and_see_the_fork(
    live: str,  # noqa: F811 - the fixture
    engine: Engine,
    settings: Settings,
    signer: AuditSigner,
    tmp_path: Path,
) -> None:
    """A split view: the key's holder shows auditor B a history that forks from what auditor A
    pinned. B alone sees a consistent log; with A's checkpoint (exchanged out of band, as
    gossip) `tre audit checkpoint --seen` fails as a FORK, and `tre audit verify --pin` of a
    bundle as well."""
    key = signer.verifier_key.encode()
    with session_scope(engine) as s:
        kept = int(s.scalar(select(func.count(AuditEntry.idx))) or 0)
    seed(engine, 5, actor="carol")
    a = runner.invoke(audit_app, ["checkpoint", "--key", key])  # auditor A
    assert a.exit_code == 0, a.output
    a_note = tmp_path / "a.note"
    a_note.write_text((settings.home / "audit" / "checkpoint.note").read_text())
    for name in ("checkpoint.note", "log.vkey"):  # auditor B: a state folder of their own
        (settings.home / "audit" / name).unlink()

    roll_back(engine, settings.keys_dir, kept)
    seed(engine, 9, actor="dave")  # another history, longer than what A saw, signed with the key
    b = runner.invoke(audit_app, ["checkpoint", "--key", key])
    assert b.exit_code == 0, b.output  # alone, B cannot tell
    (settings.home / "audit" / "checkpoint.note").unlink()
    b = runner.invoke(audit_app, ["checkpoint", "--key", key, "--seen", str(a_note)])
    assert isinstance(b.exception, CliError) and "FORK" in str(b.exception), b.output
    bundle = tmp_path / "b.jsonl"
    assert runner.invoke(audit_app, ["export", str(bundle)]).exit_code == 0
    v = runner.invoke(audit_app, ["verify", str(bundle), "--key", key, "--pin", str(a_note), "--no-pinned"])
    assert isinstance(v.exception, CliError) and "fork" in str(v.exception) + v.output, v.output


def test_a_witness_trickling_its_answer_is_cut_off(
    log_engine: Engine, signer: AuditSigner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A malicious witness answering one byte at a time (each read well inside the per-read
    timeout) held `tre audit verify --policy` for as long as it liked; the whole answer now
    has a deadline, and the witness counts as not answering."""
    import socket
    import threading

    import tre.cli.audit as cli_audit
    from tests.ports import free_port

    monkeypatch.setattr(cli_audit, "WITNESS_DEADLINE_S", 1.0)
    port = free_port()
    srv = socket.create_server(("127.0.0.1", port))
    stop = threading.Event()

    def trickle() -> None:
        conn, _ = srv.accept()
        conn.recv(4096)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 60000\r\n\r\n")
        while not stop.is_set():
            try:
                conn.sendall(b"x")
            except OSError:
                break
            time.sleep(0.2)
        conn.close()

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    append(log_engine, 2)
    bundle = tmp_path / "b.jsonl"
    bundle.write_bytes(export_bytes(log_engine, signer))
    w = make_witness(tmp_path, "slow.example", signer).public_key.encode()
    pol = tmp_path / "p.policy"
    pol.write_text(f"log {signer.verifier_key.encode()}\nwitness {w} http://127.0.0.1:{port}\nquorum 1\n")
    started = time.monotonic()
    res = runner.invoke(audit_app, ["verify", str(bundle), "--policy", str(pol), "--no-pinned"])
    took = time.monotonic() - started
    stop.set()
    srv.close()
    assert isinstance(res.exception, CliError) and "cannot rule out a rollback" in str(res.exception)
    assert "within 1 s" in res.output, res.output
    assert took < 10, took


# --- Key rotation: a retired key introducing a key of its own --------------------------------


@pytest.mark.parametrize("thief_first", [False, True])
def test_two_handovers_from_one_key_are_a_forked_key_history(
    log_engine: Engine, settings: Settings, thief_first: bool
) -> None:
    """The log rotated A -> B (A leaked, say). Whoever holds A signs a transition A -> C with A
    and a key C of their own and puts it in the bundle's key history (or a server shows it).
    An auditor who pinned A followed whichever came first and ignored the other: the history
    verified (A -> B first), or the bundle failed only as an unexplained key change."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from tre.audit.note import VerifierKey, sign_note
    from tre.audit.verify import KeyTransition

    old = get_signer(settings.keys_dir)
    append(log_engine, 2)
    rotate_key(settings.keys_dir, 0)
    time.sleep(0.01)
    append(log_engine, 2, signer=get_signer(settings.keys_dir))
    new = get_signer(settings.keys_dir)
    thief = Ed25519PrivateKey.generate()
    c = VerifierKey(old.name, thief.public_key().public_bytes_raw())
    t = KeyTransition(old.name, old.verifier_key, c, 0)
    forged = sign_note(t.text(), old.name, old.private_key, thief)
    data = export_bytes(log_engine, new)
    header_raw, rest = data.split(b"\n", 1)
    header = json.loads(header_raw)
    assert len(header["key_history"]) == 1
    header["key_history"] = (
        [forged, *header["key_history"]] if thief_first else [*header["key_history"], forged]
    )
    report = verify_bundle(json.dumps(header).encode() + b"\n" + rest, old.verifier_key)
    assert any("key history forks" in e for e in report.errors), report.errors
    # The honest history alone still verifies for the same auditor.
    assert verify_bundle(data, old.verifier_key).ok


def test_checkpoint_refuses_a_server_showing_a_forked_key_history(
    evil: dict[str, object],  # noqa: F811 - the fixture
    signer: AuditSigner,
) -> None:
    """`tre audit checkpoint` followed the server's key history and dropped what was wrong
    with it: a server (holding a leaked key) showing two hand-overs from the pinned key had the
    auditor follow the first."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from tests.audit.test_tamper_round10 import _cli
    from tre.audit.note import VerifierKey, sign_note
    from tre.audit.verify import KeyTransition

    handovers = []
    for _ in range(2):
        k = Ed25519PrivateKey.generate()
        t = KeyTransition(
            signer.name, signer.verifier_key, VerifierKey(signer.name, k.public_key().public_bytes_raw()), 0
        )
        handovers.append(sign_note(t.text(), signer.name, signer.private_key, k))
    evil["public-key"] = {"vkey": signer.verifier_key.encode(), "key_history": handovers}
    code, out, exc = _cli("checkpoint", "--key", signer.verifier_key.encode(), "--max-age", str(10**10))
    assert isinstance(exc, CliError) and "key history forks" in str(exc), (out, exc)


# --- Tiles and entries written behind the log's back ---------------------------------------


def test_tiles_never_serve_rows_beyond_the_signed_tree(
    client: tuple[TestClient, dict[str, str]],  # noqa: F811 - the fixture
    engine: Engine,
) -> None:
    """An insider without the key appends well-formed entries straight into the tables. The
    server refuses to sign them (round 10: /checkpoint answers 503), but the tile endpoints
    served them as part of the log (hash tiles and entry bundles of the stored size, so a
    full tile of forged rows would have gone out marked immutable). Tiles now stop at the
    newest signed checkpoint."""
    c, h = client
    note = c.get("/api/v1/audit/tlog/checkpoint", headers=h)
    assert note.status_code == 200
    size = int(note.text.split("\n")[1])
    forge_tail(engine, 2)
    for path in (f"entries/000.p/{size + 2}", f"0/000.p/{size + 2}", f"entries/000.p/{size + 1}"):
        r = c.get(f"/api/v1/audit/tlog/tile/{path}", headers=h)
        assert r.status_code == 404, (path, r.status_code)
        assert b"mallory" not in r.content
    signed = c.get(f"/api/v1/audit/tlog/tile/0/000.p/{size}", headers=h)
    assert signed.status_code == 200 and len(signed.content) == 32 * size
    # The signed entries too are withheld while the log cannot record their read (round 16:
    # an entry-bundle read is `audit.entries_read`; audited reads fail closed, as /entries does).
    from tre.audit import events

    events._reads.seen.clear()  # reads aggregate per process: another test's read is not this one's
    bodies = c.get(f"/api/v1/audit/tlog/tile/entries/000.p/{size}", headers=h)
    assert bodies.status_code == 503 and b"mallory" not in bodies.content
    assert bodies.json()["type"].endswith(":audit-log-damaged")
    assert c.get("/api/v1/audit/tlog/checkpoint", headers=h).status_code == 503
