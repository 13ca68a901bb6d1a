"""Finding a dataset's identifiers in disguise: spaced, squeezed, reversed, hex or base64.

`IdentifierMatcher` finds "Jane Doe" and "doe_jane.png". A job that wants a name out prints
it as "J a n e  D o e", "JANEDOE", "eoD enaJ", "4a616e65" or "SmFuZQ==" instead. Each
function here rewrites lines into a form in which the plain matcher (or a substring search
for long identifiers) sees through one disguise, keeping one output line per input line so
hits map back to line numbers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from egress_review.checks.identifiers import IdentifierMatcher
from egress_review.encoded import decoded_fragments

# A run of single characters separated by exactly one non-alphanumeric character:
# "J a n e", "J.a.n.e", "C-I-T-I-Z-E-N". Longer gaps separate words.
_SPACED = re.compile(r"(?<![0-9A-Za-z])[0-9A-Za-z](?:[^0-9A-Za-z\n][0-9A-Za-z](?![0-9A-Za-z]))+")
_NOT_ALNUM = re.compile(r"[^0-9a-z]+")
# Identifiers at least this long (letters and digits only) are also searched as substrings of
# squeezed lines: long enough that a chance match in ordinary text is unlikely.
MIN_SQUEEZED_CHARS = 6


def despaced(line: str) -> str:
    return _SPACED.sub(lambda m: re.sub(r"[^0-9A-Za-z]", "", m.group(0)), line)


def squeeze(text: str) -> str:
    return _NOT_ALNUM.sub("", text.lower())


class SqueezedIndex:
    """Long identifiers as letters and digits only, found as substrings of squeezed text
    (catches "JANEDOE", "jane.doe.1970" run together, and, reversed, "EODENAJ")."""

    def __init__(self, identifiers: Iterable[str]) -> None:
        self.by_prefix: dict[str, list[str]] = {}
        for ident in identifiers:
            norm = squeeze(ident)
            if len(norm) >= MIN_SQUEEZED_CHARS:
                self.by_prefix.setdefault(norm[:MIN_SQUEEZED_CHARS], []).append(norm)

    def __bool__(self) -> bool:
        return bool(self.by_prefix)

    def found_in(self, squeezed: str) -> bool:
        k = MIN_SQUEEZED_CHARS
        index = self.by_prefix
        for i in range(len(squeezed) - k + 1):
            candidates = index.get(squeezed[i : i + k])
            if candidates and any(squeezed.startswith(c, i) for c in candidates):
                return True
        return False


def disguised_lines(lines: list[str], matcher: IdentifierMatcher, squeezed_index: SqueezedIndex) -> set[int]:
    """0-based numbers of the lines that carry an identifier in any handled disguise."""
    hits: set[int] = set()
    if not matcher and not squeezed_index:
        return hits

    def by_matcher(variant: list[str]) -> None:
        if matcher:
            hits.update(h.line - 1 for h in matcher.find("\n".join(variant), limit=100_000))

    spaced = [despaced(line) for line in lines]
    by_matcher(spaced)
    by_matcher([line[::-1] for line in spaced])
    decoded = [" ".join(decoded_fragments(line)).replace("\n", " ") for line in lines]
    by_matcher(decoded)
    by_matcher([line[::-1] for line in decoded])
    if squeezed_index:
        for number, (line, dec) in enumerate(zip(spaced, decoded, strict=True)):
            if number in hits:
                continue
            for text in (line, dec):
                s = squeeze(text)
                if squeezed_index.found_in(s) or squeezed_index.found_in(s[::-1]):
                    hits.add(number)
                    break
    return hits
