"""An all-digit identifier (a date, an MRN, a UID's digits) printed a piece a line, each piece
among other numbers (round 16).

`egress_review.disguised.digit_lines` joins the digits of lines holding four digits or fewer;
a line with more (a step counter, a timestamp) kept its letters, which broke the run, so
"step 12345 id-part 0048" / "step 12346 id-part 213" passed, as did pieces with letters
between their digits ("1a9b6c2d"). Here each line with digits offers its candidate pieces:
within each run of digit groups separated by anything but letters ("12:00:05", "1.3.6.1",
"0.0048"), every stretch of whole consecutive groups, read joined. An identifier is found when
one piece from each of two or more consecutive lines with digits, in order, spells it; lines
without digits between the pieces (however many) are skipped. Letters inside a word that
also holds digits are dropped first ("1a9b6c2d" is 1962), so letters between digits break
nothing.

To keep ordinary logs quiet a piece is whole groups only (a counter's "12345" never gives
"345"), two digits at least on a line holding more than `SHORT_LINE_DIGITS` digits (a busy
line's lone digits, an epoch or a fold, are everywhere), and every line with digits between
two pieces must give the next piece: another number breaks the chain. Residuals, documented
in SECURITY.md: one digit a line on lines that also hold more than four other digits
("step 12345 d 1"), and pieces separated by lines holding other numbers.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass

from egress_review.disguised import MIN_SQUEEZED_CHARS, squeeze
from egress_review.folding import fold
from egress_review.mixed_words import digits_of_mixed

# A line holding this many digits or fewer may give one-digit pieces (`digit_lines` reads
# such a line as its digits alone).
SHORT_LINE_DIGITS = 4
MIN_BUSY_PIECE = 2
_DIGITS = re.compile(r"[0-9]+")
# Digit groups separated by anything but letters and line ends.
_RUN = re.compile(r"[0-9]+(?:[^0-9A-Za-z\n]+[0-9]+)*")


def pieces(line: str, longest: int = 64) -> set[str]:
    """The candidate pieces a line offers (see the module's docstring), ``longest`` digits
    at most."""
    text = digits_of_mixed(fold(line))
    found: set[str] = set()
    total = 0
    runs = []
    for match in _RUN.finditer(text):
        groups = _DIGITS.findall(match.group(0))
        total += sum(len(g) for g in groups)
        runs.append(groups)
    least = 1 if total <= SHORT_LINE_DIGITS else MIN_BUSY_PIECE
    for groups in runs:
        for first in range(len(groups)):
            piece = ""
            for group in groups[first:]:
                piece += group
                if len(piece) > longest:
                    break
                if len(piece) >= least:
                    found.add(piece)
    return found


@dataclass(frozen=True)
class ChainResult:
    hits: set[int]  # 0-based lines of every piece of every chain spelling a form
    open_from: int | None  # 0-based first line of the earliest chain still open at the end


def numeric_forms(identifiers: Iterable[str]) -> set[str]:
    """The all-digit identifiers squeezed (a UID's digits), six digits or more, and their
    reversals: UIDs' too, so one printed last character first, a character a line, is found
    (round 16; the cross-line search of `SqueezedIndex` keeps no UID reversals)."""
    found: set[str] = set()
    for identifier in identifiers:
        digits = squeeze(identifier)
        if digits.isdigit() and len(digits) >= MIN_SQUEEZED_CHARS:
            found |= {digits, digits[::-1]}
    return found


class DigitChains:
    """All-digit forms (dates, MRNs, UIDs squeezed, their reversals where kept), sorted, so
    that whether a joined prefix can still become one is one bisection."""

    def __init__(self, identifiers: Iterable[str]) -> None:
        self.forms = sorted(numeric_forms(identifiers))
        self.longest = max((len(f) for f in self.forms), default=0)

    def __bool__(self) -> bool:
        return bool(self.forms)

    def _status(self, joined: str) -> tuple[bool, bool]:
        """(``joined`` is a form, ``joined`` is a proper prefix of one)."""
        at = bisect_left(self.forms, joined)
        whole = at < len(self.forms) and self.forms[at] == joined
        if whole:
            at += 1
        return whole, at < len(self.forms) and self.forms[at].startswith(joined)

    def search(self, lines: list[str], long_alone: int | None = None) -> ChainResult:
        """Chains over ``lines``; a form longer than ``long_alone`` digits is also found as one
        line's piece (a UID's digits in one line, dots or letters between: no chance match)."""
        hits: set[int] = set()
        whole_lines: set[int] = set()
        states: dict[str, tuple[int, ...]] = {}
        for i, line in enumerate(lines):
            offered = pieces(line, self.longest)
            if not offered:
                continue  # no digits: the chain goes on across it
            grown: dict[str, tuple[int, ...]] = {}
            if any(self._status(piece)[0] for piece in offered):
                # The line holds a whole identifier alone: the whole-token matcher's (or,
                # long, found here alone); chains through it would only drag its neighbours
                # in ("epoch 1" before "1.2.826...": "1" + "2826...").
                whole_lines.add(i)
            for piece in offered:
                for before, at in (("", ()), *states.items()):
                    joined = before + piece
                    whole, more = self._status(joined)
                    if whole and not at and long_alone is not None and len(joined) > long_alone:
                        hits.add(i)
                    elif whole and at and whole_lines.isdisjoint((*at, i)):
                        hits.update((*at, i))
                    if more and joined not in grown:
                        grown[joined] = (*at, i)
            states = grown
        open_from = min((at[0] for at in states.values()), default=None)
        return ChainResult(hits, open_from)
