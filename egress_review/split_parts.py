"""An identifier written in labelled parts: "MRN part 1: 0048, part 2: 213", "site HOSP,
cohort 77, subject 1234", "year 1962 / month 03 / day 15" (redteam9, round 5).

Each part alone is an ordinary short number or word, and the labels between them keep the
joined-identifier search (any separator, no words) from seeing one value. Here the text is
read as a stream of tokens; an identifier (letters and digits only, six or more; also the
digit run of six or more of an ID with letters) is found when two to four whole tokens in
order spell it, each after a label (a word, or a one-digit part number) or directly after
the part before it on its line ("HOSP-77"), within three lines of the one before. An
all-digit identifier (a date, a numeric ID) needs a first part of three digits or more and
three parts at most. To keep ordinary tables and logs quiet, a label must stand between two
of the parts at least (parts joined only by punctuation are the joined search's), and a
number that is not the next part breaks the chain, as does a decimal (a fraction is no
identifier part).
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Iterable, Iterator

MIN_TARGET_CHARS = 6
MIN_PART_CHARS = 2
MAX_PARTS = 4
MAX_DIGIT_PARTS = 3  # a date in year, month, day
MAX_LABELS_BETWEEN = 6
MAX_LINES_BETWEEN = 3

# A decimal is one token ("0.558" must not give the part "558"); otherwise runs of letters
# and digits, any script (underscores split: "part_1").
_TOKEN = re.compile(r"\d+[.,]\d+|[^\W_]+")
_DIGITS = re.compile(rf"\d{{{MIN_TARGET_CHARS},}}")


def _targets(identifier: str) -> set[str]:
    joined = "".join(ch for ch in identifier.upper() if ch.isalnum())
    found = {run for run in _DIGITS.findall(joined)}
    if len(joined) >= MIN_TARGET_CHARS:
        found.add(joined)
    return found


class SplitIndex:
    """The identifiers' spellable targets, sorted, to start chains from any proper prefix.

    The targets are kept once, in order: those a first part starts are one contiguous run
    found by bisection. Storing every prefix (as before round 14b) cost a set entry per
    prefix per target, several hundred MB for 100,000 UIDs, which share their roots."""

    def __init__(self, identifiers: Iterable[str]) -> None:
        found: set[str] = set()
        for identifier in identifiers:
            found |= _targets(identifier)
        self.targets = sorted(found)

    def _started_by(self, part: str) -> Iterator[str]:
        """The targets of which ``part`` is a possible first part: a proper prefix leaving a
        whole part (two characters) after it; of an all-digit target, three digits at least,
        so "epoch 20 ... 19 ... 04 ... 12" in a log does not spell a study date."""
        size = len(part)
        if size < MIN_PART_CHARS:
            return
        for index in range(bisect_left(self.targets, part), len(self.targets)):
            target = self.targets[index]
            if not target.startswith(part):
                return
            if len(target) - size >= MIN_PART_CHARS and (size > MIN_PART_CHARS or not target.isdigit()):
                yield target

    def __bool__(self) -> bool:
        return bool(self.targets)

    def lines_with(self, text: str) -> list[int]:
        """1-based lines where a chain of labelled parts spelling an identifier starts."""
        return sorted({chain[0] for chain in self.chains(text)})

    def chains(self, text: str) -> list[list[int]]:
        """The 1-based lines of each part, for every chain of labelled parts spelling an
        identifier (the log screen withholds every line of one)."""
        tokens: list[tuple[str, int]] = []
        for line_no, line in enumerate(text.split("\n"), start=1):
            tokens += [(m.group().upper(), line_no) for m in _TOKEN.finditer(line)]
        found: list[list[int]] = []
        for i, (token, line_no) in enumerate(tokens):
            for target in self._started_by(token):
                lines = _spelt_from(tokens, i + 1, target, line_no)
                if lines:
                    found.append(lines)
                    break
        return found

    def first_open_line(self, text: str) -> int | None:
        """The 1-based line where the earliest chain still open at the end of ``text`` starts:
        its parts so far spell the start of an identifier and the next line could carry the
        next part. A live log waits there (redteam13: a follower read "MRN part 1: 0048" before
        "part 2: 213" was written, after which both lines were withheld, too late)."""
        lines = text.split("\n")
        last = len(lines)
        # A chain still open started at most this many lines before the end.
        first = max(1, last - MAX_LINES_BETWEEN * (MAX_PARTS - 1))
        tokens: list[tuple[str, int]] = []
        for line_no in range(first, last + 1):
            tokens += [(m.group().upper(), line_no) for m in _TOKEN.finditer(lines[line_no - 1])]
        for i, (token, line_no) in enumerate(tokens):
            for target in self._started_by(token):
                open_at = _open_from(tokens, i + 1, target, line_no)
                if open_at is not None and last + 1 - open_at <= MAX_LINES_BETWEEN:
                    return line_no
        return None


def _is_label(token: str) -> bool:
    """A word, or a one-digit part number ("part 2:")."""
    return (len(token) == 1 and token.isdigit()) or any(ch.isalpha() for ch in token)


def _spelt_from(tokens: list[tuple[str, int]], start: int, target: str, line_no: int) -> list[int]:
    """The lines of the parts when the tokens from ``start`` spell the rest of ``target`` (its
    first part, on ``line_no``, already read), else an empty list. Reads no further than the
    chain can reach (a few labels and lines), never the rest of the text."""
    lines, alive = _follow(tokens, start, target, line_no)
    return [] if alive else lines


def _open_from(tokens: list[tuple[str, int]], start: int, target: str, line_no: int) -> int | None:
    """The line of the last part read when the tokens run out with the chain from ``start``
    still alive (more tokens could complete it), else None."""
    lines, alive = _follow(tokens, start, target, line_no)
    return lines[-1] if alive else None


def _follow(tokens: list[tuple[str, int]], start: int, target: str, line_no: int) -> tuple[list[int], bool]:
    """(the lines of the parts read, [] for a broken chain; whether the tokens ran out with the
    chain still alive, its parts so far spelling the start of ``target``)."""
    rest = target[len(tokens[start - 1][0]) :]
    most = MAX_DIGIT_PARTS if target.isdigit() else MAX_PARTS
    lines, labels, labelled = [line_no], 0, False
    for index in range(start, len(tokens)):
        if not rest:
            break
        token, at = tokens[index]
        if at - line_no > MAX_LINES_BETWEEN:
            return [], False
        # a part follows a label, or the part before it directly ("HOSP-77", then a label)
        adjacent = labels == 0 and at == line_no  # labels == 0: the token before was a part
        if (labels or adjacent) and len(token) >= MIN_PART_CHARS and rest.startswith(token):
            labelled = labelled or labels > 0
            rest, labels, line_no = rest[len(token) :], 0, at
            lines.append(at)
            if len(lines) > most:
                return [], False
        elif _is_label(token):
            labels += 1
            if labels > MAX_LABELS_BETWEEN:
                return [], False
        else:
            return [], False  # another number: these parts do not make one value
    if rest:
        # Out of tokens before the identifier was spelt: alive if another part may still come.
        alive = len(lines) < most and len(rest) >= MIN_PART_CHARS
        return (lines if alive else []), alive
    # without a label between any two parts it is a joined identifier: the plain search's
    return (lines if labelled else []), False
