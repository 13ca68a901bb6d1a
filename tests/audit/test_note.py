"""C2SP signed-note format, checked byte for byte against the Go reference vector
(golang.org/x/mod/sumdb/note, note_test.go: the PeterNeumann key and note)."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tre.audit.note import (
    Checkpoint,
    NoteError,
    VerifierKey,
    open_checkpoint,
    open_note,
    sign_checkpoint,
    sign_note,
)

VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
SKEY_SEED = base64.b64decode("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")[1:]
TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
SIG = "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
NOTE = TEXT + f"\n\u2014 PeterNeumann {SIG}\n"


def test_reference_key_id_and_encoding() -> None:
    key = VerifierKey.parse(VKEY)
    assert key.name == "PeterNeumann"
    assert key.key_id.hex() == "c74f20a3"
    assert key.encode() == VKEY
    priv = Ed25519PrivateKey.from_private_bytes(SKEY_SEED)
    assert VerifierKey("PeterNeumann", priv.public_key().public_bytes_raw()) == key


def test_signing_reproduces_reference_note_exactly() -> None:
    priv = Ed25519PrivateKey.from_private_bytes(SKEY_SEED)
    assert sign_note(TEXT, "PeterNeumann", priv) == NOTE
    assert open_note(NOTE, VerifierKey.parse(VKEY)) == TEXT


def test_altered_note_or_other_key_is_rejected() -> None:
    key = VerifierKey.parse(VKEY)
    with pytest.raises(NoteError, match="does not verify"):
        open_note(NOTE.replace("cryptography", "cryptographY"), key)
    other = Ed25519PrivateKey.generate()
    with pytest.raises(NoteError, match="not signed by the trusted key"):
        open_note(sign_note(TEXT, "PeterNeumann", other), key)
    for bad in (VKEY.replace("c74f20a3", "c74f20a4"), VKEY[:-2], "PeterNeumann+c74f20a3"):
        with pytest.raises(NoteError):
            VerifierKey.parse(bad)


def test_checkpoint_roundtrip_and_cosignatures_are_ignored() -> None:
    priv = Ed25519PrivateKey.generate()
    key = VerifierKey("example.org/log", priv.public_key().public_bytes_raw())
    cp = Checkpoint("example.org/log", 42, bytes(range(32)), ("timestamp 1700000000000",))
    note = sign_checkpoint(cp, key.name, priv)
    lines = note.split("\n")
    assert lines[:4] == [
        "example.org/log",
        "42",
        base64.b64encode(bytes(range(32))).decode(),
        "timestamp 1700000000000",
    ]
    assert lines[4] == "" and lines[5].startswith("\u2014 example.org/log ")
    got = open_checkpoint(note, key)
    assert (got.tree_size, got.root_hash, got.timestamp_ms) == (42, bytes(range(32)), 1700000000000)
    witness = sign_note(cp.body(), "witness.example", Ed25519PrivateKey.generate())
    cosigned = note + witness.split("\n\n", 1)[1]
    assert open_checkpoint(cosigned, key).tree_size == 42
    with pytest.raises(NoteError, match="origin"):
        open_checkpoint(note, key, origin="another.org/log")
