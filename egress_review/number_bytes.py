"""Text that a line's numbers spell as bytes: for finding an identifier printed as numbers.

A job can print a name's bytes as numbers in ways `egress_review.encoded`'s decimal byte
lists do not read (log screen round 22): the character codes in hex or octal in a list's
repr (``['0x43', '0x6f']``, ``103 157 155``), in a numpy array's repr wrapped over two
lines (`continues`), as code built from them
(``chr(67)+chr(111)``), the name's bytes read as one big integer
(``int.from_bytes(b"Compressed", "big")``), as 32- or 64-bit integers
(``struct.unpack("<q", ...)``) or as the bit patterns of 64-bit floats, and the name in a
bytes literal between NUL escapes (``b'C\\x00o\\x00'``, UTF-16). `number_text` writes out
what such numbers spell, for the identifier matchers to read.

What stays open: a code the job keys itself (codes shifted by a constant, XOR with a key,
any permutation); those are as many as the job likes and read as ordinary numbers.
"""

from __future__ import annotations

import codecs
import re
import struct
from collections.abc import Iterator

# An integer as a program prints one: decimal, or with a 0x / 0o / 0b prefix; not a piece
# of a decimal fraction or of a word.
_INTEGER = re.compile(r"(?<![\w.])-?(?:0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|\d+)(?![\w]|\.\d)")
# A float written with its 16-17 significant digits (``repr`` of a float64), or with an
# exponent: the forms a float's bit pattern prints in.
_FLOAT = re.compile(r"(?<![\w.])-?\d\.\d{11,17}(?:[eE][-+]?\d{1,3})?(?![\w.])")
# What `_number_bytes` reads, looked for first: most lines hold no such number.
_LONG_NUMBER = re.compile(r"\d{9}|\.\d{11}")
# A run of character codes: at least this many numbers with the same text between them.
MIN_CODES = 3
# The longest character code a run holds: "0x10ffff", "1114111".
MAX_CODE_CHARS = 8
# A number this long (in decimal digits) may be a name's bytes read as one integer: four
# bytes give up to ten digits.
MIN_BYTES_DIGITS = 9
# Longer numbers are not read (a 4,096-bit number is 1,233 digits; the screen's line
# limit bounds a line anyway).
MAX_BYTES_DIGITS = 1300
# A quoted literal holding escapes: "b'...'", '...', "...".
_LITERAL = re.compile(r"""b?'((?:[^'\\]|\\.)*)'|b?"((?:[^"\\]|\\.)*)\"""")


def _value(token: str) -> int:
    sign = -1 if token.startswith("-") else 1
    digits = token.lstrip("-")
    base = {"x": 16, "o": 8, "b": 2}.get(digits[1:2].lower(), 10) if digits[:1] == "0" else 10
    return sign * int(digits, base)


def _codes(line: str, found: list[re.Match[str]]) -> Iterator[str]:
    """Runs of `MIN_CODES` integers or more (of ``found``, ``line``'s) with one separator
    between them, read as character codes (and plain three-digit runs of 0-7 also as octal)."""
    run: list[re.Match[str]] = []
    separator = None
    for match in [*found, None]:
        if match is not None and run:
            between = "".join(line[run[-1].end() : match.start()].split())  # (numpy pads with spaces)
            if between == separator or (separator is None and len(run) == 1):
                separator = between
                run.append(match)
                continue
        if len(run) >= MIN_CODES:
            yield from _spelled(run)
        run = [match] if match is not None else []
        separator = None


def _spelled(run: list[re.Match[str]]) -> Iterator[str]:
    tokens = [m.group(0) for m in run]
    if any(len(t) > MAX_CODE_CHARS for t in tokens):
        return  # no character code (and int() of 5,000 digits raises)
    values = [_value(t) for t in tokens]
    if all(0 < v <= 0x10FFFF for v in values):
        yield "".join(chr(v) for v in values)
    if all(len(t) == 3 and set(t) <= set("01234567") for t in tokens):
        yield "".join(chr(int(t, 8)) for t in tokens)


def _as_bytes(value: int, width: int, order: str) -> bytes:
    """``value``'s two's-complement bytes, ``width`` of them ("big" or "little")."""
    return (value % (1 << (8 * width))).to_bytes(width, order)  # type: ignore[arg-type]


def _number_bytes(line: str, found: list[re.Match[str]]) -> Iterator[str]:
    """Long integers (of ``found``, ``line``'s) and full-precision floats read as the bytes
    they hold: each number's bytes, big- and little-endian, run together across the line's
    numbers (a name cut into 32- or 64-bit words prints as several)."""
    if not _LONG_NUMBER.search(line):
        return
    big: list[bytes] = []
    little: list[bytes] = []
    for match in found:
        token = match.group(0).lstrip("-")
        if token[:2].lower() in ("0x", "0o", "0b") or not MIN_BYTES_DIGITS <= len(token) <= MAX_BYTES_DIGITS:
            continue
        value = _value(match.group(0))
        width = 4 if -(1 << 31) <= value < (1 << 32) else 8 if -(1 << 63) <= value < (1 << 64) else 0
        width = width or (abs(value).bit_length() + 7) // 8
        big.append(_as_bytes(value, width, "big"))
        little.append(_as_bytes(value, width, "little"))
    for match in _FLOAT.finditer(line):
        number = float(match.group(0))
        big.append(struct.pack(">d", number))
        little.append(struct.pack("<d", number))
    if big:
        yield b"".join(big).decode("latin-1")
        yield b"".join(little).decode("latin-1")


def _literals(line: str) -> Iterator[str]:
    """Quoted literals with backslash escapes, unescaped, their NULs dropped (a name in
    UTF-16 prints as ``b'C\\x00o\\x00...'``)."""
    if "\\" not in line:
        return
    for match in _LITERAL.finditer(line):
        body = match.group(1) if match.group(1) is not None else match.group(2)
        if "\\" not in body:
            continue
        try:
            raw, _ = codecs.escape_decode(body.encode("latin-1", "replace"))
        except (ValueError, UnicodeError):
            continue
        yield raw.replace(b"\x00", b"").decode("latin-1")


def continues(line: str, following: str) -> bool:
    """Whether a run of numbers may go on from ``line`` into ``following``: ``line`` ends with
    a number or a comma and ``following`` holds a digit (numpy wraps an array's repr at 75
    columns: "array([ 67, 111, ...,\n       112, 108])")."""
    return line.rstrip()[-1:] in _RUN_ENDS and any(c.isdigit() for c in following)


_RUN_ENDS = frozenset("0123456789,")


def number_text(line: str) -> str:
    """What ``line``'s numbers and escaped literals spell as characters and bytes, one space
    between readings ("" when it has none)."""
    if not any(c.isdigit() for c in line):
        return ""
    found = list(_INTEGER.finditer(line))
    codes = _codes(line, found) if len(found) >= MIN_CODES else ()
    return " ".join([*codes, *_number_bytes(line, found), *_literals(line)])
