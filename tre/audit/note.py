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
import re
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ALG_ED25519 = 0x01
ALG_COSIGNATURE_V1 = 0x04  # C2SP tlog-cosignature: Ed25519 over "cosignature/v1" + time + body
SIG_PREFIX = "\u2014 "  # em dash and a space, as C2SP signed-note requires
TIMESTAMP_EXT = "timestamp"
MAX_SIGNATURES = 100  # as golang.org/x/mod/sumdb/note: a note with more is rejected unread
COSIGNATURE_HEADER = "cosignature/v1\n"
MAX_COSIGNATURE_TIME = 2**63 - 1  # C2SP tlog-cosignature: a timestamp never exceeds it
_HEX_KEY_ID = re.compile(r"[0-9a-fA-F]{8}")  # a uint32 in hex, as Go's note.NewVerifier reads it


class NoteError(ValueError):
    """A note is malformed, or no signature on it verifies against the trusted key."""


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(name: str, public_key: bytes, alg: int = ALG_ED25519) -> bytes:
    """C2SP signed-note key ID: SHA-256(name || 0x0A || alg || pubkey)[:4] (alg 0x01 or 0x04)."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([alg]) + public_key).digest()[:4]


def _is_ascii_digits(s: str) -> bool:
    """``str.isdigit`` accepts "\u0663" and other non-ASCII digits; the formats allow only 0-9."""
    return bool(s) and s.isascii() and s.isdigit()


def b64decode_canonical(s: str) -> bytes:
    """Standard base64 in its one canonical spelling, else ``binascii.Error``.

    The usual decoders ignore the unused low bits of the last digit, so ``...Q==`` and
    ``...R==`` are the same bytes: a signature line could be respelled without breaking
    its signature, giving one signed note several texts."""
    raw = base64.b64decode(s, validate=True)
    if base64.b64encode(raw).decode("ascii") != s:
        raise binascii.Error("not in canonical base64 form")
    return raw


def parse_uint64(s: str) -> int | None:
    """A C2SP number (tree size, timestamp, witness size): ASCII digits of a uint64, no
    leading zero; None otherwise. Bounded before ``int()``, which raises on thousands of
    digits (a ValueError, not the caller's NoteError: a 500 or a traceback)."""
    if not _is_ascii_digits(s) or len(s) > 20 or (len(s) > 1 and s[0] == "0"):
        return None
    n = int(s)
    return n if n < 2**64 else None


def check_note_chars(note: str) -> None:
    """Signed notes are UTF-8 text without control characters other than newline."""
    for c in note:
        o = ord(c)
        if (o < 0x20 and c != "\n") or 0x7F <= o < 0xA0 or 0xD800 <= o < 0xE000:
            raise NoteError(f"note contains the control or invalid character U+{o:04X}")


def decode_note(data: bytes | str) -> str:
    """A note as text: bytes must be valid UTF-8 (no replacement characters are invented)."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8", errors="strict")
        except UnicodeDecodeError as e:
            raise NoteError(f"note is not valid UTF-8: {e}") from e
    check_note_chars(data)
    return data


def _check_name(name: str) -> None:
    if not name or any(c.isspace() for c in name) or "+" in name:
        raise NoteError(f"invalid key name {name!r}: must be non-empty, no spaces or '+'")


def check_key_name(name: str) -> None:
    """A name a signed note can carry in its signature lines: non-empty, no Unicode space,
    no ``+``, no control character. Why: a signer (a witness) whose name breaks these rules
    writes lines every verifier reads as a malformed note, so its cosignatures would make
    the log's checkpoints unreadable."""
    check_note_chars(name)
    _check_name(name)


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
        name, public_key = _parse_key(vkey, "verifier key", ALG_ED25519, "an Ed25519 signed-note key")
        return cls(name, public_key)

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except InvalidSignature:
            return False
        return True


def _parse_key(vkey: str, what: str, alg: int, kind: str) -> tuple[str, bytes]:
    """Name and public key of ``<name>+<hex key id>+<base64(alg || pubkey)>`` (the signed-note
    encoding of both verifier and witness keys), the key ID checked against name and key."""
    parts = vkey.strip().split("+", 2)  # the base64 key may itself contain "+"
    if len(parts) != 3:
        raise NoteError(f"{what} must be <name>+<hex key id>+<base64 key>")
    name, hex_id, blob = parts
    _check_name(name)
    if not _HEX_KEY_ID.fullmatch(hex_id):
        raise NoteError(f"{what} ID must be 8 hex digits")
    try:
        raw = b64decode_canonical(blob)
        want_id = bytes.fromhex(hex_id)
    except (binascii.Error, ValueError) as e:
        raise NoteError(f"{what} is not valid hex/base64: {e}") from e
    if len(raw) != 33 or raw[0] != alg:
        raise NoteError(f"{what} is not {kind}")
    if key_id(name, raw[1:], alg) != want_id:
        raise NoteError(f"{what} ID does not match its name and public key")
    return name, raw[1:]


@dataclass(frozen=True)
class WitnessKey:
    """A witness's cosigning key (C2SP tlog-cosignature, signature type 0x04).

    Written ``<name>+<hex key ID>+<base64(0x04 || pubkey)>``, the key ID being
    SHA-256(name || 0x0A || 0x04 || pubkey)[:4], as Go's ``note.NewEd25519CosignatureV1``.
    """

    name: str
    public_key: bytes

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.public_key, ALG_COSIGNATURE_V1)

    def encode(self) -> str:
        blob = base64.b64encode(bytes([ALG_COSIGNATURE_V1]) + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{blob}"

    @classmethod
    def parse(cls, vkey: str) -> WitnessKey:
        name, public_key = _parse_key(
            vkey, "witness key", ALG_COSIGNATURE_V1, "a cosignature/v1 (type 0x04) Ed25519 key"
        )
        return cls(name, public_key)

    def verify(self, body: str, signature: bytes) -> int | None:
        """The cosigned time (Unix seconds) if ``signature`` (time || sig) cosigns ``body``."""
        if len(signature) != 8 + 64:
            return None
        t = int.from_bytes(signature[:8], "big")
        if t > MAX_COSIGNATURE_TIME:  # tlog-cosignature: "MUST NOT exceed 2^63 - 1"
            return None
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(
                signature[8:], cosigned_message(body, t)
            )
        except InvalidSignature:
            return None
        return t


def cosigned_message(body: str, timestamp_s: int) -> bytes:
    """What a cosignature/v1 signs: the header, the time line and the checkpoint body."""
    return f"{COSIGNATURE_HEADER}time {timestamp_s}\n{body}".encode()


def cosign(body: str, name: str, private_key: Ed25519PrivateKey, timestamp_s: int) -> str:
    """A witness's cosignature line over a checkpoint ``body`` (newline-terminated)."""
    _check_name(name)
    if not 0 <= timestamp_s <= MAX_COSIGNATURE_TIME:
        raise NoteError(f"cosignature time {timestamp_s} is outside 0..2^63-1")
    pub = _raw_public(private_key.public_key())
    sig = private_key.sign(cosigned_message(body, timestamp_s))
    blob = key_id(name, pub, ALG_COSIGNATURE_V1) + timestamp_s.to_bytes(8, "big") + sig
    return f"{SIG_PREFIX}{name} {base64.b64encode(blob).decode()}\n"


def cosignatures(note: str, witnesses: list[WitnessKey]) -> dict[str, int]:
    """Witnesses (by encoded key) whose cosignature on ``note`` verifies, with the cosigned time."""
    text, sigs = split_note(note)
    found: dict[str, int] = {}
    for w in witnesses:
        for name, kid, sig in sigs:
            if name == w.name and kid == w.key_id:
                t = w.verify(text, sig)
                if t is not None:
                    found[w.encode()] = t
    return found


def add_signature_lines(note: str, lines: list[str]) -> str:
    """``note`` with extra signature lines (cosignatures) appended, skipping ones it holds."""
    _, sigs = split_note(note)
    have = set(note.split("\n"))
    extra = [line if line.endswith("\n") else line + "\n" for line in lines]
    new = [x for x in dict.fromkeys(extra) if x.rstrip("\n") not in have]
    if len(sigs) + len(new) > MAX_SIGNATURES:
        raise NoteError(f"a note carries at most {MAX_SIGNATURES} signature lines")
    return note + "".join(new)


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
            if key == TIMESTAMP_EXT:
                return parse_uint64(value)
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


def sign_note(text: str, name: str, private_key: Ed25519PrivateKey, *more: Ed25519PrivateKey) -> str:
    """Sign ``text`` (newline-terminated lines) as a C2SP signed note by key ``name``.

    Extra keys (same name, other key IDs) add their signatures: during a key rotation's
    overlap, checkpoints carry the old and the new key's signature.
    """
    _check_name(name)
    if not text.endswith("\n") or "\n\n" in text:
        raise NoteError("note text must be newline-terminated lines with no blank line")
    check_note_chars(text)
    lines = []
    for key in (private_key, *more):
        kid = key_id(name, _raw_public(key.public_key()))
        sig = key.sign(text.encode())
        lines.append(f"{SIG_PREFIX}{name} {base64.b64encode(kid + sig).decode()}\n")
    return f"{text}\n" + "".join(lines)


def sign_checkpoint(
    checkpoint: Checkpoint, name: str, private_key: Ed25519PrivateKey, *more: Ed25519PrivateKey
) -> str:
    """The full signed note for ``checkpoint``, signed by ``name``'s Ed25519 key(s)."""
    text = checkpoint.body()
    if "\u2014" in text:
        raise NoteError("checkpoint lines must contain no em dash")
    return sign_note(text, name, private_key, *more)


def split_note(note: str) -> tuple[str, list[tuple[str, bytes, bytes]]]:
    """Split a signed note into its text and (name, key ID, signature) triples.

    The signatures follow the *last* blank line (the text itself may not contain one, but a
    forged note might, and splitting at the first would verify the wrong text).
    """
    note = decode_note(note)
    cut = note.rfind("\n\n")
    if cut < 0 or not note.endswith("\n"):
        raise NoteError("malformed note: no blank line before signatures or missing final newline")
    text, sig_block = note[: cut + 1], note[cut + 2 :]
    if not text.strip("\n") or "\n\n" in text or text.startswith("\n"):
        raise NoteError("malformed note: empty text or a blank line inside it")
    if sig_block.count("\n") > MAX_SIGNATURES:
        raise NoteError(f"note carries more than {MAX_SIGNATURES} signature lines")
    sigs = []
    for line in sig_block[:-1].split("\n"):
        if not line.startswith(SIG_PREFIX):
            raise NoteError(f"malformed signature line {line!r}")
        name, _, blob = line[len(SIG_PREFIX) :].partition(" ")
        # A line naming an impossible key is a malformed note (as Go's note.Open), not an
        # unknown signer to skip: signed-note key names are non-empty, no spaces, no "+".
        _check_name(name)
        try:
            raw = b64decode_canonical(blob)
        except binascii.Error as e:
            raise NoteError(f"signature of {name!r} is not canonical base64") from e
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
    size = parse_uint64(size_s)
    if size is None:
        raise NoteError(f"bad tree size {size_s[:30]!r}")
    try:
        root = b64decode_canonical(root_b64)
    except binascii.Error as e:
        raise NoteError("root hash is not canonical base64") from e
    if len(root) != 32:
        raise NoteError("root hash is not 32 bytes")
    if not origin or any(not e for e in ext):
        raise NoteError("empty origin or extension line")
    return Checkpoint(origin, size, root, tuple(ext))


def open_note(note: str, key: VerifierKey) -> str:
    """Verify ``note``'s signature by ``key`` and return its text.

    Signatures by other keys are ignored (notes may be cosigned by witnesses); at least one
    must be ``key``'s and it must verify, else NoteError.
    """
    return open_note_any(note, [key])[0]


def open_note_any(note: str, keys: list[VerifierKey]) -> tuple[str, list[VerifierKey]]:
    """Verify ``note`` against any of ``keys``; returns its text and the keys that signed it.

    As Go's ``note.Open``: signatures by unknown keys are ignored, a signature by a known key
    that does not verify is an error, and at least one known key must have signed.
    """
    text, sigs = split_note(note)
    signed: list[VerifierKey] = []
    for name, kid, sig in sigs:
        for key in keys:
            if name == key.name and kid == key.key_id:
                if not key.verify(text.encode(), sig):
                    raise NoteError(f"signature by {name} does not verify: the note was altered")
                if key not in signed:
                    signed.append(key)
    if not signed:
        signers = ", ".join(f"{n}/{k.hex()}" for n, k, _ in sigs)
        trusted = ", ".join(f"{k.name}/{k.key_id.hex()}" for k in keys)
        raise NoteError(f"not signed by the trusted key {trusted} (signed by {signers})")
    return text, signed


def open_checkpoint(note: str, key: VerifierKey, origin: str | None = None) -> Checkpoint:
    """Verify a checkpoint note signed by ``key`` and return the checkpoint it vouches for."""
    return open_checkpoint_any(note, [key], origin)[0]


def open_checkpoint_any(
    note: str, keys: list[VerifierKey], origin: str | None = None
) -> tuple[Checkpoint, list[VerifierKey]]:
    """A checkpoint signed by at least one of ``keys`` (all named after the origin)."""
    text, signed = open_note_any(note, keys)
    cp = parse_checkpoint_text(text)
    want_origin = keys[0].name if origin is None else origin
    if cp.origin != want_origin:
        raise NoteError(f"checkpoint origin {cp.origin!r} is not the expected {want_origin!r}")
    return Checkpoint(cp.origin, cp.tree_size, cp.root_hash, cp.extensions, note), signed
