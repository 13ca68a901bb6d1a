"""A scan's day and month with no year (airlock round 18): "Scan acquired 19 January".

A day and a month are a date of each year, and a dataset's dates fall in few years: beside a
scan or a study, "19 January" is the scan of 2004-01-19 to anyone who knows the study ran in
2004. As round 17 read a day of the year with no year (`split_dates`), a day with a month
named in words (``19 January``, ``Jan 19th``, ``19-Jan``), and no year after it, is read on a
text line that names a scan, study, exam or visit, and in the cells of a table column whose
name does; each is searched as that day of every year the dataset's dates have. A day and
month in digits (``19/01``) is not read: either order is a date, and counts look the same.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

MAX_TEXT = 2 * 1024 * 1024
MAX_FOUND = 1000
MONTH_WORDS = {
    name: m
    for m, names in enumerate(
        (
            "january jan",
            "february feb",
            "march mar",
            "april apr",
            "may",
            "june jun",
            "july jul",
            "august aug",
            "september sep sept",
            "october oct",
            "november nov",
            "december dec",
        ),
        start=1,
    )
    for name in names.split()
}
# Each month word is found first (one pass, opening on letters), then the day is read in the
# few characters before or after it: an expression opening on the day's digits tried the
# month's alternation after every digit of a line (1.5 CPU-s for a MiB of "1 1 1").
_MONTH = re.compile(r"(?<![a-z])(?:" + "|".join(sorted(MONTH_WORDS, key=len, reverse=True)) + r")(?![a-z])")
_DAY_BEFORE = re.compile(r"(?<![\w.])([0-3]?\d)(?:st|nd|rd|th)?[ \t-]{0,3}(?:of[ \t]{1,3})?$")
# the day after the month, and no year after either ("19 January 2004" is a whole date: the plain
# search's); one run of blanks, then an optional separator with its own (two runs side by side
# split a long run every way)
_DAY_AFTER = re.compile(r"\.?[ \t-]{1,3}([0-3]?\d)(?:st|nd|rd|th)?(?!\w)")
_YEAR_AFTER = re.compile(r"\.?[ \t]{0,3}(?:[,.'/-][ \t]{0,3})?'?\d")
_WINDOW = 12  # characters either side of a month word read for its day
EVENT_WORDS = re.compile(r"scan|acqui|study|studie|exam|imag|series|visit|mri|ct\b|pet\b", re.IGNORECASE)


def _pairs(text: str) -> Iterator[tuple[int, int]]:
    """(month, day) of each day and month in words in ``text`` with no year after them."""
    lower = text.lower()
    for m in _MONTH.finditer(lower):
        month = MONTH_WORDS[m.group(0)]
        before = _DAY_BEFORE.search(lower, max(0, m.start() - _WINDOW), m.start())
        end = m.end()
        if before is None:
            after = _DAY_AFTER.match(lower, end, end + _WINDOW)
            if after is None:
                continue
            day, end = int(after.group(1)), after.end()
        else:
            day = int(before.group(1))
        if 1 <= day <= 31 and not _YEAR_AFTER.match(lower, end, end + _WINDOW):
            yield month, day


def text_day_months(text: str) -> Iterator[tuple[int, int]]:
    """(month, day) of each day-and-month with no year on a line that names an event."""
    found = 0
    for line in text[:MAX_TEXT].split("\n"):
        if found >= MAX_FOUND or not EVENT_WORDS.search(line):
            continue
        for pair in _pairs(line):
            found += 1
            yield pair


def table_day_months(rows: list[list[str]]) -> Iterator[tuple[int, int]]:
    """(month, day) of each cell of a column named for an event that holds a day and month."""
    if len(rows) < 2:
        return
    columns = [c for c, name in enumerate(rows[0]) if EVENT_WORDS.search(name.replace("_", " "))]
    found = 0
    for row in rows[1:]:
        for c in columns:
            if c < len(row) and found < MAX_FOUND:
                for pair in _pairs(row[c]):
                    found += 1
                    yield pair
