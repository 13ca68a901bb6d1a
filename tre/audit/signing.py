"""The audit log's Ed25519 signing key: created once under ``keys_dir``, mode 0600.

Files beside the key (all in ``keys_dir``, 0700):

* ``audit-ed25519.pem``: the active key (PKCS#8, 0600);
* ``audit-origin``: the log's origin, written with the first key and never changed, so the
  log keeps its name across key rotations;
* ``audit-ed25519.previous.pem`` and ``audit-rotation.json``: the retiring key and the end of
  its overlap period, during which checkpoints carry both signatures;
* ``audit-key-history.jsonl``: signed key transitions, exported with every bundle so that a
  verifier who pinned an older key can follow the rotation; checked at every load: a chain of
  hand-overs, each signed by both of its keys, ending at the active key;
* ``audit-ed25519.next.pem``: a rotation's new key, staged before the history names it, so a
  rotation killed half-way is finished at the next load (see `rotate_key`);
* ``audit-last-checkpoint.note``: the last signed checkpoint (see ``tre.audit.guard``).

Every process that appends (API, workers) loads the same files, so creation is race-free: the
key is written to a private temporary file and hard-linked into place, which fails if another
process won the race, in which case we load the winner's key instead. A key is created only
for a new log: if the key is missing while the log exists (origin file, history, a pinned
checkpoint, or entries in the database), tre refuses to sign instead of silently starting a
new identity.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from tre import privatefile
from tre.audit.note import (
    Checkpoint,
    NoteError,
    VerifierKey,
    add_signature_lines,
    open_note_any,
    sign_checkpoint,
    sign_note,
    split_note,
)
from tre.audit.verify import KeyTransition, parse_transition
from tre.errors import TreError

KEY_FILE = "audit-ed25519.pem"
ORIGIN_FILE = "audit-origin"
PREVIOUS_KEY_FILE = "audit-ed25519.previous.pem"
NEXT_KEY_FILE = "audit-ed25519.next.pem"
ROTATION_FILE = "audit-rotation.json"
HISTORY_FILE = "audit-key-history.jsonl"
PIN_FILE = "audit-last-checkpoint.note"
ROTATION_LOCK_FILE = ".audit-rotation.lock"
_WATCHED = (KEY_FILE, ORIGIN_FILE, PREVIOUS_KEY_FILE, ROTATION_FILE, HISTORY_FILE)


class AuditKeyError(TreError):
    """The log's key is missing or unusable: nothing is signed (and so nothing audited) until fixed."""

    status = 503
    title = "Audit log key unavailable"
    slug = "audit-key-unavailable"


@dataclass(frozen=True)
class AuditSigner:
    """Signs checkpoints; ``name`` is both the log origin and the signed-note key name.

    During a rotation's overlap ``previous_key`` signs too, so verifiers that still pin the old
    key keep accepting new checkpoints while they pick up the signed transition.
    """

    private_key: Ed25519PrivateKey
    name: str
    keys_dir: Path | None = None
    previous_key: Ed25519PrivateKey | None = None
    overlap_until_ms: int = 0
    history: tuple[str, ...] = field(default=())

    @property
    def known_keys(self) -> list[VerifierKey]:
        """Every key this log has used (history order), ending with the active one."""
        keys: list[VerifierKey] = []
        for note in self.history:
            t = parse_transition(split_note(note)[0])
            for k in (t.old, t.new):
                if k not in keys:
                    keys.append(k)
        if self.verifier_key not in keys:
            keys.append(self.verifier_key)
        return keys

    @property
    def signing_keys(self) -> list[VerifierKey]:
        """The keys that sign checkpoints now: the active one, and the retiring one during
        its overlap. A retired key may still verify old checkpoints, never vouch for new ones."""
        keys = [self.verifier_key]
        if self.previous_key is not None and time.time() * 1000 <= self.overlap_until_ms:
            raw = self.previous_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
            keys.append(VerifierKey(self.name, raw))
        return keys

    @property
    def public_key(self) -> bytes:
        return self.private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def verifier_key(self) -> VerifierKey:
        return VerifierKey(self.name, self.public_key)

    @property
    def public_key_pem(self) -> str:
        return (
            self.private_key.public_key()
            .public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )

    def sign(self, checkpoint: Checkpoint) -> str:
        extra = []
        if self.previous_key is not None and time.time() * 1000 <= self.overlap_until_ms:
            extra.append(self.previous_key)
        return sign_checkpoint(checkpoint, self.name, self.private_key, *extra)


def origin_for(public_key: bytes) -> str:
    """A stable, unique log origin derived from the key, so all processes agree on it."""
    return f"tre.audit/{hashlib.sha256(public_key).hexdigest()[:16]}"


def _create_key_file(path: Path) -> None:
    pem = Ed25519PrivateKey.generate().private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    privatefile.create_once(path, pem)  # a concurrent starter's key wins; use theirs


def _load_key(path: Path) -> Ed25519PrivateKey:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise AuditKeyError(f"audit signing key {path} is readable by others (mode {mode:o}); chmod 600 it")
    key = _parse_file(path, lambda data: load_pem_private_key(data, password=None))
    if not isinstance(key, Ed25519PrivateKey):
        raise AuditKeyError(f"the audit log's key file {path} does not hold an Ed25519 private key")
    return key


def _raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def log_exists(keys_dir: Path) -> bool:
    """Whether files of an existing log (beside a possibly missing key) are present."""
    return any((keys_dir / f).exists() for f in (ORIGIN_FILE, HISTORY_FILE, PIN_FILE))


def _missing_key(path: Path, why: str) -> AuditKeyError:
    return AuditKeyError(
        f"the audit log's signing key {path} is missing but {why}; tre will not create a new key "
        "silently (a new key would be a new log that no auditor trusts). Restore the key file from "
        "backup (mode 0600); if it is lost for good, see 'Lost key' in docs/audit.md"
    )


def load_or_create_signer(
    keys_dir: Path, *, create: bool = True, _rotation_held: bool = False
) -> AuditSigner:
    """The log's signer, generating the key file (0600, in a 0700 folder) for a new log only.

    The key history must be this log's own chain of hand-overs ending at the active key; a
    rotation killed after it recorded its transition but before it installed the new key is
    finished here (under the rotation lock), anything else is an AuditKeyError naming the file.
    """
    keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = keys_dir / KEY_FILE
    # Looked at before the key: a first start writes the key before the origin, so a concurrent
    # first start's origin seen here means its key was already in place when we look for it.
    had_log_files = log_exists(keys_dir)
    if not path.exists():
        if had_log_files:
            raise _missing_key(path, f"this log's files are still in {keys_dir}")
        if not create:
            raise _missing_key(path, "the log already holds entries")
        _create_key_file(path)
    key = _load_key(path)
    origin_path = keys_dir / ORIGIN_FILE
    if not origin_path.exists():
        # First start (or a log from before origins were stored): the origin is fixed now.
        privatefile.create_once(origin_path, (origin_for(_raw(key)) + "\n").encode())
    origin = _parse_file(origin_path, _origin)
    previous: Ed25519PrivateKey | None = None
    until = 0
    if (keys_dir / PREVIOUS_KEY_FILE).exists() and (keys_dir / ROTATION_FILE).exists():
        previous = _load_key(keys_dir / PREVIOUS_KEY_FILE)
        until = _parse_file(keys_dir / ROTATION_FILE, lambda d: int(json.loads(d)["overlap_until_ms"]))
    history: tuple[str, ...] = ()
    if (keys_dir / HISTORY_FILE).exists():
        history = _parse_file(keys_dir / HISTORY_FILE, _history)
    if history:
        try:
            last = _chain_end(origin, history)
        except NoteError as e:
            raise AuditKeyError(
                f"the audit log's key history {keys_dir / HISTORY_FILE} is not this log's own chain of "
                f"key hand-overs ({str(e)[:200]}); nothing is signed until it is restored from backup"
            ) from e
        if last.new != VerifierKey(origin, _raw(key)):
            try:
                if not _rotation_held:
                    # Perhaps a rotation in progress (another process): wait for it, look again.
                    with _rotation_lock(keys_dir):
                        return load_or_create_signer(keys_dir, create=create, _rotation_held=True)
                _finish_rotation(keys_dir, origin, last, key)
            except OSError as e:  # a read-only or full keys folder: the 503 problem, not a 500
                raise AuditKeyError(
                    f"the audit log's key rotation in {keys_dir} is unfinished and cannot be "
                    f"completed ({type(e).__name__}: {e.strerror}); nothing is signed until it is"
                ) from e
            return load_or_create_signer(keys_dir, create=create, _rotation_held=True)
    if previous is not None and (
        not history or (last.old, last.overlap_until_ms) != (VerifierKey(origin, _raw(previous)), until)
    ):
        # The retiring key and its overlap come from the last transition: a history removed or
        # cut back (hiding the hand-over from auditors), or an overlap stretched, shows here.
        raise AuditKeyError(
            f"the audit log's retiring key {keys_dir / PREVIOUS_KEY_FILE} and overlap "
            f"{keys_dir / ROTATION_FILE} do not match the last transition of its key history "
            f"{keys_dir / HISTORY_FILE}; nothing is signed until they are restored from backup"
        )
    return AuditSigner(key, origin, keys_dir, previous, until, history)


def _chain_end(origin: str, history: tuple[str, ...]) -> KeyTransition:
    """The last transition of ``history``, once every transition is checked to be this log's
    (its origin), signed by both its old and its new key, and to start from the key the one
    before it handed over to. Why: the server trusts every key of the history for verifying
    the checkpoint kept beside the key and the stored tip; a line an insider appended (a
    transition to a key of theirs, signed by that key alone) must not become one of them."""
    prev: VerifierKey | None = None
    last: KeyTransition | None = None
    for j, note in enumerate(history):
        t = parse_transition(split_note(note)[0])
        if t.origin != origin:
            raise NoteError(f"key history #{j} is a transition of another log ({t.origin})")
        if prev is not None and t.old != prev:
            raise NoteError(f"key history #{j} does not start from the key #{j - 1} handed over to")
        _, signed = open_note_any(note, [t.old, t.new])
        if t.old not in signed or t.new not in signed:
            raise NoteError(f"key history #{j} is not signed by both its old and its new key")
        prev, last = t.new, t
    assert last is not None  # history is non-empty
    return last


def _finish_rotation(keys_dir: Path, origin: str, last: KeyTransition, key: Ed25519PrivateKey) -> None:
    """Complete a rotation that was killed after recording ``last`` (its commit point) and
    before installing the new key: the staged key must be the one ``last`` hands over to, and
    the active key the one it retires. Called under the rotation lock. Otherwise the history
    names a key this log does not hold: refused, nothing signed.

    Why: left half-done, the log kept signing with the retired key after the overlap (every
    auditor's verification fails), and the next rotation wrote a second hand-over from it (a
    forked history, which verification also refuses)."""
    path = keys_dir / HISTORY_FILE
    staged = keys_dir / NEXT_KEY_FILE
    active = VerifierKey(origin, _raw(key))
    nxt = _load_key(staged) if staged.exists() else None
    if active != last.old or nxt is None or VerifierKey(origin, _raw(nxt)) != last.new:
        raise AuditKeyError(
            f"the audit log's key history {path} hands over to {last.new.encode()}, but the key "
            f"file holds {active.encode()} and no staged rotation completes it: the history is "
            "forged or the key file was restored from an older backup. Nothing is signed until "
            "the matching key and history are restored (see 'Key rotation' in docs/audit.md)"
        )
    logging.getLogger("tre.audit.alert").warning(
        "finishing the key rotation to %s that was interrupted", last.new.encode()
    )
    _cosign_pin(keys_dir, origin, nxt)
    _install_key(keys_dir, (keys_dir / KEY_FILE).read_bytes(), staged.read_bytes(), last.overlap_until_ms)


_T = TypeVar("_T")


def _parse_file(path: Path, parse: Callable[[bytes], _T]) -> _T:
    """``parse`` of one of the log's key files. A damaged file (bit rot, a bad restore, a hand
    edit) is an AuditKeyError naming it: the API's 503 problem, as for a missing key, never a
    500, and nothing is appended or signed meanwhile. File contents are not echoed (keys)."""
    try:
        return parse(path.read_bytes())
    except (OSError, ValueError, TypeError, KeyError, IndexError, UnsupportedAlgorithm) as e:
        raise AuditKeyError(
            f"the audit log's key file {path} is unusable ({type(e).__name__}); nothing is signed "
            "(and so nothing audited) until it is restored from backup (mode 0600); see 'Lost key' "
            "in docs/audit.md"
        ) from e


def _origin(data: bytes) -> str:
    """The origin line: a signed-note key name (it names the log's key)."""
    origin = data.decode("utf-8").strip()
    if not origin or any(c.isspace() for c in origin) or "+" in origin:
        raise ValueError("the origin is not a valid key name")
    return origin


def _history(data: bytes) -> tuple[str, ...]:
    """The signed key transitions, one JSON object per line."""
    out = []
    for line in data.decode("utf-8").splitlines():
        if line:
            transition = json.loads(line)["transition"]
            if not isinstance(transition, str):
                raise TypeError("a transition is not a string")
            out.append(transition)
    return tuple(out)


@contextmanager
def _rotation_lock(keys_dir: Path) -> Iterator[None]:
    """One rotation at a time, across processes: two operators rotating at once each read the
    same current key and wrote a transition from it, two hand-overs from one key, a forked key
    history that every auditor's verification then refuses (round 12)."""
    fd = os.open(keys_dir / ROTATION_LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def rotate_key(keys_dir: Path, overlap_s: float) -> KeyTransition:
    """Replace the log's key: same origin, a transition signed by both keys, an overlap period.

    The new key becomes active at once; the old one keeps co-signing checkpoints until the
    overlap ends, so auditors who pinned it follow the transition (exported in every bundle)
    without a break. Refused while a previous rotation's overlap is still running.
    """
    with _rotation_lock(keys_dir):
        transition = _rotate_locked(keys_dir, overlap_s)
    with _lock:  # after the file lock: a loader may hold _lock while it waits for the file lock
        _cache.pop(keys_dir.resolve(), None)
    return transition


def _rotate_locked(keys_dir: Path, overlap_s: float) -> KeyTransition:
    """rotate_key's work, under the rotation lock: the current key is read inside it.

    Crash-safe (a SIGKILL between any two writes): the new key is staged first
    (``audit-ed25519.next.pem``), then the history is replaced atomically with the transition
    added (the commit point), then the key is installed. Killed before the commit point, the
    rotation did not happen; after it, the next load finishes it (`_finish_rotation`).
    """
    current = load_or_create_signer(keys_dir, create=False, _rotation_held=True)
    now_ms = int(time.time() * 1000)
    if current.previous_key is not None and now_ms <= current.overlap_until_ms:
        # When, not only that (newcomer round 23: the admin had to find the first rotation's
        # line to know how long to wait).
        ends = datetime.fromtimestamp(current.overlap_until_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
        raise AuditKeyError(
            f"a key rotation is still in its overlap period, until {ends}; rotate again after it ends"
        )
    new = Ed25519PrivateKey.generate()
    transition = KeyTransition(
        current.name,
        current.verifier_key,
        VerifierKey(current.name, _raw(new)),
        now_ms + int(overlap_s * 1000),
    )
    note = sign_note(transition.text(), current.name, current.private_key, new)
    old_pem = (keys_dir / KEY_FILE).read_bytes()
    pem = new.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    privatefile.replace(keys_dir / NEXT_KEY_FILE, pem)
    lines = "".join(json.dumps({"transition": n}) + "\n" for n in (*current.history, note))
    privatefile.replace(keys_dir / HISTORY_FILE, lines.encode())  # the commit point
    _cosign_pin(keys_dir, current.name, new)
    _install_key(keys_dir, old_pem, pem, transition.overlap_until_ms)
    return transition


def _cosign_pin(keys_dir: Path, name: str, new: Ed25519PrivateKey) -> None:
    """Add the new key's signature to the last signed checkpoint kept beside the key (same
    text). The server takes that checkpoint as the tip it signed last only with a signature
    of a key that signs now (`tre.audit.guard.is_last_signed`): after a rotation and before
    the next checkpoint, the retiring key's signature alone would not do, and once the key
    has retired its holder could otherwise plant a rewritten history of their own there.
    Repeatable (a rotation finished after a crash signs it again, the same line)."""
    path = keys_dir / PIN_FILE
    lock_fd = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)  # the pin's writers' lock (`guard.write_pin`)
        try:
            note = path.read_text()
        except FileNotFoundError:
            return  # nothing signed yet
        try:
            text, _ = split_note(note)
            line = sign_note(text, name, new).rstrip("\n").rsplit("\n", 1)[-1]
            cosigned = add_signature_lines(note, [line])
        except NoteError as e:  # the server's guard refuses it too, naming the file
            logging.getLogger("tre.audit.alert").error(
                "the last signed checkpoint %s cannot be read: %s", path, e
            )
            return
        if cosigned != note:
            privatefile.replace(path, cosigned.encode())
    finally:
        os.close(lock_fd)


def _install_key(keys_dir: Path, old_pem: bytes, new_pem: bytes, overlap_until_ms: int) -> None:
    """The steps after a rotation's commit point, each atomic and repeatable: the retiring key
    and its overlap, then the new key, then the staged copy is dropped."""
    privatefile.replace(keys_dir / PREVIOUS_KEY_FILE, old_pem)
    privatefile.replace(keys_dir / ROTATION_FILE, json.dumps({"overlap_until_ms": overlap_until_ms}).encode())
    privatefile.replace(keys_dir / KEY_FILE, new_pem)
    (keys_dir / NEXT_KEY_FILE).unlink(missing_ok=True)


_lock = threading.Lock()
_cache: dict[Path, tuple[tuple[int, ...], AuditSigner]] = {}
_by_engine: weakref.WeakKeyDictionary[Engine, Path] = weakref.WeakKeyDictionary()


def configure(engine: Engine, keys_dir: Path) -> None:
    """Tell record_event which keys folder signs for ``engine``'s log.

    create_app and the worker call this at start with ``settings.keys_dir``, which also creates
    the key (0600) for a new log. Without it the signer comes from the environment's settings
    (``TRE_HOME``). Keyed by engine so that several apps in one process (tests) each sign with
    their own key.
    """
    with _lock:
        _by_engine[engine] = Path(keys_dir)
    with Session(engine) as session:
        _signer_checked(session, Path(keys_dir))  # create the key now, not on the first audited action


def signer_for(session: Session) -> AuditSigner:
    """The signer configured for the session's engine, else the one in settings.keys_dir."""
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    with _lock:
        keys_dir = _by_engine.get(engine)
    if keys_dir is None:
        from tre.config import get_settings

        keys_dir = get_settings().keys_dir
    return _signer_checked(session, keys_dir)


def _signer_checked(session: Session, keys_dir: Path) -> AuditSigner:
    """get_signer, but a missing key is only created if the database holds no log yet."""
    if (Path(keys_dir) / KEY_FILE).exists():
        return get_signer(keys_dir)
    from tre.store.models import AuditState

    size = session.scalar(select(AuditState.tree_size).where(AuditState.id == 1))
    return get_signer(keys_dir, create=not size)


def _stamp(keys_dir: Path) -> tuple[int, ...]:
    out = []
    for name in _WATCHED:
        try:
            st = (keys_dir / name).stat()
            # st_mode too: a key file made readable by others is refused at once, as at start.
            out += [st.st_mtime_ns, st.st_size, st.st_ino, st.st_mode]
        except FileNotFoundError:
            out += [-1, -1, -1, -1]
    return tuple(out)


def get_signer(keys_dir: Path | None = None, *, create: bool = True) -> AuditSigner:
    """Cached signer for ``keys_dir`` (default: the environment's settings.keys_dir).

    Reloaded when any of its files changes (another process rotated the key).
    """
    if keys_dir is None:
        from tre.config import get_settings

        keys_dir = get_settings().keys_dir
    keys_dir = Path(keys_dir).resolve()
    with _lock:
        stamp = _stamp(keys_dir)
        hit = _cache.get(keys_dir)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        signer = load_or_create_signer(keys_dir, create=create)
        _cache[keys_dir] = (_stamp(keys_dir), signer)
        return signer


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


__all__ = ["AuditKeyError", "AuditSigner", "NoteError", "configure", "get_signer", "rotate_key", "signer_for"]
