"""Keyed handles that stand for an output's SHA-256 wherever a researcher would see it.

A researcher wrote the job, so they know each output's template and only its secret bits
are unknown: shown the SHA-256 of an output before the DAC released it, they could invert it
offline (an MRN or a birth date is ~40 bits: one hash a file, ~1 KB a job at 200 files). So
until release a researcher sees, in place of the hash, HMAC-SHA256 over (job id, SHA-256)
under a key only the server holds: stable for the same job and content (two listings can be
compared, a file named in an egress request as ``sha256:<handle>``), different between jobs
(the same content in two jobs cannot be linked), and of no use offline.

The key is ``keys/output-handle.key`` (32 random bytes, hex, mode 0600), made at ``tre admin
init`` or on first use like the other keys; every API replica and the worker share the
``keys/`` folder (the ``tre-state`` volume), so every replica computes the same handles, and
they survive restarts. Staff (DAC members, auditors, admins who are not members of the
project) see the real hash; so does the requester once the files are released.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from pathlib import Path

from tre.auth.keys import load_or_create_secret

HANDLE_KEY_FILENAME = "output-handle.key"

_KEYS: dict[Path, bytes] = {}
_KEYS_LOCK = threading.Lock()


def handle_key(keys_dir: Path) -> bytes:
    """The handle key in ``keys_dir``, read once per process (made when it is missing)."""
    path = keys_dir / HANDLE_KEY_FILENAME
    with _KEYS_LOCK:
        key = _KEYS.get(path)
        if key is None:
            key = _KEYS[path] = load_or_create_secret(path)
        return key


def output_handle(key: bytes, job_id: str, sha256: str) -> str:
    """The handle of job ``job_id``'s output with hash ``sha256``: 64 hex digits, like a hash.

    The job id and the hash are joined with a NUL, which neither holds, so no other pair
    gives the same message."""
    return hmac.new(key, f"{job_id}\0{sha256}".encode(), hashlib.sha256).hexdigest()
