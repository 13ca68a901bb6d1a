"""Identifiers written as their hash (airlock round 18): ``sha256("ZQX-0003")`` as a row key.

A hex digest of a patient ID looks like a random pseudonym, but anyone who holds the list of
IDs (the hospital, the next researcher with the same dataset) hashes each one and reads the
rows back: an unsalted hash of an identifier is the identifier. The identifiers are few and
the digests cheap, so each kept identifier's MD5, SHA-1, SHA-256 and SHA-512 (of the ID as
written, upper-cased and lower-cased) is computed once per identifier set and every
whole hex token of those lengths in a text is looked up. A salted or keyed hash (HMAC) is
no digest of the ID alone and cannot be recognised here (docs/egress-checks.md).
"""

from __future__ import annotations

import functools
import hashlib
import re

ALGORITHMS = ("md5", "sha1", "sha256", "sha512")
# a whole token of a digest's length (32, 40, 64 or 128 hex digits): anchored on its first
# digit, so a long hex run is tried once, at its start
_DIGEST = re.compile(
    r"(?<![0-9A-Za-z])[0-9A-Fa-f]{32}(?:[0-9A-Fa-f]{8}|[0-9A-Fa-f]{32}(?:[0-9A-Fa-f]{64})?)?(?![0-9A-Za-z])"
)


@functools.lru_cache(maxsize=8)
def digests(identifiers: frozenset[str]) -> frozenset[str]:
    """Every digest (lower-case hex) of every identifier in its three cases."""
    out: set[str] = set()
    for ident in identifiers:
        for form in {ident, ident.upper(), ident.lower()}:
            data = form.encode()
            out.update(hashlib.new(algo, data).hexdigest() for algo in ALGORITHMS)
    return frozenset(out)


def hashed_lines(text: str, identifiers: frozenset[str]) -> list[int]:
    """1-based lines of ``text`` holding a digest of one of ``identifiers``."""
    if not identifiers:
        return []
    known = digests(identifiers)
    lines: list[int] = []
    line, pos = 1, 0
    for m in _DIGEST.finditer(text):
        if m.group(0).lower() in known:
            line += text.count("\n", pos, m.start())
            pos = m.start()
            lines.append(line)
    return lines
