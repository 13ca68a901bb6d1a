"""An all-digit identifier (a date, an MRN, a UID's digits) printed a piece a line, each piece
among other numbers (round 16).

`egress_review.disguised.digit_lines` joins the digits of lines holding four digits or fewer;
a line with more (a step counter, a timestamp) kept its letters, which broke the run, so
"step 12345 id-part 0048" / "step 12346 id-part 213" passed, as did pieces with letters
between their digits ("1a9b6c2d"). Here each line with digits offers candidate pieces, and an
identifier is found when one piece from each of two or more consecutive lines with digits, in
order, spells it; lines without digits between the pieces (however many) are skipped. Letters
between digits are dropped first (`mixed_words`: "1a9b6c2d" is 1962).

A line holding `SHORT_LINE_DIGITS` digits or fewer offers every stretch of its consecutive
digit groups, read joined. A busier line (a counter, a timestamp, metrics) offers only its
whole numbers, a number being digit groups joined by single dots or commas ("0.0048" is
00048, "1.3.6.1" is 1361; a fraction alone is no piece: "0.91" in every line of a training
log gave "91"), each at its place among the line's numbers, and a chain keeps to one place on
every busy line (a column: "step 12345 id-part 0048" is the second number of each line);
and only forwards. Taking any number of a busy line, or fractions and reversals too, found
dates in an ordinary log's counters: with 603 identifiers, 54 of the benchmark log's 4,197
lines, and 13 lines of tqdm bars, timestamps and tracebacks, were withheld; with the column
rule, none. Every line with digits between two pieces must give the next piece: another
number breaks the chain. Residuals, documented in SECURITY.md: pieces at different places
among their lines' numbers, pieces separated by lines holding other numbers, an identifier's
reversal printed beside other numbers, and a piece that is part of a number (a decimal's
fraction).
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass

from egress_review.folding import fold, needs_folding
from egress_review.mixed_words import digits_of_mixed

# A line holding this many digits or fewer offers every stretch of its digit groups (as
# `digit_lines` reads such a line as its digits alone).
SHORT_LINE_DIGITS = 4
MIN_BUSY_PIECE = 1
# As `egress_review.disguised.MIN_SQUEEZED_CHARS` (not imported: importing that module first
# runs into the checks package's import of it).
MIN_FORM_DIGITS = 6
_NOT_ALNUM = re.compile(r"[^0-9a-z]+")
_DIGITS = re.compile(r"[0-9]+")
_ANY_DIGIT = re.compile(r"\d")
# Digit groups separated by anything but letters and line ends.
_RUN = re.compile(r"[0-9]+(?:[^0-9A-Za-z\n]+[0-9]+)*")
# A number: digit groups joined by single dots or commas.
_NUMBER = re.compile(r"[0-9]+(?:[.,][0-9]+)*")


Piece = tuple[str, int | None]  # its digits; on a busy line, its place among the line's numbers


def pieces(line: str, longest: int = 64) -> tuple[bool | None, set[Piece]]:
    """(whether the line is busy, None without digits; the candidate pieces it offers,
    ``longest`` digits at most; see the module's docstring)."""
    if not _ANY_DIGIT.search(line):
        return None, set()
    text = digits_of_mixed(fold(line) if needs_folding(line) else line)
    runs = [_DIGITS.findall(m.group(0)) for m in _RUN.finditer(text)]
    if sum(len(g) for groups in runs for g in groups) > SHORT_LINE_DIGITS:
        numbers = ["".join(_DIGITS.findall(m.group(0))) for m in _NUMBER.finditer(text)]
        return True, {(n, at) for at, n in enumerate(numbers) if MIN_BUSY_PIECE <= len(n) <= longest}
    found: set[Piece] = set()
    for groups in runs:
        for first in range(len(groups)):
            piece = ""
            for group in groups[first:]:
                piece += group
                found.add((piece, None))
    return (False if found else None), found


def numeric_forms(identifiers: Iterable[str]) -> set[str]:
    """The all-digit identifiers squeezed (a UID's digits), six digits or more."""
    found = {_NOT_ALNUM.sub("", fold(identifier).lower()) for identifier in identifiers}
    return {digits for digits in found if digits.isdigit() and len(digits) >= MIN_FORM_DIGITS}


@dataclass(frozen=True)
class ChainResult:
    hits: set[int]  # 0-based lines of every piece of every chain spelling a form
    open_from: int | None  # 0-based first line of the earliest chain still open at the end


class _Forms:
    """Sorted forms, so that whether a joined prefix can still become one is one bisection."""

    def __init__(self, forms: Iterable[str]) -> None:
        self.sorted = sorted(set(forms))
        self.longest = max((len(f) for f in self.sorted), default=0)

    def status(self, joined: str) -> tuple[bool, bool]:
        """(``joined`` is a form, ``joined`` is a proper prefix of one)."""
        at = bisect_left(self.sorted, joined)
        whole = at < len(self.sorted) and self.sorted[at] == joined
        if whole:
            at += 1
        return whole, at < len(self.sorted) and self.sorted[at].startswith(joined)


class DigitChains:
    """The all-digit identifiers (dates, MRNs, UIDs' digits), searched forwards over every line
    with digits, and reversed (all of them, UIDs too: one printed last character first, a
    character a line, passed round 15) over the lines of a few digits only."""

    def __init__(self, identifiers: Iterable[str]) -> None:
        forms = numeric_forms(identifiers)
        self.forwards = _Forms(forms)
        self.reversed = _Forms(form[::-1] for form in forms)

    def __bool__(self) -> bool:
        return bool(self.forwards.sorted)

    def search(self, lines: list[str], long_alone: int | None = None) -> ChainResult:
        """Chains over ``lines``; a form longer than ``long_alone`` digits is also found as one
        line's piece (a UID's digits in one line, dots or letters between: no chance match)."""
        offered = [pieces(line, self.forwards.longest) for line in lines]
        ahead = _chains(offered, self.forwards, long_alone, busy_too=True)
        back = _chains(offered, self.reversed, None, busy_too=False)
        opened = [at for at in (ahead.open_from, back.open_from) if at is not None]
        return ChainResult(ahead.hits | back.hits, min(opened, default=None))


def _chains(
    offered: list[tuple[bool | None, set[Piece]]], forms: _Forms, long_alone: int | None, busy_too: bool
) -> ChainResult:
    """Chains of one piece a line with digits spelling one of ``forms``, the pieces of busy
    lines at one place among their numbers; without ``busy_too`` a busy line offers nothing
    and breaks every chain."""
    hits: set[int] = set()
    whole_lines: set[int] = set()
    # (digits so far, the place its busy lines' pieces hold) -> the lines of its pieces
    states: dict[tuple[str, int | None], tuple[int, ...]] = {}
    for i, (busy, found) in enumerate(offered):
        if busy is None:
            continue  # no digits: the chain goes on across it
        if busy and not busy_too:
            states = {}
            continue
        grown: dict[tuple[str, int | None], tuple[int, ...]] = {}
        if any(forms.status(piece)[0] for piece, _ in found):
            # The line holds a whole identifier alone: the whole-token matcher's (or, long,
            # found here alone); chains through it would only drag its neighbours in
            # ("epoch 1" before "1.2.826...": "1" + "2826...").
            whole_lines.add(i)
        for piece, place in found:
            for (before, held), at in ((("", None), ()), *states.items()):
                if place is not None and held is not None and place != held:
                    continue  # another column of a busy line: not the next piece
                joined = before + piece
                whole, more = forms.status(joined)
                if whole and not at and long_alone is not None and len(joined) > long_alone:
                    hits.add(i)
                elif whole and at and whole_lines.isdisjoint((*at, i)):
                    hits.update((*at, i))
                key = (joined, held if held is not None else place)
                if more and key not in grown:
                    grown[key] = (*at, i)
        states = grown
    open_from = min((at[0] for at in states.values()), default=None)
    return ChainResult(hits, open_from)
