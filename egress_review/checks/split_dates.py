"""Dates split across table columns (leaks14): ``birth_year,birth_month,birth_day`` rows.

The identifier search reads dates in any written form (`checks.dates`), but a date whose
year, month and day sit in three cells of a row is no written form at all: ``1962,3,15``
between other numbers. A table's columns named for a year, a month and a day with the same
rest of the name (``birth_year``/``birth_month``/``birth_day``, ``scan yyyy``/``scan mm``/
``scan dd``, or bare ``year``/``month``/``day``) are put back together, row by row, as
ISO dates, and that text is searched for the dataset's dates like any other.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from egress_review.checks.dates import MONTHS
from egress_review.checks.identifiers import matcher_for
from egress_review.checks.model import CheckContext, CheckResult, action_outcome
from tre.policy import Policy

_PARTS = {
    "year": ("year", "yr", "yyyy", "yob"),
    "month": ("month", "mon", "mm", "mob"),
    "day": ("day", "dd", "dob_day", "dom"),
}
_WORD = re.compile(r"[a-z]+")
MAX_ROWS = 100_000


def _split_name(header: str) -> tuple[str, str] | None:
    """(part, rest of the name) when ``header`` names a year, month or day: ``birth_year`` ->
    ("year", "birth")."""
    words = _WORD.findall(header.lower())
    for part, names in _PARTS.items():
        for i, word in enumerate(words):
            if word in names:
                return part, " ".join(words[:i] + words[i + 1 :])
    return None


def _number(cell: str, part: str) -> int | None:
    cell = cell.strip()
    if part == "month" and cell.lower().rstrip(".") in MONTHS:
        return MONTHS[cell.lower().rstrip(".")]
    try:
        value = float(cell)
    except ValueError:
        return None
    return int(value) if value.is_integer() else None


def split_dates(rows: list[list[str]]) -> Iterator[str]:
    """ISO dates (``1962-03-15``) that a table's year, month and day columns spell together."""
    if len(rows) < 2:
        return
    groups: dict[str, dict[str, int]] = {}
    for i, name in enumerate(rows[0]):
        split = _split_name(name)
        if split is not None:
            groups.setdefault(split[1], {}).setdefault(split[0], i)
    triples = [(g["year"], g["month"], g["day"]) for g in groups.values() if len(g) == 3]
    for row in rows[1:MAX_ROWS]:
        for y, m, d in triples:
            if max(y, m, d) >= len(row):
                continue
            year, month, day = _number(row[y], "year"), _number(row[m], "month"), _number(row[d], "day")
            if year and month and day and 1800 <= year <= 2200 and 1 <= month <= 12 and 1 <= day <= 31:
                yield f"{year:04d}-{month:02d}-{day:02d}"


def check_split_dates(
    tables: Iterable[list[list[str]]], policy: Policy, context: CheckContext
) -> list[CheckResult]:
    """`dates:split_columns`: a dataset date (birth, scan) spelt by a row's year, month and
    day cells. The reason is fixed words and a row count: nothing of the file is quoted."""
    dates = [d for rows in tables for d in split_dates(rows)]
    if not dates:
        return []  # most tables: no year/month/day columns, so no matcher is built
    matcher = matcher_for(policy, context.identifiers)
    hits = len(matcher.find("\n".join(dates), limit=1000)) if matcher.dates else 0
    if not hits:
        return []
    return [
        CheckResult(
            check="dates:split_columns",
            outcome=action_outcome(policy.text.identifier_action),
            reason="a date of the dataset (birth or scan) written across a table's year, month and day "
            f"columns ({hits} row(s))",
            evidence={"rows": hits},
        )
    ]
