"""C2SP signed-note and tlog-checkpoint formats, with Ed25519 signatures.

Depends only on the standard library and ``cryptography`` so the offline verifier can use
it. A checkpoint note is::

    <origin>
    <tree size, decimal>
    <base64 root hash>
    timestamp <unix milliseconds>          (extension line, optional)

    — <key name> <base64(key ID (4 bytes) || Ed25519 signature (64 bytes))>

The signature covers the note text: every line up to and including the newline before the
blank line. The key ID is the first four bytes of SHA-256(name || 0x0A || 0x01 || pubkey),
0x01 being the signed-note algorithm byte for Ed25519. A verifier key is written
``<name>+<hex key ID>+<base64(0x01 || pubkey)>`` (the "vkey" form of C2SP signed-note).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ALG_ED25519 = 0x01
SIG_PREFIX = "\u2014 "  # em dash and a space, as C2SP signed-note requires
TIMESTAMP_EXT = "timestamp"


class NoteError(ValueError):
    """A note is malformed, or no signature on it verifies against the trusted key."""


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(name: str, public_key: bytes) -> bytes:
    """C2SP signed-note key ID: SHA-256(name || 0x0A || 0x01 || pubkey)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([ALG_ED25519]) + public_key).digest()[:4]


def _check_name(name: str) -> None:
    if not name or any(c.isspace() for c in name) or "+" in name:
        raise NoteError(f"invalid key name {name!r}: must be non-empty, no spaces or '+'")


@dataclass(frozen=True)
class VerifierKey:
    """A trusted (name, Ed25519 public key) pair, as pinned by an auditor."""

    name: str
    public_key: bytes

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.public_key)

    def encode(self) -> str:
        blob = base64.b64encode(bytes([ALG_ED25519]) + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{blob}"

    @classmethod
    def parse(cls, vkey: str) -> VerifierKey:
        parts = vkey.strip().split("+", 2)  # the base64 key may itself contain "+"
        if len(parts) != 3:
            raise NoteError("verifier key must be <name>+<hex key id>+<base64 key>")
        name, hex_id, blob = parts
        _check_name(name)
        try:
            raw = base64.b64decode(blob, validate=True)
            want_id = bytes.fromhex(hex_id)
        except (binascii.Error, ValueError) as e:
            raise NoteError(f"verifier key is not valid hex/base64: {e}") from e
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise NoteError("verifier key is not an Ed25519 signed-note key")
        key = cls(name, raw[1:])
        if key.key_id != want_id:
            raise NoteError("verifier key ID does not match its name and public key")
        return key

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class Checkpoint:
    """A parsed tlog checkpoint: what a signature vouches for."""

    origin: str
    tree_size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()
    note: str = field(default="", compare=False)

    @property
    def timestamp_ms(self) -> int | None:
        for ext in self.extensions:
            key, _, value = ext.partition(" ")
            if key == TIMESTAMP_EXT and value.isdigit():
                return int(value)
        return None

    def body(self) -> str:
        """The signed text: origin, size, root and extension lines, each newline-terminated."""
        lines = [
            self.origin,
            str(self.tree_size),
            base64.b64encode(self.root_hash).decode(),
            *self.extensions,
        ]
        return "".join(line + "\n" for line in lines)


def sign_note(text: str, name: str, private_key: Ed25519PrivateKey) -> str:
    """Sign ``text`` (newline-terminated lines) as a C2SP signed note by key ``name``."""
    _check_name(name)
    if not text.endswith("\n") or "\n\n" in text:
        raise NoteError("note text must be newline-terminated lines with no blank line")
    kid = key_id(name, _raw_public(private_key.public_key()))
    sig = private_key.sign(text.encode())
    return f"{text}\n{SIG_PREFIX}{name} {base64.b64encode(kid + sig).decode()}\n"


def sign_checkpoint(checkpoint: Checkpoint, name: str, private_key: Ed25519PrivateKey) -> str:
    """The full signed note for ``checkpoint``, signed by ``name``'s Ed25519 key."""
    text = checkpoint.body()
    if "\u2014" in text:
        raise NoteError("checkpoint lines must contain no em dash")
    return sign_note(text, name, private_key)


def split_note(note: str) -> tuple[str, list[tuple[str, bytes, bytes]]]:
    """Split a signed note into its text and (name, key ID, signature) triples."""
    text, sep, sig_block = note.partition("\n\n")
    if not sep or not sig_block.endswith("\n"):
        raise NoteError("malformed note: no blank line before signatures or missing final newline")
    text += "\n"
    sigs = []
    for line in sig_block[:-1].split("\n"):
        if not line.startswith(SIG_PREFIX):
            raise NoteError(f"malformed signature line {line!r}")
        name, _, blob = line[len(SIG_PREFIX) :].partition(" ")
        try:
            raw = base64.b64decode(blob, validate=True)
        except binascii.Error as e:
            raise NoteError(f"signature of {name!r} is not base64") from e
        if len(raw) < 5:
            raise NoteError(f"signature of {name!r} is too short")
        sigs.append((name, raw[:4], raw[4:]))
    if not sigs:
        raise NoteError("note carries no signature")
    return text, sigs


def parse_checkpoint_text(text: str) -> Checkpoint:
    """Parse the (unverified) body of a checkpoint note."""
    if not text.endswith("\n"):
        raise NoteError("checkpoint text must end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise NoteError("checkpoint needs origin, tree size and root hash lines")
    origin, size_s, root_b64, *ext = lines
    if not size_s.isdigit() or (len(size_s) > 1 and size_s[0] == "0"):
        raise NoteError(f"bad tree size {size_s!r}")
    try:
        root = base64.b64decode(root_b64, validate=True)
    except binascii.Error as e:
        raise NoteError("root hash is not base64") from e
    if len(root) != 32:
        raise NoteError("root hash is not 32 bytes")
    if not origin or any(not e for e in ext):
        raise NoteError("empty origin or extension line")
    return Checkpoint(origin, int(size_s), root, tuple(ext))


def open_note(note: str, key: VerifierKey) -> str:
    """Verify ``note``'s signature by ``key`` and return its text.

    Signatures by other keys are ignored (notes may be cosigned by witnesses); at least one
    must be ``key``'s and it must verify, else NoteError.
    """
    text, sigs = split_note(note)
    ok = False
    for name, kid, sig in sigs:
        if name == key.name and kid == key.key_id:
            if not key.verify(text.encode(), sig):
                raise NoteError(f"signature by {name} does not verify: the note was altered")
            ok = True
    if not ok:
        signers = ", ".join(f"{n}/{k.hex()}" for n, k, _ in sigs)
        raise NoteError(f"not signed by the trusted key {key.name}/{key.key_id.hex()} (signed by {signers})")
    return text


def open_checkpoint(note: str, key: VerifierKey, origin: str | None = None) -> Checkpoint:
    """Verify a checkpoint note signed by ``key`` and return the checkpoint it vouches for."""
    cp = parse_checkpoint_text(open_note(note, key))
    want_origin = key.name if origin is None else origin
    if cp.origin != want_origin:
        raise NoteError(f"checkpoint origin {cp.origin!r} is not the expected {want_origin!r}")
    return Checkpoint(cp.origin, cp.tree_size, cp.root_hash, cp.extensions, note)
