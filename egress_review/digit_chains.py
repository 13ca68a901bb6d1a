"""An all-digit identifier (a date, an MRN, a UID's digits) printed a piece a line, each piece
among other numbers (rounds 16 and 18).

`egress_review.disguised.digit_lines` joins the digits of lines holding four digits or fewer;
a line with more (a step counter, a timestamp) kept its letters, which broke the run, so
"step 12345 id-part 0048" / "step 12346 id-part 213" passed, as did pieces with letters
between their digits ("1a9b6c2d"). Here each line with digits offers candidate pieces, and an
identifier is found when one piece from each of two or more consecutive lines with digits, in
order, spells it; lines without digits between the pieces (however many) are skipped, and so
are lines the screen withholds anyway (encoded data, overlong). Letters between digits are
dropped first (`mixed_words`: "1a9b6c2d" is 1962).

A line holding `MAX_DIGITS_A_LINE` digits or fewer offers every stretch of its consecutive
digit groups, read joined. A busier line (a counter, a timestamp, metrics) offers its whole
numbers, a number being digit groups joined by single dots or commas ("0.0048" is 00048,
"1.3.6.1" is 1361), and each group of one ("loss 0.0048" / "loss 0.213": the fractions,
round 19), each at its number's place among the line's numbers, and a chain keeps to one
place on every busy line (a column: "step 12345 id-part 0048" is the second number of each
line); forwards and, since round 19, reversed. Taking any number of a busy line found dates
in an ordinary log's counters: with 603 identifiers, 54 of the benchmark log's 4,197 lines,
and 13 lines of tqdm bars, timestamps and tracebacks, were withheld (round 18; 112 of 5,904
benign lines in round 19's count); with the column rule, none, fractions and reversals
included (round 19: 0 of 5,904).
Every line with digits between two pieces must give the next piece: another
number breaks the chain, and on a line of a few digits the piece continuing a chain starts at
the line's first digit (round 19: "epoch 1" before "1.3." / "6.1." / ... gave "1", then "3"
of "1.3.", spelling the same UID, and was withheld with it).

A chain never makes a running log wait for more than its last line (round 18; round 16 held
every line from a chain's first piece while it was open, so a follower of an ordinary counting
log, "step 1 of 3" / "step 2 of 3", saw nothing): every line of a chain is withheld once the
piece that completes it is written, the completing line is never shown, and the log's last
line waits while it ends a chain that has spelt `HOLD_DIGITS` or more of an identifier's
start. A follower has therefore read the pieces before the last two when the identifier is
completed; what they give away is written in SECURITY.md.

The search is one pass over the lines, bounded per line and per log: a busy line offers its
first `MAX_BUSY_NUMBERS` numbers, and at most `MAX_STATES` chains are followed at once (those
extended first, then those begun on the line).

Round 20 closed two residuals, each with a rule that keeps the benign corpora whole
(`benchmarks/log_benign_withholds.py`: 6,054 lines, 0 withheld with the benchmark's 606
identifiers before and after, 21 with every pydicom test file's before and after):

* pieces at different places among their lines' numbers ("step 12345 id 0048" / "epoch 3
  step 12346 id 213"): a busy line's digit groups of `MIN_LOOSE_PIECE` (3) digits or more are
  also pieces placed nowhere, chained over busy lines at any place (`_anywhere`). Any group
  of any length strung together the counters of every training log (4,321 of the 6,054 lines
  withheld; two digits or more: 46; three with decimals also read joined, "0.91" as "091": 6);
* pieces separated by lines of other numbers ("id part 0048" / "epoch 3 loss 0.52" / "id part
  213"): the lines one print statement writes share a `shape` (digits as ``#``), and the
  chains are also searched within each shape, the lines of other shapes read as lines
  without digits (`_interleaved_shapes`).

Residuals, documented in SECURITY.md: pieces of one or two digits at different places among
their lines' numbers (a date two digits a line, wandering), pieces separated by lines of
other numbers and printed by lines of different shapes, and, bounds on the cost, a piece
past a busy line's first `MAX_BUSY_NUMBERS` numbers (only on lines longer than the default
policy lets through) or pushed out by more than `MAX_STATES` chains begun before it on its
line.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise

from egress_review.disguised import MAX_DIGITS_A_LINE, MIN_SQUEEZED_CHARS, squeeze
from egress_review.folding import fold, needs_folding
from egress_review.mixed_words import digits_of_mixed

MIN_BUSY_PIECE = 1
# A busy line's digit groups of this many digits or more are also pieces at any place among
# its numbers (round 20): with two, 46 of 6,054 benign lines were withheld, with three none.
MIN_LOOSE_PIECE = 3
# The place of those pieces (`Piece`): read only by the chains that ignore places.
LOOSE = -1
# Bounds on the search (per line, per log): a busy line's numbers offered, chains followed.
# 256 numbers: more than a line within the default `log_max_line_chars` (400) can hold, so
# under it every number of a line is offered (round 19; 32 let a piece hide as the 33rd);
# each piece continues only the chains keeping to its column, so the cost stays linear.
MAX_BUSY_NUMBERS = 256
MAX_STATES = 64
# A running log's last line waits while it ends a chain that spells this many digits of an
# identifier's start (fewer: "1" or "13" begins some UID in almost every line with digits).
HOLD_DIGITS = 3
_DIGITS = re.compile(r"[0-9]+")
_ANY_DIGIT = re.compile(r"\d")
# Digit groups separated by anything but letters and line ends.
_RUN = re.compile(r"[0-9]+(?:[^0-9A-Za-z\n]+[0-9]+)*")
# A number: digit groups joined by single dots or commas.
_NUMBER = re.compile(r"[0-9]+(?:[.,][0-9]+)*")
_NO_JOINERS = str.maketrans("", "", ".,")
_JOINERS = re.compile(r"[.,]")


# its digits; on a busy line, its place among the line's numbers; whether it may continue a
# chain (on a line of a few digits, a stretch from the line's first digit: digits before it
# would stand between two pieces)
Piece = tuple[str, int | None, bool]


def pieces(line: str, longest: int = 64) -> tuple[bool | None, set[Piece]]:
    """(whether the line is busy, None without digits; the candidate pieces it offers,
    ``longest`` digits at most; see the module's docstring)."""
    if not _ANY_DIGIT.search(line):
        return None, set()
    text = digits_of_mixed(fold(line) if needs_folding(line) else line)
    # busier than a line `digit_lines` reads as its digits alone
    if sum(map(len, _DIGITS.findall(text))) > MAX_DIGITS_A_LINE:
        busy: set[Piece] = set()
        for at, number in enumerate(_NUMBER.findall(text)[:MAX_BUSY_NUMBERS]):
            # the whole number, and each of its parts: a decimal's fraction ("loss 0.0048" /
            # "loss 0.213", round 19), at the number's place
            groups = _JOINERS.split(number)
            for part in (number.translate(_NO_JOINERS), *groups):
                if MIN_BUSY_PIECE <= len(part) <= longest:
                    busy.add((part, at, True))
            # anywhere on the line: its digit groups of `MIN_LOOSE_PIECE` digits or more
            for part in groups:
                if MIN_LOOSE_PIECE <= len(part) <= longest:
                    busy.add((part, LOOSE, True))
        return True, busy
    runs = [_DIGITS.findall(m.group(0)) for m in _RUN.finditer(text)]
    found: set[Piece] = set()
    for run, groups in enumerate(runs):
        for first in range(len(groups)):
            piece = ""
            for group in groups[first:]:
                piece += group
                found.add((piece, None, run == 0 and first == 0))
    return (False if found else None), found


def spelt_by_chance(digits: str) -> bool:
    """Whether ordinary logs spell ``digits`` a piece a line by themselves.

    A form of at most two distinct digits ("11111111", "00000001", "12121212") is spelt by any
    log whose lines hold those digits (a metric's "0.91", "1e-4"), and a form counting by one
    ("12345678", "87654321") by any counter ("epoch 1 of 20", "epoch 2 of 20", ...): with one
    such identifier in the dataset (pydicom's test files hold "11111111") every line of an
    ordinary training log was withheld. Such forms are not chased across lines; whole on a
    line they are still found by the identifier matcher.
    """
    if len(set(digits)) <= 2:
        return True
    steps = {(int(b) - int(a)) % 10 for a, b in pairwise(digits)}
    return steps in ({1}, {9})


def numeric_forms(identifiers: Iterable[str]) -> set[str]:
    """The all-digit identifiers squeezed (a UID's digits), six digits or more, but those
    ordinary logs spell by chance (`spelt_by_chance`)."""
    found = {squeeze(identifier) for identifier in identifiers}
    return {
        digits
        for digits in found
        if digits.isdigit() and len(digits) >= MIN_SQUEEZED_CHARS and not spelt_by_chance(digits)
    }


@dataclass(frozen=True)
class ChainResult:
    hits: set[int]  # 0-based lines of every piece of every chain spelling a form
    # 0-based line of the last piece of the open chains (proper prefixes of a form) that spell
    # `HOLD_DIGITS` or more; None when there is none
    open_at: int | None


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
    character a line, passed round 15), over busy lines too since round 19 ("step 12345 part
    3128" / "step 12346 part 400": 0 of 5,904 benign lines withheld); since round 20 also
    with a busy line's long groups at any place, and within each line shape."""

    def __init__(self, identifiers: Iterable[str]) -> None:
        forms = numeric_forms(identifiers)
        self.forwards = _Forms(forms)
        self.reversed = _Forms(form[::-1] for form in forms)

    def __bool__(self) -> bool:
        return bool(self.forwards.sorted)

    def search(
        self, lines: list[str], long_alone: int | None = None, skip: frozenset[int] = frozenset()
    ) -> ChainResult:
        """Chains over ``lines``; a form longer than ``long_alone`` digits is also found as one
        line's piece (a UID's digits in one line, dots or letters between: no chance match).
        ``skip``: lines withheld anyway (encoded data, overlong), read as lines without digits."""
        longest = self.forwards.longest
        both = [(None, set()) if i in skip else pieces(line, longest) for i, line in enumerate(lines)]
        offered = [_placed(offer) for offer in both]
        results = [_chains(offered, self.forwards, long_alone), _chains(offered, self.reversed, None)]
        loose = [_anywhere(offer) for offer in both]
        if any(busy for busy, _ in loose):
            results += [_chains(loose, forms, None) for forms in (self.forwards, self.reversed)]
        for group in _interleaved_shapes(lines, offered):
            within = [offered[i] for i in group]
            for forms in (self.forwards, self.reversed):
                found = _chains(within, forms, None)
                opened = None if found.open_at is None else group[found.open_at]
                results.append(ChainResult({group[i] for i in found.hits}, opened))
        opened_at = [r.open_at for r in results if r.open_at is not None]
        return ChainResult(set().union(*(r.hits for r in results)), max(opened_at, default=None))


Offer = tuple[bool | None, set[Piece]]


def _placed(offer: Offer) -> Offer:
    """A line's pieces but those at `LOOSE`: the chains keeping to a column."""
    busy, found = offer
    return (busy, {p for p in found if p[1] != LOOSE}) if busy else offer


def _anywhere(offer: Offer) -> Offer:
    """A busy line's `LOOSE` pieces, placed nowhere (a chain takes any of them on any busy
    line), for the chains whose pieces stand at different places among their lines' numbers
    ("step 12345 id 0048" / "epoch 3 step 12346 id 213", round 20); lines of a few digits are
    read as without digits here, their pieces being the column chains' already."""
    busy, found = offer
    if not busy:
        return None, set()
    return True, {(piece, None, True) for piece, place, _ in found if place == LOOSE}


_SHAPE_DIGITS = re.compile(r"[0-9]+")
_SPACES = re.compile(r"\s+")


def shape(line: str) -> str:
    """``line`` with each digit group as ``#`` and its spaces collapsed: the lines one print
    statement writes share it ("id part 0048" and "id part 213": "id part #")."""
    return _SPACES.sub(" ", _SHAPE_DIGITS.sub("#", line)).strip()


def _interleaved_shapes(lines: list[str], offered: list[Offer]) -> list[list[int]]:
    """The lines with digits grouped by `shape`, each group whose lines have lines with digits
    of other shapes between them (round 20: "id part 0048" / "epoch 3 loss 0.52" / "id part
    213"). A chain over one such group reads the lines of other shapes as lines without
    digits; taking any line with digits between two pieces as no digits would let an
    ordinary log's numbers spell a date, and one statement's lines are ordered by their own
    counter. A group whose lines follow each other is the plain search's."""
    groups: dict[str, list[int]] = {}
    rank: dict[int, int] = {}
    for i, (busy, _) in enumerate(offered):
        if busy is not None:
            groups.setdefault(shape(lines[i]), []).append(i)
            rank[i] = len(rank)
    return [
        group
        for group in groups.values()
        if len(group) >= 2 and any(rank[b] - rank[a] > 1 for a, b in pairwise(group))
    ]


def _chains(
    offered: list[tuple[bool | None, set[Piece]]], forms: _Forms, long_alone: int | None
) -> ChainResult:
    """Chains of one piece a line with digits spelling one of ``forms``, the pieces of busy
    lines at one place among their numbers. At most `MAX_STATES` chains are followed from
    line to line."""
    hits: set[int] = set()
    whole_lines: set[int] = set()
    # each digit string's standing, looked up once a search: a log repeats its numbers
    # (fractions, counters' digits), and every piece is looked up as a chain's first
    known: dict[str, tuple[bool, bool]] = {}

    def status(digits: str) -> tuple[bool, bool]:
        found = known.get(digits)
        if found is None:
            found = known[digits] = forms.status(digits)
        return found

    # (digits so far, the place its busy lines' pieces hold) -> the lines of its pieces
    states: dict[tuple[str, int | None], tuple[int, ...]] = {}
    for i, (busy, found) in enumerate(offered):
        if busy is None:
            continue  # no digits: the chain goes on across it
        grown: dict[tuple[str, int | None], tuple[int, ...]] = {}
        alone = {piece: status(piece) for piece, _, _ in found}  # each piece as a chain's first
        if any(whole for whole, _ in alone.values()):
            # The line holds a whole identifier alone: the whole-token matcher's (or, long,
            # found here alone); chains through it would only drag its neighbours in
            # ("epoch 1" before "1.2.826...": "1" + "2826...").
            whole_lines.add(i)
        # the chains going on first, then those the line begins, while there is room
        # the pieces that may continue a chain (digits before one on its line would stand
        # between two pieces), by their place: a chain keeping to a column of busy lines
        # reads only that column's pieces
        going_on: dict[int | None, list[tuple[str, int | None]]] = {}
        for piece, place, continues in found:
            if continues:
                going_on.setdefault(place, []).append((piece, place))
        every = [p for group in going_on.values() for p in group]
        for (before, held), at in states.items():
            for piece, place in every if held is None or not busy else going_on.get(held, ()):
                joined = before + piece
                whole, more = status(joined)
                if whole and whole_lines.isdisjoint((*at, i)):
                    hits.update((*at, i))
                key = (joined, held if held is not None else place)
                if more and key not in grown and len(grown) < MAX_STATES:
                    grown[key] = (*at, i)
        for piece, place, _ in found:
            whole, more = alone[piece]
            if whole and long_alone is not None and len(piece) > long_alone:
                hits.add(i)
            if more and (piece, place) not in grown and len(grown) < MAX_STATES:
                grown[(piece, place)] = (i,)
        states = grown
    held_open = [at[-1] for (joined, _), at in states.items() if len(joined) >= HOLD_DIGITS]
    return ChainResult(hits, max(held_open, default=None))
