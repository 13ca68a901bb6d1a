"""Dates split across table columns (leaks14): ``birth_year,birth_month,birth_day`` rows.

The identifier search reads dates in any written form (`checks.dates`), but a date whose
year, month and day sit in three cells of a row is no written form at all: ``1962,3,15``
between other numbers. A table's columns named for a year, a month and a day with the same
rest of the name (``birth_year``/``birth_month``/``birth_day``, ``scan yyyy``/``scan mm``/
``scan dd``, or bare ``year``/``month``/``day``) are put back together, row by row, as
ISO dates, and that text is searched for the dataset's dates like any other.

Since leaks20 also a year with a day of the year (``scan_year``/``scan_day_of_year``, a
day's date) or with a week of a named event (``scan_year``/``scan_iso_week``: the seven days
of that ISO week are searched, so a dataset date in it is found; a bare ``year``/``week`` is a
calendar's axis of counts by week), in a table's columns or in a JSON object's keys
(``{"study_year": 2004, "study_doy": 19}``), and the ISO forms written in text: a week
``2004-W04`` (``2004W041``) and an ordinal date ``2004-019``; since airlock round 18 also an
ordinal date in words ("day 19 of 2004"), and a day with its month in words and no year
beside a scan ("Scan acquired 19 January": `day_months`).

Since leaks21 a day of the year with no year is read where it is a named event's
(``scan_day_of_year``, ``scan_doy``; in text "doy=19" or "day of year 19" on a line that names
a scan or a study): it is searched as that day of each year the dataset's dates have, so the
scan of 2004-01-19 is found by ``scan_doy 19`` (a day of the year is a month and a day, and the
dataset's years are few). A bare ``doy`` column is a calendar's axis, as a bare week is; a week
with no year is not read (seven days of every year).
"""

from __future__ import annotations

import datetime
import itertools
import re
from collections.abc import Iterable, Iterator
from typing import Any

from egress_review.checks.dates import MONTHS
from egress_review.checks.day_months import EVENT_WORDS, table_day_months, text_day_months
from egress_review.checks.identifiers import matcher_for
from egress_review.checks.model import CheckContext, CheckResult, action_outcome
from tre.plural import count
from tre.policy import Policy

_PARTS = {
    "doy": ("doy", "yday", "ordinal"),
    "week": ("week", "wk", "isoweek", "woy"),
    "year": ("year", "yr", "yyyy", "yob"),
    "month": ("month", "mon", "mm", "mob"),
    "day": ("day", "dd", "dob_day", "dom"),
}
# "day of (the) year", "week of (the) year" are one part each (leaks20)
_OF_YEAR = re.compile(r"(day|week)[\s_-]*of[\s_-]*(?:the[\s_-]*)?year")
_WORD = re.compile(r"[a-z]+")
MAX_ROWS = 100_000
MAX_OBJECTS = 10_000  # JSON objects read as one-row tables
# an ISO week (``2004-W04``, ``2004W041``) or ordinal date (``2004-019``) in text or a file
# name (``km_2004-W04.png``: an underscore is a separator there) (leaks20)
_ISO_FORMS = re.compile(
    r"(?<![0-9A-Za-z.])((?:18|19|20|21)\d\d)(?:-W([0-5]\d)(?:-[1-7])?|W([0-5]\d)[1-7]?|-([0-3]\d\d))"
    r"(?![0-9A-Za-z]|[.-]\d)"
)

# an ordinal date in words: "day 19 of 2004", "day 19 of the year 2004" (airlock round 18;
# "day 19 of 30" is no year's)
_DAY_OF_A_YEAR = re.compile(
    r"\bday[ \t]+(?P<d>\d{1,3})[ \t]+of[ \t]+(?:the[ \t]+year[ \t]+)?(?P<y>(?:18|19|20|21)\d\d)(?![\d.]\d)",
    re.IGNORECASE,
)

# "doy=19", "day of year: 19", "julian day 19" in a text line that names an event (leaks21).
# One run of blanks, then an optional ':' or '=' and its own blanks: two blank runs side by side
# ("[ \t]*[:=]?[ \t]*") split a long run every way, quadratic in it (red team round 18).
_TEXT_DOY = re.compile(
    r"\b(?:doy|yday|day[ _-]?of[ _-]?(?:the[ _-]?)?year|julian[ _-]day|ordinal[ _-]day)[ \t]*(?:[:=][ \t]*)?"
    r"(?P<v>\d{1,3})(?![\d.])",
    re.IGNORECASE,
)
MAX_YEARLESS = 1000  # days of the year searched per file
_DOY_LITERALS = ("doy", "yday", "of year", "of the year", "of_year", "of-year", "julian", "ordinal")


def _split_name(header: str) -> tuple[str, str] | None:
    """(part, rest of the name) when ``header`` names a year, month or day: ``birth_year`` ->
    ("year", "birth")."""
    named = _OF_YEAR.sub(lambda m: "doy" if m.group(1) == "day" else "week", header.lower())
    words = [w for w in _WORD.findall(named) if w != "iso"]  # ``iso_week`` is the ``year``'s week
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


def _name_groups(header: list[str]) -> dict[str, dict[str, int]]:
    """The header's date-part columns by the name they share once the part is taken off
    (``scan_year``, ``scan_month`` -> ``{"scan": {"year": 0, "month": 1}}``), the first
    column of each part: how both the dated and the yearless readers pair columns."""
    groups: dict[str, dict[str, int]] = {}
    for i, name in enumerate(header):
        split = _split_name(name)
        if split is not None:
            groups.setdefault(split[1], {}).setdefault(split[0], i)
    return groups


def split_dates(rows: list[list[str]]) -> Iterator[str]:
    """ISO dates (``1962-03-15``) that a table's year, month and day columns spell together."""
    if len(rows) < 2:
        return
    groups = _name_groups(rows[0])
    triples = [
        (g["year"], g["month"], g["day"]) for g in groups.values() if {"year", "month", "day"} <= g.keys()
    ]
    # a week only of a named event (``scan_year``/``scan_week``): bare ``year``/``week`` is a
    # calendar's axis, of counts by week, and a busy dataset has a scan in most weeks
    days = [
        (g["year"], g[part], part)
        for rest, g in groups.items()
        for part in ("doy", "week")
        if {"year", part} <= g.keys() and (part == "doy" or rest)
    ]
    for row in rows[1:MAX_ROWS]:
        for y, m, d in triples:
            if max(y, m, d) >= len(row):
                continue
            year, month, day = _number(row[y], "year"), _number(row[m], "month"), _number(row[d], "day")
            if year and month and day and 1800 <= year <= 2200 and 1 <= month <= 12 and 1 <= day <= 31:
                yield f"{year:04d}-{month:02d}-{day:02d}"
        for y, c, part in days:
            if max(y, c) < len(row):
                yield from _days(_number(row[y], "year"), _number(row[c], part), part)


def yearless_days(rows: list[list[str]]) -> Iterator[int]:
    """The days of the year a named event's column states with no year column beside it
    (``scan_day_of_year 19``, leaks21)."""
    if len(rows) < 2:
        return
    groups = _name_groups(rows[0])
    columns = [g["doy"] for rest, g in groups.items() if rest and "doy" in g and "year" not in g]
    for row in rows[1:MAX_ROWS]:
        for c in columns:
            if c < len(row) and (value := _number(row[c], "doy")) and 1 <= value <= 366:
                yield value


def text_yearless_days(text: str) -> Iterator[int]:
    """The days of the year a text states beside an event ("scan acquired doy=19", leaks21)."""
    lower = text[: 2 * 1024 * 1024].lower()
    if not any(w in lower for w in _DOY_LITERALS):
        return
    # Line by line, each line searched once for an event (the expression never spans lines):
    # looking each match's line up again cost the line's length per match, hours for a 2 MiB
    # line of "doy=999" (red team round 18).
    for line in lower.split("\n"):
        if not any(w in line for w in _DOY_LITERALS) or not EVENT_WORDS.search(line):
            continue
        for m in _TEXT_DOY.finditer(line):
            if 1 <= int(m.group("v")) <= 366:
                yield int(m.group("v"))


def _days(year: int | None, value: int | None, part: str) -> list[str]:
    """The ISO dates a year's day (``doy``) or ISO week (``week``: its seven days) spells."""
    if not year or not value or not 1800 <= year <= 2200:
        return []
    try:
        if part == "doy":
            first = datetime.date(year, 1, 1) + datetime.timedelta(days=value - 1)
            return [first.isoformat()] if 1 <= value <= 366 and first.year == year else []
        return [datetime.date.fromisocalendar(year, value, d).isoformat() for d in range(1, 8)]
    except ValueError:
        return []  # week 54, day 0


def iso_form_dates(text: str) -> Iterator[str]:
    """The ISO dates an ISO week (its seven days) or ordinal date written in ``text`` spells,
    and an ordinal date in words ("day 19 of 2004", airlock round 18)."""
    for m in _ISO_FORMS.finditer(text):
        week = m.group(2) or m.group(3)
        yield from _days(int(m.group(1)), int(week or m.group(4)), "week" if week else "doy")
    if "of" in text:
        for m in _DAY_OF_A_YEAR.finditer(text):
            yield from _days(int(m.group("y")), int(m.group("d")), "doy")


def object_rows(doc: Any) -> Iterator[list[list[str]]]:
    """Each JSON object with two or more scalar values as a one-row table (its keys, its
    values): a year and a day of the year as two keys of one object are one date (leaks20)."""
    stack, seen = [doc], 0
    while stack and seen < MAX_OBJECTS:
        node = stack.pop()
        if isinstance(node, dict):
            seen += 1
            scalars = {str(k): str(v) for k, v in node.items() if isinstance(v, (int, float, str))}
            if len(scalars) >= 2:
                yield [list(scalars), list(scalars.values())]
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def check_split_dates(
    tables: Iterable[list[list[str]]], policy: Policy, context: CheckContext
) -> list[CheckResult]:
    """`dates:split_columns`: a dataset date (birth, scan) spelt by a row's year, month and
    day cells, or a named event's day of the year with no year (leaks21). The reason is fixed
    words and a row count: nothing of the file is quoted."""
    dates: list[str] = []
    yearless: list[int] = []
    day_months: list[tuple[int, int]] = []
    for rows in tables:
        dates += split_dates(rows)
        yearless += itertools.islice(yearless_days(rows), MAX_YEARLESS)
        day_months += itertools.islice(table_day_months(rows), MAX_YEARLESS)
    found = dates + _in_dataset_years(yearless, policy, context, day_months)
    return _dataset_dates(found, policy, context)


def _in_dataset_years(
    days: list[int], policy: Policy, context: CheckContext, day_months: list[tuple[int, int]] | None = None
) -> list[str]:
    """Each day of the year in ``days``, and each (month, day) in ``day_months`` (airlock
    round 18: "Scan acquired 19 January"), as a date of each year the dataset's dates have."""
    if not (days or day_months) or not context.identifiers:
        return []
    years = sorted({int(d[:4]) for d in matcher_for(policy, context.identifiers).dates})
    out = [date for year in years for day in sorted(set(days)) for date in _days(year, day, "doy")]
    for year in years:
        for month, day in sorted(set(day_months or ())):
            try:
                out.append(datetime.date(year, month, day).isoformat())
            except ValueError:
                continue  # 30 February, 29 February of a common year
    return out


def check_iso_form_dates(text: str, policy: Policy, context: CheckContext) -> list[CheckResult]:
    """`dates:split_columns` for an ISO week or ordinal date in a text that is a dataset
    date's (leaks20): ``2004-W04`` is the week of a scan on 19 January 2004."""
    if not context.identifiers:
        return []
    yearless = list(itertools.islice(text_yearless_days(text), MAX_YEARLESS))
    day_months = list(itertools.islice(text_day_months(text), MAX_YEARLESS))
    return _dataset_dates(
        list(iso_form_dates(text)) + _in_dataset_years(yearless, policy, context, day_months), policy, context
    )


def _dataset_dates(dates: list[str], policy: Policy, context: CheckContext) -> list[CheckResult]:
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
            reason="a date of the dataset (birth or scan) written in parts: a table's year, month and day "
            "columns, a year with a day of the year or a week, an ISO week or ordinal date, or a day of "
            f"the year or a day and month with no year beside a scan ({count(hits, 'time')})",
            evidence={"rows": hits},
        )
    ]
