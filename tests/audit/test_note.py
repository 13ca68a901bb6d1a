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


def _signed_cp(size: str = "5") -> tuple[str, VerifierKey, Ed25519PrivateKey]:
    priv = Ed25519PrivateKey.from_private_bytes(SKEY_SEED)
    key = VerifierKey("example.org/log", priv.public_key().public_bytes_raw())
    root = base64.b64encode(b"\x07" * 32).decode()
    return sign_note(f"example.org/log\n{size}\n{root}\n", key.name, priv), key, priv


def test_note_is_split_at_the_last_blank_line() -> None:
    """A forged text holding a blank line followed by a copied signature must not verify as
    the signed text (splitting at the first blank line would verify the prefix)."""
    note, key, _ = _signed_cp()
    text, sig_block = note.split("\n\n")
    forged = text + "\n\n" + sig_block + "\n" + "\u2014 example.org/log " + "A" * 10 + "\n"
    with pytest.raises(NoteError):
        open_note(forged, key)
    smuggled = text + "\n\nextra line\n\n" + sig_block
    with pytest.raises(NoteError):
        open_note(smuggled, key)


@pytest.mark.parametrize("bad", ["\x00", "\x1b[31m", "\r", "\x7f", "\u0085"])
def test_control_characters_are_rejected(bad: str) -> None:
    note, key, _ = _signed_cp()
    with pytest.raises(NoteError, match="control"):
        open_note(note.replace("example.org/log\n5", f"example.org/log{bad}\n5", 1), key)


def test_invalid_utf8_is_rejected() -> None:
    from tre.audit.note import decode_note

    note, _, _ = _signed_cp()
    with pytest.raises(NoteError, match="UTF-8"):
        decode_note(note.encode().replace(b"example", b"ex\xffmple", 1))
    assert decode_note(note.encode()) == note


def test_non_ascii_digits_are_not_a_tree_size() -> None:
    note, key, _ = _signed_cp("\u0663")  # ARABIC-INDIC DIGIT THREE: str.isdigit() says yes
    with pytest.raises(NoteError, match="tree size"):
        open_checkpoint(note, key)
    cp = Checkpoint("o", 1, b"\x00" * 32, ("timestamp \u0661\u0662",))
    assert cp.timestamp_ms is None


def test_signature_lines_are_bounded() -> None:
    note, key, _ = _signed_cp()
    other = Ed25519PrivateKey.generate()
    extra = sign_note(note.split("\n\n")[0] + "\n", "someone", other).split("\n\n")[1]
    assert open_note(note + extra * 98, key)  # 99 lines: fine, unknown signers ignored
    with pytest.raises(NoteError, match="more than 100"):
        open_note(note + extra * 100, key)
