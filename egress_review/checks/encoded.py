"""Finding binary content written as text: base64 (standard or URL-safe, one run or MIME
76-column lines), base32, base85/Ascii85 and hex dumps.

A job that cannot take a DICOM out as a file writes it into a log as base64 or as ``xxd``
output. Runs are found line-aware (MIME wraps every 76 characters, so no single run is long),
decoded, and handed back to the caller to be checked as files of their own: a base64 DICOM
gets the DICOM checks, a hex-dumped CSV the table rules.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

MAX_DECODED_BYTES = 64 * 1024 * 1024
MAX_BLOBS = 10

_B64_LINE = re.compile(r"^[A-Za-z0-9+/_\-]{16,}={0,6}$")
_B64_RUN = re.compile(r"(?<![A-Za-z0-9+/_\-])[A-Za-z0-9+/_\-]{64,}={0,6}")
# xxd: "00000010: 4449 434d 0200 ...  DICM..."; hexdump -C: "00000010  44 49 43 4d ...  |DICM|";
# od -A x -t x1: "000010 44 49 43 4d"; and bare hex lines.
_XXD = re.compile(r"^[0-9a-fA-F]{4,16}:\s+((?:[0-9a-fA-F]{2,4}\s){1,16})")
_HEXDUMP_C = re.compile(r"^[0-9a-fA-F]{6,16}\s+((?:[0-9a-fA-F]{2}\s+){1,16})")
_BARE_HEX = re.compile(r"^ *((?:[0-9a-fA-F]{2}[ :]?){16,}) *$")
_BARE_HEX_TAIL = re.compile(r"^ *((?:[0-9a-fA-F]{2}[ :]?){1,16}) *$")  # the shorter last line of a block
_HEX_LETTER = re.compile(r"[a-fA-F]")


@dataclass(frozen=True)
class Blob:
    """Decoded bytes and where they were found (1-based line of the first encoded line)."""

    kind: str
    line: int
    chars: int
    data: bytes
    last_line: int = 0


_B32 = re.compile(r"[A-Z2-7]+=*")
_B64_ALPHABET = re.compile(r"[A-Za-z0-9+/=_\-]+")
# base85 (RFC 1924, Python's b85encode) and Ascii85 (btoa, Adobe) together cover every
# printable character but space; a line of them is tried only when base64 cannot explain it.
_B85_LINE = re.compile(r"^(?:<~)?[!-~]{16,}(?:~>)?$")


def _b64(text: str) -> bytes | None:
    decoded = decode_b64_family(text)
    return decoded[1] if decoded else None


def decode_b64_family(text: str) -> tuple[str, bytes] | None:
    """(kind, bytes) for base64 (standard or URL-safe alphabet), or base32 when the run is in
    base32's alphabet (upper-case letters and 2-7 only: base64 of binary data has lower-case
    letters). A URL-safe run needs some variety: a rule of dashes is not an encoding."""
    body = text.rstrip("=")
    if _B32.fullmatch(text) and len(body) >= 16 and len(set(body)) >= 8:
        try:
            return "base32", base64.b32decode(text + "=" * (-len(text) % 8))
        except (binascii.Error, ValueError):
            pass
    urlsafe = "-" in text or "_" in text
    if urlsafe and len(set(body)) < 16:
        return None
    try:
        data = base64.b64decode(
            body + "=" * (-len(body) % 4), altchars=b"-_" if urlsafe else None, validate=True
        )
    except (binascii.Error, ValueError):
        return None
    return ("base64 (URL-safe)" if urlsafe else "base64"), data


def _b85(text: str) -> bytes | None:
    """base85 or Ascii85 (with or without <~ ~>), when the text is not base64."""
    if _B64_ALPHABET.fullmatch(text) or len(set(text)) < 48:
        return None  # base64's; or too few symbols: CSV rows and paths are not base85
    body = text[2:-2] if text.startswith("<~") and text.endswith("~>") else text
    for decode in (base64.b85decode, lambda t: base64.a85decode(t, adobe=False)):
        try:
            return decode(body)
        except (binascii.Error, ValueError):
            continue
    return None


def _b85_blocks(lines: list[str], min_chars: int) -> list[Blob]:
    """Lines (one long, or wrapped) of base85/Ascii85 that decode as such."""
    out: list[Blob] = []
    i = 0
    while i < len(lines) and len(out) < MAX_BLOBS:
        if not _B85_LINE.match(lines[i].strip()):
            i += 1
            continue
        j = i + 1
        while j < len(lines) and _B85_LINE.match(lines[j].strip()):
            j += 1
        block = "".join(s.strip() for s in lines[i:j])
        if len(block) >= min_chars:
            data = _b85(block)
            if data:
                out.append(Blob("base85", i + 1, len(block), data, j))
        i = j
    return out


def _mime_blocks(lines: list[str], min_chars: int) -> list[Blob]:
    """Consecutive lines of equal length in the base64 alphabet (the last one may be shorter)."""
    out: list[Blob] = []
    i = 0
    while i < len(lines) and len(out) < MAX_BLOBS:
        line = lines[i].strip()
        if not _B64_LINE.match(line) or _HEXISH.fullmatch(line):
            i += 1
            continue
        width = len(line)
        j = i + 1
        while j < len(lines):
            nxt = lines[j].strip()
            if not _B64_LINE.match(nxt) and not (nxt and len(nxt) < width and _b64_tail(nxt)):
                break
            if len(nxt) != width:
                j += 1  # the shorter last line ends the block
                break
            j += 1
        block = "".join(s.strip() for s in lines[i:j])
        if j - i >= 2 and len(block) >= min_chars:
            decoded = decode_b64_family(block)
            if decoded:
                out.append(Blob(f"{decoded[0]} (wrapped lines)", i + 1, len(block), decoded[1], j))
        i = j
    return out


_HEXISH = re.compile(r"[0-9a-fA-F]+")


def _b64_tail(line: str) -> bool:
    return re.fullmatch(r"[A-Za-z0-9+/_\-]*={0,6}", line) is not None


def _hex_dumps(lines: list[str], min_bytes: int) -> list[Blob]:
    """Hex dumps (xxd, hexdump -C, od, bare hex lines), one blob per consecutive block.

    Offsets, where the dump prints them, place each line's bytes; ``*`` (hexdump's "same as
    the line before") repeats the previous line up to the next offset.
    """
    out: list[Blob] = []
    buf = bytearray()
    last = b""
    start = 0
    in_block = False
    letters = False
    bare = False
    for no, line in enumerate([*lines, ""], start=1):
        m = _XXD.match(line) or _HEXDUMP_C.match(line) or _BARE_HEX.match(line)
        if m is None and in_block and bare and line.strip():
            m = _BARE_HEX_TAIL.match(line)
            if m is not None:
                tail = re.sub(r"[^0-9a-fA-F]", "", m.group(1))
                buf.extend(bytes.fromhex(tail[: len(tail) // 2 * 2]))
                bare = False  # a short line ends the block
                continue
        if m:
            digits = re.sub(r"[^0-9a-fA-F]", "", m.group(1))[: 32 if m.re is not _BARE_HEX else None]
            if len(digits) % 2:
                digits = digits[:-1]
            chunk = bytes.fromhex(digits)
            if not in_block:
                buf, start, in_block = bytearray(), no, True
                letters = False
            bare = m.re is _BARE_HEX
            letters = letters or bool(_HEX_LETTER.search(digits))
            if m.re is not _BARE_HEX:
                offset = int(line.split(":", 1)[0].split()[0], 16)
                while last and len(buf) < offset and len(buf) < MAX_DECODED_BYTES:
                    buf.extend(last[: offset - len(buf)])
            buf.extend(chunk)
            last = chunk
            continue
        if in_block and line.strip() == "*":
            continue
        if in_block:
            in_block = False
            # Columns of two-digit numbers look like bare hex; real byte dumps hold a-f somewhere.
            if len(buf) >= min_bytes and letters:
                out.append(Blob("hex dump", start, len(buf) * 2, bytes(buf), no - 1))
            if len(out) >= MAX_BLOBS:
                break
    return out


_BYTE_LIST = re.compile(r"^\s*(?:0[xX][0-9a-fA-F]{2}\s*,?\s*){4,}$")
_BYTES_LITERAL = re.compile(r"b'(?:[^'\\\n]|\\.){16,}'" + r'|b"(?:[^"\\\n]|\\.){16,}"')


def _byte_lists(lines: list[str], min_bytes: int) -> list[Blob]:
    """C/Python byte arrays (``xxd -i``: ``0x44, 0x49, 0x43, 0x4d,``), one blob per block of lines."""
    out: list[Blob] = []
    i = 0
    while i < len(lines) and len(out) < MAX_BLOBS:
        if not _BYTE_LIST.match(lines[i]):
            i += 1
            continue
        j = i
        while j < len(lines) and _BYTE_LIST.match(lines[j]):
            j += 1
        data = bytes(int(h, 16) for ln in lines[i:j] for h in re.findall(r"0[xX]([0-9a-fA-F]{2})", ln))
        if len(data) >= min_bytes:
            out.append(Blob("byte array (0x..)", i + 1, sum(len(ln) for ln in lines[i:j]), data, j))
        i = j
    return out


def _bytes_literals(text: str, min_bytes: int) -> list[Blob]:
    """Python ``bytes`` reprs (``b'DICM\\x02\\x00...'``), read with `ast.literal_eval` (no code runs)."""
    import ast

    out: list[Blob] = []
    for m in _BYTES_LITERAL.finditer(text):
        if len(m.group(0)) < min_bytes or "\\x" not in m.group(0):
            continue
        try:
            data = ast.literal_eval(m.group(0))
        except (ValueError, SyntaxError, MemoryError):
            continue
        if isinstance(data, bytes) and len(data) >= min_bytes:
            out.append(
                Blob("Python bytes literal", text.count("\n", 0, m.start()) + 1, len(m.group(0)), data)
            )
        if len(out) >= MAX_BLOBS:
            break
    return out


def _runs(text: str, min_chars: int) -> list[Blob]:
    """Single long runs: base64 or hex without line breaks."""
    out: list[Blob] = []
    for m in _B64_RUN.finditer(text):
        run = m.group(0)
        if len(run) < min_chars:
            continue
        line = text.count("\n", 0, m.start()) + 1
        if _HEXISH.fullmatch(run) and len(run) % 2 == 0:
            out.append(Blob("hex", line, len(run), bytes.fromhex(run)))
        else:
            decoded = decode_b64_family(run)
            if decoded:
                out.append(Blob(decoded[0], line, len(run), decoded[1]))
        if len(out) >= MAX_BLOBS:
            break
    return out


def find_encoded(text: str, min_chars: int) -> list[Blob]:
    """Every decodable encoded region of at least ``min_chars`` characters (hex dumps: bytes/2)."""
    lines = text.splitlines()
    mime = _mime_blocks(lines, min_chars)
    hexed = [
        h
        for h in _hex_dumps(lines, min_chars // 4)
        if not any(m.line <= h.line <= m.last_line for m in mime)  # 'AAAA' lines are hex too
    ]
    base85 = [
        b
        for b in _b85_blocks(lines, min_chars)
        if not any(m.line <= b.line <= m.last_line for m in [*mime, *hexed])
    ]
    arrays = _byte_lists(lines, min_chars // 4) + _bytes_literals(text, min_chars // 4)
    blobs = _runs(text, min_chars) + mime + hexed + base85 + arrays
    total = 0
    kept: list[Blob] = []
    for blob in sorted(blobs, key=lambda b: b.line):
        total += len(blob.data)
        if total > MAX_DECODED_BYTES or len(kept) >= MAX_BLOBS:
            break
        kept.append(blob)
    return kept
