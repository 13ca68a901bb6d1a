"""Ed25519 signing keys kept as PEM files under the state directory.

Created on first use with mode 0600 so the embedded issuer works with no set-up; production
deployments mount the key from a secret instead (same path).
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tre import privatefile


def load_or_create_ed25519(path: Path) -> Ed25519PrivateKey:
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} does not hold an Ed25519 private key")
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key if privatefile.create_once(path, pem) else load_or_create_ed25519(path)


def public_pem(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_or_create_fernet_key(path: Path) -> bytes:
    """A Fernet key (32 random bytes, base64url) in ``path``, made once with mode 0600.

    Seals short-lived browser state (the panel's OIDC sign-in cookie); every API replica
    must share it, so production mounts it from the same secret as the signing key.
    """
    from cryptography.fernet import Fernet

    if path.exists():
        key = path.read_bytes().strip()
        Fernet(key)  # raises ValueError on a damaged key file
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key()
    return key if privatefile.create_once(path, key) else load_or_create_fernet_key(path)


def load_or_create_secret(path: Path, nbytes: int = 32) -> bytes:
    """``nbytes`` random bytes kept hex-encoded in ``path``, made once with mode 0600.

    A MAC key the server alone holds (the output handles' key): like the other keys, every
    API replica and the worker must read the same file (the shared ``keys/`` folder), and it
    must outlive restarts, or the handles a researcher was shown would change."""
    if path.exists():
        text = path.read_text(encoding="ascii").strip()
        key = bytes.fromhex(text)  # raises ValueError on a damaged key file
        if len(key) < 16:
            raise ValueError(f"{path} holds a key of {len(key)} bytes; at least 16 are needed")
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = os.urandom(nbytes)
    created = privatefile.create_once(path, key.hex().encode() + b"\n")
    return key if created else load_or_create_secret(path, nbytes)
