"""The audit log's Ed25519 signing key: created once under ``keys_dir``, mode 0600.

The key is the log's identity. Every process that appends (API, workers) must load the same
file, so creation is race-free: the key is written to a private temporary file and then
hard-linked into place, which fails if another process won the race, in which case we load
the winner's key instead.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from tre.audit.note import Checkpoint, VerifierKey, sign_checkpoint

KEY_FILE = "audit-ed25519.pem"


@dataclass(frozen=True)
class AuditSigner:
    """Signs checkpoints; ``name`` is both the log origin and the signed-note key name."""

    private_key: Ed25519PrivateKey
    name: str

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
        return sign_checkpoint(checkpoint, self.name, self.private_key)


def origin_for(public_key: bytes) -> str:
    """A stable, unique log origin derived from the key, so all processes agree on it."""
    return f"tre.audit/{hashlib.sha256(public_key).hexdigest()[:16]}"


def _create_key_file(path: Path) -> None:
    pem = Ed25519PrivateKey.generate().private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process created it first; use theirs
    finally:
        tmp.unlink(missing_ok=True)


def load_or_create_signer(keys_dir: Path) -> AuditSigner:
    """The log's signer, generating the key file (0600, in a 0700 folder) on first use."""
    keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = keys_dir / KEY_FILE
    if not path.exists():
        _create_key_file(path)
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise PermissionError(f"audit signing key {path} is readable by others (mode {mode:o}); chmod 600 it")
    key = load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} does not hold an Ed25519 private key")
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return AuditSigner(key, origin_for(raw))


_lock = threading.Lock()
_cache: dict[Path, AuditSigner] = {}
_by_engine: weakref.WeakKeyDictionary[Engine, Path] = weakref.WeakKeyDictionary()


def configure(engine: Engine, keys_dir: Path) -> None:
    """Tell record_event which keys folder signs for ``engine``'s log.

    create_app and the worker call this at start with ``settings.keys_dir``, which also creates
    the key (0600) if it does not exist yet. Without it the signer
    comes from the environment's settings (``TRE_HOME``). Keyed by engine so that several
    apps in one process (tests) each sign with their own key.
    """
    with _lock:
        _by_engine[engine] = Path(keys_dir)
    get_signer(keys_dir)  # create the key now (first start), not on the first audited action


def signer_for(session: Session) -> AuditSigner:
    """The signer configured for the session's engine, else the one in settings.keys_dir."""
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    with _lock:
        keys_dir = _by_engine.get(engine)
    return get_signer(keys_dir)


def get_signer(keys_dir: Path | None = None) -> AuditSigner:
    """Cached signer for ``keys_dir`` (default: the environment's settings.keys_dir)."""
    if keys_dir is None:
        from tre.config import get_settings

        keys_dir = get_settings().keys_dir
    keys_dir = Path(keys_dir).resolve()
    with _lock:
        signer = _cache.get(keys_dir)
        if signer is None or not (keys_dir / KEY_FILE).exists():
            signer = _cache[keys_dir] = load_or_create_signer(keys_dir)
        return signer


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
