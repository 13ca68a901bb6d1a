"""Tamper round 13: crashes (real SIGKILL of real processes) in the middle of appends and of
key rotations, and a key history file forged or torn beside the key.

Each process here is a fresh interpreter (``subprocess``), so nothing cached in the test
process (signer, pin, tip caches) hides what a restarted server would see.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine, func, select

from tests.audit.conftest import export_bytes
from tests.audit.test_cli import live, seed  # noqa: F401 - `live` is a fixture
from tests.audit.test_tamper_round10 import _cli, _signed, evil  # noqa: F401 - `evil` is a fixture
from tre.audit import AuditEvent, record_events
from tre.audit.check import check_log
from tre.audit.note import VerifierKey, sign_note
from tre.audit.signing import (
    HISTORY_FILE,
    KEY_FILE,
    AuditKeyError,
    AuditSigner,
    get_signer,
    load_or_create_signer,
    rotate_key,
)
from tre.audit.verify import KeyTransition, verify_bundle
from tre.config import Settings
from tre.store.db import session_scope
from tre.store.models import AuditEntry

REPO = Path(__file__).resolve().parents[2]

# Appends forever (one event, or a batch of 3, per transaction) until killed; "ready" once its
# first transaction is in, so every round appends something however loaded the machine (at
# load 10+ two workers once got 3 entries in before five rounds of kills).
_APPENDER = """
import itertools, sys
from pathlib import Path
from tre.audit import AuditEvent, configure, record_events
from tre.store.db import make_engine, session_scope
engine = make_engine(sys.argv[1])
configure(engine, Path(sys.argv[2]))
for i in itertools.count():
    batch = [AuditEvent("w", "job.output", job_id=f"{sys.argv[3]}-{i}-{k}") for k in range(1 + 2 * (i % 2))]
    with session_scope(engine) as s:
        record_events(s, batch)
    if i == 0:
        print("ready", flush=True)
"""

# Appends a few events and exits 0 (a restarted server's first requests).
_RESTART = """
import sys
from pathlib import Path
from tre.audit import AuditEvent, configure, record_events
from tre.store.db import make_engine, session_scope
engine = make_engine(sys.argv[1])
configure(engine, Path(sys.argv[2]))
for i in range(3):
    with session_scope(engine) as s:
        record_events(s, [AuditEvent("restart", "job.start", job_id=f"r{i}")])
"""

# Rotates the key, SIGKILLing itself just before the n-th atomic file replacement (argv[2]):
# the process dies with the rotation's files half written, as a crash or an OOM kill would.
_ROTATE_KILLED = """
import os, signal, sys
from pathlib import Path
import tre.privatefile as pf
from tre.audit.signing import rotate_key
calls = [0]
real = pf.replace
def dying(path, data):
    if calls[0] == int(sys.argv[2]):
        os.kill(os.getpid(), signal.SIGKILL)
    calls[0] += 1
    real(path, data)
pf.replace = dying
rotate_key(Path(sys.argv[1]), overlap_s=float(sys.argv[3]))
print("completed", flush=True)
"""


def _python(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code), *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def _url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def _restart_and_append(engine: Engine, keys_dir: Path) -> None:
    done = subprocess.run(
        _python(_RESTART, _url(engine), str(keys_dir)),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def _append(engine: Engine, n: int = 3) -> None:
    for i in range(n):
        with session_scope(engine) as s:
            record_events(s, [AuditEvent("alice", "dataset.read", dataset_id=f"d{i}")])


def _pin_file(settings: Settings) -> list[str]:
    return [(settings.keys_dir / "audit-last-checkpoint.note").read_text()]


# --- crash mid-append --------------------------------------------------------------------


def test_sigkill_mid_append_at_random_points_then_restart_verifies(
    log_engine: Engine, settings: Settings, signer: AuditSigner
) -> None:
    """Two appending processes SIGKILLed at random moments, five times over; after a restart
    the log appends, `check` calls it intact, and the export verifies against the pinned key
    and the checkpoint kept beside the key (no gap, no duplicate, no unsigned tail)."""
    rng = random.Random(13)
    keys = str(settings.keys_dir)
    url = _url(log_engine)
    for round_no in range(5):
        procs = [
            subprocess.Popen(
                _python(_APPENDER, url, keys, f"{round_no}.{w}"),
                env=_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for w in (0, 1)
        ]
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready", (
                p.stderr.read() if p.stderr else ""
            )
        time.sleep(rng.uniform(0.3, 1.5))
        for p in procs:
            p.send_signal(signal.SIGKILL)
            time.sleep(rng.uniform(0, 0.05))
        for p in procs:
            p.wait(timeout=30)
            assert p.returncode == -signal.SIGKILL, p.stderr.read() if p.stderr else ""
            if p.stdout:
                p.stdout.close()
            if p.stderr:
                p.stderr.close()
    _restart_and_append(log_engine, settings.keys_dir)
    signer = get_signer(settings.keys_dir)
    with session_scope(log_engine) as s:
        size, problems = check_log(s, signer)
        stored = s.scalar(select(func.count()).select_from(AuditEntry))
        top = s.scalar(select(func.max(AuditEntry.idx)))
    assert problems == [] and size == stored and top == size - 1
    assert size > 10  # the workers really appended before they were killed
    report = verify_bundle(export_bytes(log_engine, signer), signer.verifier_key, _pin_file(settings))
    assert report.ok, report.errors
    assert report.tree_size == size


# --- crash mid-rotation ------------------------------------------------------------------


# Every kill point on SQLite; on PostgreSQL the middle one only: the crash is in the key
# files' replacement, after the hand-over's commit, which both stores commit alike (the five
# PostgreSQL cases cost ~75 s of CI's wall time for no other check).
@pytest.mark.parametrize(
    ("engine_any", "kill_at"),
    [*(("sqlite", k) for k in range(5)), ("postgresql", 2)],
    indirect=["engine_any"],
)
def test_sigkill_mid_rotation_keeps_one_key_history(
    log_engine: Engine, settings: Settings, signer: AuditSigner, kill_at: int
) -> None:
    """A rotation SIGKILLed before any of its file writes. After the restart the log must
    sign under one consistent key history: an auditor who pinned the old key, and one who
    pins the newest, both verify, before and after a later rotation (which used to fork the
    history: the killed rotation had recorded a hand-over to a key that was never installed)."""
    old = signer.verifier_key
    _append(log_engine)
    killed = subprocess.run(
        _python(_ROTATE_KILLED, str(settings.keys_dir), str(kill_at), "0"),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert killed.returncode in (-signal.SIGKILL, 0), killed.stderr[-3000:]
    _restart_and_append(log_engine, settings.keys_dir)
    rotate_key(settings.keys_dir, overlap_s=0)  # the next rotation, after the crash
    _restart_and_append(log_engine, settings.keys_dir)
    newest = get_signer(settings.keys_dir)
    data = export_bytes(log_engine, newest)
    for pinned in (old, newest.verifier_key):
        report = verify_bundle(data, pinned, _pin_file(settings))
        assert report.ok, (kill_at, pinned.encode(), report.errors)
    with session_scope(log_engine) as s:
        assert check_log(s, newest)[1] == []


# --- the key history beside the key --------------------------------------------------------


def _add_history_line(settings: Settings, note: str) -> None:
    with open(settings.keys_dir / HISTORY_FILE, "a") as f:
        f.write(json.dumps({"transition": note}) + "\n")


def _transition_note(
    origin: str, old: VerifierKey, new_key: Ed25519PrivateKey, *signers: Ed25519PrivateKey
) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    new = VerifierKey(origin, new_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
    t = KeyTransition(origin, old, new, int(time.time() * 1000) + 3_600_000)
    return sign_note(t.text(), origin, *signers)


def _forged_histories(signer: AuditSigner) -> dict[str, str]:
    attacker = Ed25519PrivateKey.generate()
    stranger = Ed25519PrivateKey.generate()
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    stranger_vkey = VerifierKey(
        signer.name, stranger.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    )
    return {
        # Signed by the attacker's key only: the log's key never handed over.
        "signed by the new key only": _transition_note(signer.name, signer.verifier_key, attacker, attacker),
        # A well-signed transition that does not start from any key of this log.
        "from a stranger's key": _transition_note(signer.name, stranger_vkey, attacker, stranger, attacker),
        # Signed by both keys (the insider holds the key file), but the active key is not the new one.
        "to a key that is not installed": _transition_note(
            signer.name, signer.verifier_key, attacker, signer.private_key, attacker
        ),
    }


@pytest.mark.parametrize(
    "variant", ["signed by the new key only", "from a stranger's key", "to a key that is not installed"]
)
def test_forged_key_history_stops_signing(
    log_engine: Engine, settings: Settings, signer: AuditSigner, variant: str
) -> None:
    """A transition appended to the history file that is not the log's own hand-over to its
    active key is refused at load (503 `audit-key-unavailable`, nothing signed): the server
    used to trust every key the file named, without checking a signature, for verifying the
    pin and the stored tip."""
    _append(log_engine)
    _add_history_line(settings, _forged_histories(signer)[variant])
    with pytest.raises(AuditKeyError, match="key history"):
        load_or_create_signer(settings.keys_dir)
    with pytest.raises(AuditKeyError), session_scope(log_engine) as s:
        record_events(s, [AuditEvent("alice", "dataset.read")])


def test_torn_key_history_line_is_named(log_engine: Engine, settings: Settings, signer: AuditSigner) -> None:
    """A history file whose last line was cut short (a disk full, a bad copy) stops signing
    with the file named, never a 500."""
    _append(log_engine)
    rotate_key(settings.keys_dir, overlap_s=0)
    path = settings.keys_dir / HISTORY_FILE
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(AuditKeyError, match=HISTORY_FILE):
        load_or_create_signer(settings.keys_dir)


def test_genuine_history_after_two_rotations_still_loads(
    log_engine: Engine, settings: Settings, signer: AuditSigner
) -> None:
    """The check above accepts the log's real history: a chain of hand-overs ending at the
    active key (two rotations, appends between them)."""
    _append(log_engine)
    rotate_key(settings.keys_dir, overlap_s=0)
    _append(log_engine)
    rotate_key(settings.keys_dir, overlap_s=0)
    _append(log_engine)
    loaded = load_or_create_signer(settings.keys_dir)
    assert len(loaded.history) == 2 and loaded.known_keys[-1] == loaded.verifier_key
    assert (settings.keys_dir / KEY_FILE).exists()
    report = verify_bundle(export_bytes(log_engine, loaded), signer.verifier_key)
    assert report.ok, report.errors


def test_key_file_restored_from_before_a_rotation_stops_signing(
    log_engine: Engine, settings: Settings, signer: AuditSigner
) -> None:
    """The key folder restored from a backup older than its key history (the retired key back
    as the active one): refused, naming the history, rather than signing with a retired key."""
    _append(log_engine)
    old_pem = (settings.keys_dir / KEY_FILE).read_bytes()
    rotate_key(settings.keys_dir, overlap_s=3600)
    _append(log_engine)
    (settings.keys_dir / KEY_FILE).write_bytes(old_pem)
    with pytest.raises(AuditKeyError, match="older backup"):
        load_or_create_signer(settings.keys_dir)
    with pytest.raises(AuditKeyError), session_scope(log_engine) as s:
        record_events(s, [AuditEvent("alice", "dataset.read")])


# --- every API error is a JSON problem -------------------------------------------------------

_HOSTILE = [
    "/api/v1/audit/entries/-1",
    "/api/v1/audit/entries/abc",
    "/api/v1/audit/entries/99999999999999999999999999",
    "/api/v1/audit/entries/5000",
    "/api/v1/audit/entries?limit=0",
    "/api/v1/audit/entries?limit=1000000000000",
    "/api/v1/audit/entries?after=-5",
    "/api/v1/audit/entries?after=1e3",
    "/api/v1/audit/entries?since=yesterday",
    "/api/v1/audit/entries?since=2026-01-01T00:00:00",
    "/api/v1/audit/entries?until=2026-13-01T00:00:00Z",
    "/api/v1/audit/entries?actor=" + "a" * 5000,
    "/api/v1/audit/entries?actor=%00",
    "/api/v1/audit/entries?details=1",
    "/api/v1/audit/proof/inclusion?index=-1&tree_size=2",
    "/api/v1/audit/proof/inclusion?index=3&tree_size=2",
    "/api/v1/audit/proof/inclusion?index=0&tree_size=99999999999999999999999",
    "/api/v1/audit/proof/inclusion?index=0&tree_size=4000",
    "/api/v1/audit/proof/inclusion?index=0",
    "/api/v1/audit/proof/consistency?first=3&second=2",
    "/api/v1/audit/proof/consistency?first=0&second=4000",
    "/api/v1/audit/proof/consistency?first=-1&second=2",
    "/api/v1/audit/proof/consistency?first=1&second=NaN",
    "/api/v1/audit/export?tree_size=2",
    "/api/v1/audit/export?tree_size=-1",
    "/api/v1/audit/export?tree_size=100000",
    "/api/v1/audit/export?max_checkpoints=-1",
    "/api/v1/audit/export?max_checkpoints=99999999999999999999999",
    "/api/v1/audit/tlog/tile/0/x001/000",
    "/api/v1/audit/tlog/tile/0/000.p/0",
    "/api/v1/audit/tlog/tile/0/000.p/256",
    "/api/v1/audit/tlog/tile/64/000",
    "/api/v1/audit/tlog/tile/entries/001",
    "/api/v1/audit/tlog/tile/entries/000.p/200",
    "/api/v1/audit/tlog/tile/../checkpoint",
    "/api/v1/audit/nothing-here",
]


@pytest.mark.parametrize("path", _HOSTILE)
def test_hostile_audit_requests_answer_json_problems(
    app: object, engine: Engine, settings: Settings, make_user: object, token_for: object, path: str
) -> None:
    """Every error an auditor can provoke on the audit API is a JSON problem with a reason
    (never a 500, an HTML page or a framework's bare JSON), and a valid tree answers 200."""
    from fastapi.testclient import TestClient

    configure_engine(engine, settings)
    with session_scope(engine) as s:
        make_user(s, "audrey", "auditor")  # type: ignore[operator]
        record_events(s, [AuditEvent("alice", "dataset.read", dataset_id=f"d{i}") for i in range(3)])
    headers = {"Authorization": f"Bearer {token_for('audrey', 'auditor')}"}  # type: ignore[operator]
    with TestClient(app) as c:  # type: ignore[arg-type]
        r = c.get(path, headers=headers)
    if r.status_code < 400:
        return  # a valid request (an empty search, a partial tile that exists)
    assert r.status_code < 500, (path, r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("application/problem+json"), (path, r.headers, r.text[:300])
    body = r.json()
    assert body["type"].startswith("urn:tre:problem:") and body["title"] and body.get("detail"), (path, body)
    assert "Traceback" not in r.text


def configure_engine(engine: Engine, settings: Settings) -> None:
    from tre.audit.signing import configure

    configure(engine, settings.keys_dir)


@pytest.mark.parametrize("kill_at", [1, 3])
def test_rotation_killed_while_two_processes_append(
    log_engine: Engine, settings: Settings, signer: AuditSigner, kill_at: int
) -> None:
    """Two processes append throughout while a third rotates the key and is SIGKILLed after
    the commit point (1: before anything is installed, 3: with the key not yet installed):
    the appenders finish the rotation themselves (one of them, under the rotation lock), no
    index is lost or doubled, and auditors pinned on either key verify."""
    old = signer.verifier_key
    _append(log_engine)
    keys, url = str(settings.keys_dir), _url(log_engine)
    procs = [
        subprocess.Popen(
            _python(_APPENDER, url, keys, f"k{w}"),
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in (0, 1)
    ]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        time.sleep(0.5)
        killed = subprocess.run(
            _python(_ROTATE_KILLED, keys, str(kill_at + 1), "3600"),
            env=_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
        time.sleep(1.5)
        for p in procs:
            assert p.poll() is None, p.stderr.read() if p.stderr else ""  # still appending
    finally:
        for p in procs:
            p.kill()
            p.wait(timeout=30)
            for f in (p.stdout, p.stderr):
                if f:
                    f.close()
    _restart_and_append(log_engine, settings.keys_dir)
    newest = get_signer(settings.keys_dir)
    assert newest.verifier_key != old and len(newest.history) == 1
    assert not (settings.keys_dir / "audit-ed25519.next.pem").exists()
    data = export_bytes(log_engine, newest)
    for pinned in (old, newest.verifier_key):
        report = verify_bundle(data, pinned, _pin_file(settings))
        assert report.ok, (pinned.encode(), report.errors)
    with session_scope(log_engine) as s:
        size, problems = check_log(s, newest)
        assert problems == [] and s.scalar(select(func.count()).select_from(AuditEntry)) == size


# Appends, and SIGKILLs itself at a chosen point of the n-th append (argv[3]): "commit" just
# after the database commit, before the pin file moves; "pin" with the new pin file written
# under its temporary name, before the rename; "flush" before the commit, entries written.
_APPEND_KILLED = """
import os, signal, sys
from pathlib import Path
import tre.audit.guard as guard
from tre.audit import AuditEvent, configure, record_events
from tre.store.db import make_engine, session_scope
engine = make_engine(sys.argv[1])
configure(engine, Path(sys.argv[2]))
point, n = sys.argv[3], int(sys.argv[4])
def die():
    os.kill(os.getpid(), signal.SIGKILL)
real_write, real_replace = guard.write_pin, os.replace
count = [0]
def write_pin(path, note, size):
    if point == "commit" and count[0] == n:
        die()
    return real_write(path, note, size)
def replace(src, dst):
    if point == "pin" and count[0] == n and str(dst).endswith("audit-last-checkpoint.note"):
        die()
    return real_replace(src, dst)
guard.write_pin = write_pin
guard.os.replace = replace
for i in range(n + 1):
    count[0] = i
    with session_scope(engine) as s:
        record_events(s, [AuditEvent("w", "job.output", job_id=f"{point}-{i}-{k}") for k in range(2)])
        if point == "flush" and i == n:
            s.flush()
            die()
"""


@pytest.mark.parametrize("point", ["flush", "commit", "pin"])
def test_sigkill_at_each_point_of_an_append(
    log_engine: Engine, settings: Settings, signer: AuditSigner, point: str
) -> None:
    """SIGKILL at the three points of an append where state outside one transaction could
    disagree (entries flushed, not committed; committed, pin not moved; new pin written, not
    renamed): after a restart, appends go on and the log verifies against the pin."""
    _append(log_engine)
    killed = subprocess.run(
        _python(_APPEND_KILLED, _url(log_engine), str(settings.keys_dir), point, "3"),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    _restart_and_append(log_engine, settings.keys_dir)
    fresh = get_signer(settings.keys_dir)
    with session_scope(log_engine) as s:
        size, problems = check_log(s, fresh)
    assert problems == []
    assert size == 3 + 2 * (3 + (point != "flush")) + 3  # the killed append committed unless "flush"
    report = verify_bundle(export_bytes(log_engine, fresh), fresh.verifier_key, _pin_file(settings))
    assert report.ok, report.errors
    assert report.tree_size == size


@pytest.mark.parametrize("damage", ["history removed", "history cut back", "overlap stretched"])
def test_retiring_key_must_match_the_history(
    log_engine: Engine, settings: Settings, signer: AuditSigner, damage: str
) -> None:
    """After two rotations, the history removed or cut back to its first transition (hiding
    the last hand-over from every auditor's bundle), or the overlap stretched so the retired
    key keeps signing: refused at load, nothing signed."""
    _append(log_engine)
    rotate_key(settings.keys_dir, overlap_s=0)
    _append(log_engine)
    rotate_key(settings.keys_dir, overlap_s=60)
    _append(log_engine)
    history = settings.keys_dir / HISTORY_FILE
    if damage == "history removed":
        history.unlink()
    elif damage == "history cut back":
        history.write_text(history.read_text().splitlines()[0] + "\n")
    else:
        (settings.keys_dir / "audit-rotation.json").write_text(json.dumps({"overlap_until_ms": 2**62}))
    with pytest.raises(AuditKeyError):
        load_or_create_signer(settings.keys_dir)
    with pytest.raises(AuditKeyError), session_scope(log_engine) as s:
        record_events(s, [AuditEvent("alice", "dataset.read")])


# --- auditor commands across a key rotation -------------------------------------------------


def test_tiles_follow_the_signed_key_history_of_the_server(
    live: str,  # noqa: F811
    engine: Engine,
    settings: Settings,
    tmp_path: Path,
) -> None:
    """After a rotation whose overlap has ended, `tre audit tiles` from an auditor who pinned
    the old key, and with a checkpoint another auditor saw before the rotation (`--seen`),
    follows the server's signed key history as `tre audit checkpoint` and `verify` do; it
    used to call both "not signed by the trusted key". A history the pinned key did not sign
    still fails."""
    from typer.testing import CliRunner

    from tre.cli.audit import app as audit_app
    from tre.cli.audit import state_dir

    runner = CliRunner()
    assert runner.invoke(audit_app, ["checkpoint"]).exit_code == 0  # pins the old key
    seen = tmp_path / "seen.note"
    seen.write_text((state_dir() / "checkpoint.note").read_text())
    rotate_key(settings.keys_dir, overlap_s=0)
    seed(engine, 2)
    res = runner.invoke(audit_app, ["tiles", "--seen", str(seen)])
    assert res.exit_code == 0, (res.output, res.exception)
    assert runner.invoke(audit_app, ["checkpoint"]).exit_code == 0  # moves the pin to the new key
    res = runner.invoke(audit_app, ["tiles", "--seen", str(seen)])
    assert res.exit_code == 0 and "tiles OK" in res.output, (res.output, res.exception)


def test_checkpoint_signed_only_by_a_retired_key_after_its_overlap_is_refused_online(
    evil: dict[str, object],  # noqa: F811
    signer: AuditSigner,
) -> None:
    """Whoever holds a retired key (rotated out because it leaked) runs a server that shows an
    auditor a fresh checkpoint signed by that key alone, long after its overlap: `tre audit
    checkpoint` refuses it as `verify` does for a bundle (it took it and pinned it; `tiles`,
    which did not follow the history at all, now applies the same rule)."""
    from tre.cli.client import CliError

    code, out, exc = _cli("checkpoint", "--max-age", str(10**10))  # pins the old key, size 2
    assert code == 0, (out, exc)
    new_key = Ed25519PrivateKey.generate()
    ended = KeyTransition(
        signer.name,
        signer.verifier_key,
        VerifierKey(signer.name, new_key.public_key().public_bytes_raw()),
        1_000,  # the overlap ended in 1970
    )
    evil["public-key"] = {
        "vkey": ended.new.encode(),
        "key_history": [sign_note(ended.text(), signer.name, signer.private_key, new_key)],
    }
    bodies = evil["bodies"]
    assert isinstance(bodies, list)
    evil["checkpoint"] = {"note": _signed(signer, bodies, 3, int(time.time() * 1000))}
    code, out, exc = _cli("checkpoint")
    assert isinstance(exc, CliError) and "retired key" in str(exc), (code, out, exc)


# --- the witness's own name ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "bad+name", "a b", "x\x1b[31my", "tab\tname", "nbsp\u00a0name"])
def test_witness_refuses_a_name_no_signed_note_can_carry(name: str, tmp_path: Path) -> None:
    """signed-note key names are non-empty, without Unicode spaces, `+` or control
    characters. `tre witness key` printed a vkey for any name (an empty one, one with `+`
    or terminal escapes), and `serve` cosigned under it: lines that every verifier (tre's,
    Go's note.Open) reads as a malformed note, making the log's cosigned checkpoints
    unreadable. Now one line, exit 1, no key file created, and `Witness` refuses it too."""
    from typer.testing import CliRunner

    from tre.audit.note import NoteError
    from tre.audit.witness_server import Witness
    from tre.cli.client import CliError
    from tre.cli.witness import app as witness_app

    key_file = tmp_path / "w.pem"
    res = CliRunner().invoke(witness_app, ["key", "--name", name, "--key-file", str(key_file)])
    assert res.exit_code == 1 and isinstance(res.exception, CliError), (res.output, res.exception)
    assert "\n" not in str(res.exception).strip() and "\x1b" not in str(res.exception)
    assert not key_file.exists()
    with pytest.raises(NoteError):
        Witness(name, Ed25519PrivateKey.generate(), tmp_path / "state.json", [])


def test_witness_accepts_an_ordinary_name(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tre.cli.witness import app as witness_app

    res = CliRunner().invoke(
        witness_app, ["key", "--name", "dpo.hospital.example", "--key-file", str(tmp_path / "k")]
    )
    assert res.exit_code == 0 and res.output.startswith("dpo.hospital.example+"), res.output


def test_check_on_a_new_install_says_there_is_no_log_yet(settings: Settings) -> None:
    """`tre audit check` before anything was ever audited (no entries, no key, no log files)
    said the key was missing "but the log already holds entries": false, and alarming. Now
    it says there is nothing to check yet; with entries and no key it still refuses."""
    from typer.testing import CliRunner

    from tre.cli.audit import app as audit_app

    assert not (settings.keys_dir / KEY_FILE).exists()
    res = CliRunner().invoke(audit_app, ["check"])
    assert res.exit_code == 0 and "no audit log yet" in res.output, (res.output, res.exception)
    assert not (settings.keys_dir / KEY_FILE).exists()  # check stays read-only


def test_unfinished_rotation_that_cannot_be_finished_is_a_key_problem(
    log_engine: Engine, settings: Settings, signer: AuditSigner
) -> None:
    """A rotation killed after its commit point, in a keys folder where it cannot be finished
    (here its lock cannot be opened): the documented `audit-key-unavailable` error, not an
    OSError (a 500) and not a signature by the retired key."""
    _append(log_engine)
    killed = subprocess.run(
        _python(_ROTATE_KILLED, str(settings.keys_dir), "2", "0"), env=_env(), capture_output=True, timeout=60
    )
    assert killed.returncode == -signal.SIGKILL
    lock = settings.keys_dir / ".audit-rotation.lock"
    lock.unlink(missing_ok=True)
    lock.mkdir()
    with pytest.raises(AuditKeyError, match="unfinished"):
        load_or_create_signer(settings.keys_dir)
    lock.rmdir()
    assert load_or_create_signer(settings.keys_dir).verifier_key != signer.verifier_key  # finished now
