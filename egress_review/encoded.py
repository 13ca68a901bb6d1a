"""Recognising data smuggled as text: base64 (wrapped or spaced), hex dumps, escaped bytes.

A job that read an image can print it in any encoding. One long base64 run is easy to see;
the same bytes wrapped at 76 columns, spaced into groups, or printed as a hex dump are a run
of short lines, each innocent alone. This module measures, per line, how much of it looks
like encoded payload (`payload_chars`); the log screen then judges lines together (see
`egress_review.logscreen`), so a file cut into lines is still one file. It also offers the
decoded forms of short encoded fragments (`decoded_fragments`), so an identifier printed as
hex or base64 can be found by the identifier matcher.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections import Counter
from collections.abc import Iterator

# Tokens are split on white space, the punctuation dumps and lists put between values, and
# dots (file extensions: "<base64>.bin").
_SPLIT = re.compile(r"[\s,;:|()\[\]{}\"'`<>.]+")
_B64_TOKEN = re.compile(r"[A-Za-z0-9+/_=-]+")
_HEX_TOKEN = re.compile(r"(?:0[xX])?[0-9a-fA-F]{2,}")
_STRIPPED_B64 = re.compile(r"[A-Za-z0-9+/_=-]+")
_LONG_RUN = re.compile(r"[A-Za-z0-9+/_=-]{12,}")
# A token this long, from the base64 alphabet and mixing classes, is payload, not a word.
MIN_TOKEN_CHARS = 12
# Hex dumps: this many fixed-width hex groups on one line.
MIN_HEX_GROUPS = 8


def random_looking(token: str) -> bool:
    """Whether a base64-alphabet token mixes character classes the way encoded bytes do
    (words are letters of one case after the first; numbers are digits only)."""
    has_digit = any(c.isdigit() for c in token)
    has_alpha = any(c.isalpha() for c in token)
    if has_digit and has_alpha:
        return True
    if "+" in token:
        return True
    # "/" alone is a path ("figures/montage"), not base64.
    body = token[1:]
    return any(c.islower() for c in body) and any(c.isupper() for c in body)


def _hex_dump_chars(tokens: list[str]) -> int:
    """Hex digits in a line that looks like a hex dump: at least MIN_HEX_GROUPS hex groups of
    one width (xxd, hexdump -C, od -x, bytes.hex(' '), 0x.. lists)."""
    groups = [t[2:] if t[:2] in ("0x", "0X") else t for t in tokens if _HEX_TOKEN.fullmatch(t)]
    if len(groups) < MIN_HEX_GROUPS:
        return 0
    width, count = Counter(len(g) for g in groups).most_common(1)[0]
    if count < MIN_HEX_GROUPS or count * 2 < len(tokens):
        return 0
    return sum(len(g) for g in groups)


def _encoded_token(token: str) -> bool:
    """A base64 token, not a name joined with separators ("weights-epoch-10", "a/b_c"): its
    longest piece between -, _ and / is long and mixes character classes."""
    if len(token) < MIN_TOKEN_CHARS:
        return False
    longest = max(re.split(r"[-_/]", token), key=len)
    return len(longest) >= MIN_TOKEN_CHARS and random_looking(longest)


def payload_chars(line: str) -> int:
    """How many characters of ``line`` look like encoded data (0 for ordinary text)."""
    if len(line) < 16:
        return 0
    stripped = "".join(line.split())
    if len(stripped) >= 16 and _STRIPPED_B64.fullmatch(stripped) and random_looking(stripped):
        # A line that is nothing but base64 (wrapped, or spaced into groups).
        return len(stripped)
    tokens = [t for t in _SPLIT.split(line) if t]
    if len(tokens) < MIN_HEX_GROUPS and not _LONG_RUN.search(line):
        return 0
    hex_chars = _hex_dump_chars(tokens)
    b64_chars = sum(len(t) for t in tokens if _B64_TOKEN.fullmatch(t) and _encoded_token(t))
    return max(hex_chars, b64_chars)


def longest_run(line: str) -> int:
    """Length of the longest unbroken base64/hex-alphabet run in ``line``."""
    return max((len(m) for m in re.findall(r"[A-Za-z0-9+/]+", line)), default=0)


_HEX_RUN = re.compile(r"(?:(?:0[xX])?[0-9a-fA-F]{2}[\s:,.\-]?){3,}")
_ESCAPED = re.compile(r"(?:\\x[0-9a-fA-F]{2}){3,}")
_B64_RUN = re.compile(r"[A-Za-z0-9+/_-]{6,}={0,2}")
MAX_FRAGMENTS = 4096


def decoded_fragments(line: str) -> Iterator[str]:
    """Text that short hex, ``\\xNN`` or base64 fragments of ``line`` decode to (latin-1, so
    any bytes decode), for the identifier matcher to look at."""
    produced = 0
    for match in _HEX_RUN.finditer(line):
        digits = re.sub(r"0[xX]|[\s:,.\-]", "", match.group(0))
        if len(digits) % 2:
            digits = digits[:-1]
        try:
            yield bytes.fromhex(digits).decode("latin-1")
        except ValueError:
            pass
        produced += 1
    for match in _ESCAPED.finditer(line):
        yield bytes.fromhex(match.group(0).replace("\\x", "")).decode("latin-1")
        produced += 1
    for match in _B64_RUN.finditer(line):
        if produced >= MAX_FRAGMENTS:
            return
        token = match.group(0)
        if not (token.endswith("=") or random_looking(token)):
            continue  # an ordinary word: decoding it would only make noise
        produced += 1
        run = token.rstrip("=").replace("-", "+").replace("_", "/")
        # The fragment may start anywhere in a longer encoding: try every alignment.
        for skip in range(4):
            part = run[skip:]
            part = part[: len(part) - len(part) % 4] if len(part) % 4 == 1 else part
            try:
                yield base64.b64decode(part + "=" * (-len(part) % 4)).decode("latin-1")
            except (binascii.Error, ValueError):
                continue
