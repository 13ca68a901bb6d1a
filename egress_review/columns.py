"""An identifier spelled down a column: a character a line in lines of one shape.

A job can print a name a letter a line inside a fixed template ("item C", "item o", ...;
"0    C" as a pandas Series of characters prints; "charlie" / "oscar" a NATO word a line), or
a letter a redraw of a progress bar ("frame 0 C\\rframe 1 o"). Each line is ordinary; the
name is in one column read downwards (log screen round 22: every such spelling passed).
`column_lines` reads the columns of each run of consecutive lines (or ``\\r`` redraws) with
the same number of words: a column whose every entry is one letter or digit, or a spelled
word (`egress_review.spelled`: NATO, Morse, digit words), is read as the characters it
spells, run on across the lines (`SqueezedIndex.run_on_lines`; a change of shape breaks it);
a column of one character repeated is a unit or a label ("0.13 s"), not read (pydicom's test
files name a patient "Sssssss"). Only identifiers long enough
to be no chance word there (`MIN_SQUEEZED_CHARS`) are looked for; a column of counters
("epoch 1" ... "epoch 9") spells nothing such.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from egress_review.folding import fold
from egress_review.spelled import spelled_char

if TYPE_CHECKING:  # the checks package imports disguised, which imports this module's peers
    from egress_review.disguised import SqueezedIndex

_WORD = re.compile(r"[^\s:=,;|\[\]()<>'\"]+")
# Columns read per line: a template's first few words (a name hidden further right needs a
# line of more words than that, the same on every line).
MAX_COLUMNS = 12
# A break between runs: no identifier's squeezed form holds it.
_BREAK = "-"


def _cell(word: str) -> str | None:
    """The character a column entry stands for: one letter or digit, or a spelled word."""
    if len(word) == 1 and word.isalnum():
        return word.lower()
    return spelled_char(word)


def column_lines(
    texts: list[str], index: SqueezedIndex, owner: list[int] | None = None, skip: frozenset[int] = frozenset()
) -> set[int]:
    """0-based numbers of the lines an identifier runs down a column of. ``texts``: the
    lines (or their ``\\r`` redraws, with ``owner`` the line each belongs to); ``skip``: lines
    withheld anyway, which break a run."""
    owner = owner if owner is not None else list(range(len(texts)))
    words = [[] if owner[i] in skip else _WORD.findall(fold(t)) for i, t in enumerate(texts)]
    hits: set[int] = set()
    runs = _runs(words)
    for column in range(MAX_COLUMNS):
        cells = [_BREAK] * len(words)
        for start, end in runs:
            chars = [_cell(row[column]) if column < len(row) else None for row in words[start:end]]
            if len({c for c in chars if c is not None}) < 2:
                continue  # a unit or a label repeated ("0.13 s"), or no such column
            for i, char in enumerate(chars, start):
                cells[i] = _BREAK if char is None else _BREAK + char if i == start else char
        if any(c != _BREAK for c in cells):
            hits.update(owner[i] for i in index.run_on_lines(cells))
    return hits


def _runs(words: list[list[str]]) -> list[tuple[int, int]]:
    """The runs of two lines or more with the same number of words, as (start, end)."""
    runs = []
    start = 0
    for i in range(1, len(words) + 1):
        if i == len(words) or len(words[i]) != len(words[start]):
            if i - start >= 2 and words[start]:
                runs.append((start, i))
            start = i
    return runs
