"""C2SP tlog-witness both ways: real witness servers on loopback, one offline; the log
submits; the verifier demands a quorum; an operator who rewrites history and re-signs it
with the real key is caught by the witnesses."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine, select

from tests.audit.conftest import export_bytes
from tests.ports import free_port as _free_port
from tre.audit import AuditEvent, record_events
from tre.audit.log import latest_checkpoint
from tre.audit.note import Checkpoint as CP
from tre.audit.note import (
    NoteError,
    VerifierKey,
    WitnessKey,
    cosign,
    cosignatures,
    sign_checkpoint,
    split_note,
)
from tre.audit.signing import AuditSigner
from tre.audit.verify import Policy, verify_bundle
from tre.audit.witness_server import (
    Witness,
    WitnessError,
    create_witness_app,
    encode_request,
    load_or_create_key,
)
from tre.audit.witnessing import WITNESS_STATE_FILE, add_witness, witness_latest
from tre.config import Settings
from tre.store.db import init_db, make_engine, session_factory, session_scope
from tre.store.models import AuditCheckpoint


class Served:
    def __init__(self, witness: Witness) -> None:
        self.witness = witness
        self.port = _free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(create_witness_app(witness), host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def make_witness(tmp_path: Path, name: str, signer: AuditSigner) -> Witness:
    key = load_or_create_key(tmp_path / name / "key.pem")
    return Witness(name, key, tmp_path / name / "state.json", [signer.verifier_key])


@pytest.fixture
def witnesses(
    log_engine: Engine, settings: Settings, signer: AuditSigner, tmp_path: Path
) -> Iterator[tuple[Served, Served, WitnessKey]]:
    a = Served(make_witness(tmp_path, "dpo.hospital-a.example", signer))
    b = Served(make_witness(tmp_path, "dpo.hospital-b.example", signer))
    offline_key = WitnessKey("offline.example", Ed25519PrivateKey.generate().public_key().public_bytes_raw())
    for w in (a, b):
        add_witness(settings.keys_dir, w.url, w.witness.public_key.encode())
    add_witness(settings.keys_dir, f"http://127.0.0.1:{_free_port()}", offline_key.encode())  # nobody listens
    yield a, b, offline_key
    a.stop()
    b.stop()


def append(engine: Engine, n: int, tag: str = "", signer: AuditSigner | None = None) -> None:
    for i in range(n):
        with session_scope(engine) as s:
            record_events(
                s, [AuditEvent("u1", "dataset.read", dataset_id=f"d{i}", details={"t": tag})], signer=signer
            )


def policy(signer: AuditSigner, keys: list[WitnessKey], quorum: int) -> Policy:
    lines = [
        f"log {signer.verifier_key.encode()}",
        *(f"witness {k.encode()}" for k in keys),
        f"quorum {quorum}",
    ]
    return Policy.parse("\n".join(lines) + "\n")


def test_two_witnesses_cosign_one_offline(
    log_engine: Engine, signer: AuditSigner, witnesses: tuple[Served, Served, WitnessKey]
) -> None:
    a, b, offline = witnesses
    append(log_engine, 5)
    outcomes = {o.witness: o.status for o in witness_latest(session_factory(log_engine), signer, timeout_s=2)}
    assert outcomes == {a.witness.name: "cosigned", b.witness.name: "cosigned", "offline.example": "offline"}
    append(log_engine, 3)
    # The next round needs a consistency proof from size 5.
    assert {o.status for o in witness_latest(session_factory(log_engine), signer, timeout_s=2)} == {
        "cosigned",
        "offline",
    }
    with session_scope(log_engine) as s:
        note = latest_checkpoint(s).note  # type: ignore[union-attr]
    keys = [a.witness.public_key, b.witness.public_key, offline]
    assert set(cosignatures(note, keys)) == {a.witness.public_key.encode(), b.witness.public_key.encode()}

    data = export_bytes(log_engine, signer)
    report = verify_bundle(data, None, (), policy(signer, keys, 2))
    assert report.ok and report.checkpoints_witnessed == 2, report.errors
    report = verify_bundle(data, None, (), policy(signer, keys, 3))  # the offline one is needed
    assert not report.ok and "cosigned by 3" in report.errors[-1]


def test_unwitnessed_tail_fails_under_a_policy(
    log_engine: Engine, signer: AuditSigner, witnesses: tuple[Served, Served, WitnessKey]
) -> None:
    a, b, _ = witnesses
    append(log_engine, 4)
    witness_latest(session_factory(log_engine), signer, timeout_s=2)
    append(log_engine, 2)  # signed by the log, never shown to a witness
    report = verify_bundle(
        export_bytes(log_engine, signer),
        None,
        (),
        policy(signer, [a.witness.public_key, b.witness.public_key], 1),
    )
    assert not report.ok and report.first_bad_index == 4, report.errors


def test_operator_rewrite_resigned_with_the_real_key_is_refused(
    log_engine: Engine,
    signer: AuditSigner,
    settings: Settings,
    witnesses: tuple[Served, Served, WitnessKey],
    tmp_path: Path,
) -> None:
    a, b, _ = witnesses
    append(log_engine, 6)
    witness_latest(session_factory(log_engine), signer, timeout_s=2)
    # The operator rebuilds a different history in a fresh database and signs it with the real
    # key (bypassing tre's own guard), then submits it to the same witnesses.
    other = make_engine(f"sqlite:///{tmp_path / 'rewritten.db'}")
    init_db(other)
    rogue_signer = dataclasses.replace(signer, keys_dir=None)
    append(other, 9, tag="rewritten", signer=rogue_signer)
    outcomes = witness_latest(
        session_factory(other), dataclasses.replace(signer, keys_dir=settings.keys_dir), timeout_s=2
    )
    statuses = {o.witness: o.status for o in outcomes}
    with session_scope(other) as s:
        note = latest_checkpoint(s).note  # type: ignore[union-attr]
    assert statuses[a.witness.name] == statuses[b.witness.name] == "refused", outcomes
    keys = [a.witness.public_key, b.witness.public_key]
    assert cosignatures(note, keys) == {}
    report = verify_bundle(export_bytes(other, signer), None, (), policy(signer, keys, 1))
    assert not report.ok
    # Lying about the old size does not help: the witness answers 409 with the truth.
    body = encode_request(0, [], note)
    r = httpx.post(f"{a.url}/add-checkpoint", content=body)
    assert (
        r.status_code == 409
        and r.text.strip() == "6"
        and r.headers["content-type"].startswith("text/x.tlog.size")
    )
    other.dispose()


def test_log_resyncs_after_409(
    log_engine: Engine, signer: AuditSigner, settings: Settings, witnesses: tuple[Served, Served, WitnessKey]
) -> None:
    append(log_engine, 3)
    witness_latest(session_factory(log_engine), signer, timeout_s=2)
    (settings.keys_dir / WITNESS_STATE_FILE).unlink()  # the log forgot what the witnesses saw
    append(log_engine, 2)
    statuses = [o.status for o in witness_latest(session_factory(log_engine), signer, timeout_s=2)]
    assert statuses.count("cosigned") == 2


def test_witness_answers_per_protocol(signer: AuditSigner, tmp_path: Path) -> None:
    w = make_witness(tmp_path, "w.example", signer)
    leaf = hashlib.sha256(b"\x00x").digest()
    note1 = signer.sign(CP(signer.name, 1, leaf, ("timestamp 1",)))
    line = w.add_checkpoint(encode_request(0, [], note1))
    text, _ = split_note(note1)
    assert w.public_key.verify(text, base64.b64decode(line.split(" ")[-1])[4:]) is not None
    stranger = Ed25519PrivateKey.generate()
    forged = sign_checkpoint(CP(signer.name, 2, leaf, ()), signer.name, stranger)
    unknown = sign_checkpoint(CP("other.log", 1, leaf, ()), "other.log", stranger)
    for body, status in (
        (encode_request(1, [], forged), 403),
        (encode_request(0, [], unknown), 404),
        (encode_request(0, [], note1), 409),
        (encode_request(1, [b"\x00" * 32], signer.sign(CP(signer.name, 2, leaf, ()))), 422),
        (b"old 01\n\n" + note1.encode(), 400),
        (b"old 1\n" + b"AAAA\n" * 64 + b"\n" + note1.encode(), 400),
    ):
        with pytest.raises(WitnessError) as err:
            w.add_checkpoint(body)
        assert err.value.status == status, (status, err.value.message)
    # State survives a restart.
    again = Witness("w.example", w.key, w.state_file, [signer.verifier_key])
    with pytest.raises(WitnessError) as err:
        again.add_checkpoint(encode_request(0, [], note1))
    assert err.value.status == 409 and err.value.message.strip() == "1"


def test_cosignature_format_and_key_id() -> None:
    """cosignature/v1 per C2SP: key ID over name || 0x0A || 0x04 || key; blob = id || time || sig,
    signing "cosignature/v1\\ntime <t>\\n" + the checkpoint body."""
    priv = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    pub = priv.public_key().public_bytes_raw()
    key = WitnessKey("witness.example", pub)
    assert key.key_id == hashlib.sha256(b"witness.example\n\x04" + pub).digest()[:4]
    assert WitnessKey.parse(key.encode()) == key
    body = "example.org/log\n7\n" + base64.b64encode(b"\x01" * 32).decode() + "\n"
    line = cosign(body, "witness.example", priv, 1_700_000_000)
    blob = base64.b64decode(line.split(" ")[-1])
    assert blob[:4] == key.key_id and int.from_bytes(blob[4:12], "big") == 1_700_000_000
    priv.public_key().verify(blob[12:], b"cosignature/v1\ntime 1700000000\n" + body.encode())
    assert key.verify(body, blob[4:]) == 1_700_000_000
    assert key.verify(body.replace("7", "8"), blob[4:]) is None
    with pytest.raises(ValueError):
        VerifierKey.parse(key.encode())  # a cosigning key is not a log key


def test_export_endpoint_ends_at_a_witnessed_checkpoint(
    log_engine: Engine, signer: AuditSigner, witnesses: tuple[Served, Served, WitnessKey]
) -> None:
    """What the API's export does before planning (no explicit size)."""
    a, b, _ = witnesses
    append(log_engine, 3)
    witness_latest(session_factory(log_engine), signer, timeout_s=2)
    with session_scope(log_engine) as s:
        size = latest_checkpoint(s).tree_size  # type: ignore[union-attr]
        rows = s.scalars(select(AuditCheckpoint).where(AuditCheckpoint.tree_size == size)).all()
        assert any(cosignatures(r.note, [a.witness.public_key]) for r in rows)


def test_cosignature_layout_matches_the_c2sp_example() -> None:
    """The C2SP tlog-cosignature example's witness line decodes as id(4) || time(8) || sig(64),
    the layout WitnessKey.verify reads (its key is not published, so only the layout is checked)."""
    blob = base64.b64decode(
        "jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA=="
    )
    assert len(blob) == 4 + 8 + 64
    assert int.from_bytes(blob[4:12], "big") == 1679315147  # 2023-03-20, a plausible cosigning time
    note = (
        "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n"
        "\u2014 witness.example.com/w1 " + base64.b64encode(blob).decode() + "\n"
    )
    _, sigs = split_note(note)
    assert sigs == [("witness.example.com/w1", blob[:4], blob[4:])]


def test_tre_witness_serve_command(signer: AuditSigner, tmp_path: Path) -> None:
    """`tre witness key` and `tre witness serve` as a witness operator runs them."""
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo), "TRE_HOME": str(tmp_path / "witness-home")}
    cli = [sys.executable, "-c", "from tre.cli.main import run; run()", "witness"]
    key = subprocess.run(
        [*cli, "key", "--name", "dpo.example"], capture_output=True, text=True, env=env, timeout=60
    )
    assert key.returncode == 0, key.stderr
    wkey = WitnessKey.parse(key.stdout.strip())
    port = _free_port()
    proc = subprocess.Popen(
        [*cli, "serve", "--name", "dpo.example", "--log", signer.verifier_key.encode(), "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        leaf = hashlib.sha256(b"\x00x").digest()
        note = signer.sign(CP(signer.name, 1, leaf, ("timestamp 1",)))
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.post(f"http://127.0.0.1:{port}/add-checkpoint", content=encode_request(0, [], note))
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline and proc.poll() is None, (
                    proc.stderr.read() if proc.stderr else ""
                )
                time.sleep(0.2)
        assert r.status_code == 200, r.text
        assert cosignatures(note + r.text, [wkey]) != {}
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.mark.parametrize(("named", "words"), [(1, "the 1 witness it names"), (2, "the 2 witnesses it names")])
def test_a_quorum_over_the_witnesses_named_says_how_many(named: int, words: str) -> None:
    """Newcomer round 23: 'quorum 2 exceeds its 1 witnesses'."""
    keys = [
        WitnessKey(f"w{i}.example", Ed25519PrivateKey.generate().public_key().public_bytes_raw())
        for i in range(named)
    ]
    log = VerifierKey("log.example", Ed25519PrivateKey.generate().public_key().public_bytes_raw())
    text = "\n".join([f"log {log.encode()}", *(f"witness {k.encode()}" for k in keys), f"quorum {named + 1}"])
    with pytest.raises(NoteError, match=f"policy quorum {named + 1} exceeds {words}$"):
        Policy.parse(text + "\n")
