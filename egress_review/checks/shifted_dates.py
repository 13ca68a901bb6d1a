"""Dates shifted by a stated constant (airlock round 18): "All dates shifted by +30 days".

Shifting every date of a patient by one offset is a common de-identification step, and it
keeps the intervals a study needs; the offset itself must stay inside. An output that states
the offset beside a shifted date gives the real date back by one subtraction: the scan of
2004-01-19 written as 2004-02-18 under "dates shifted by +30 days" (or a ``date_shift_days``
column of 30). Where a text states such an offset (in a sentence: "shifted by -14 days",
"date offset 30 d", "shifted by 4 weeks"; as a named value: ``date_shift_days: 30``; or a
table column named for a shift or offset in days or weeks), the dataset's dates moved by that
many days either way are searched in the text like any date (`checks.dates.find_dates`). An
offset the output does not state is the de-identification working as meant: not guessed.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable

from egress_review.checks.dates import find_dates
from egress_review.checks.identifiers import matcher_for
from egress_review.checks.model import CheckContext, CheckResult, action_outcome
from tre.plural import count
from tre.policy import Policy

MAX_SHIFT_DAYS = 3660  # ten years: a larger "shift" is no date offset
MAX_SHIFTS = 50  # distinct offsets read per file
_LITERALS = ("shift", "offset")
_SIGN = r"[+\-\u2212]?"
# "shifted by +30 days", "date offset of -14 d", "offset: 30 days"
_PROSE = re.compile(
    r"(?:shift|offset)[a-z]*\b[^\n\d]{0,24}?(?P<k>" + _SIGN + r"\d{1,4})[ \t]*(?P<u>days?|d|weeks?|wks?|w)\b",
    re.IGNORECASE,
)
# ``date_shift_days: 30``, ``"shift_days": -14``, ``offset_days=30``
_NAMED = re.compile(
    r"(?:shift|offset)[\w -]{0,20}?(?P<u>days?|weeks?)[\"']?[ \t]*[:=][ \t]*[\"']?(?P<k>"
    + _SIGN
    + r"\d{1,4})(?![\d.])",
    re.IGNORECASE,
)
_WORDS = re.compile(r"[a-z]+")


def stated_shifts(text: str, rows: list[list[str]] | None = None) -> set[int]:
    """The offsets in days ``text`` states (a sentence or a named value) or a table's shift
    column holds (``rows``: the header and rows)."""
    lower = text[: 2 * 1024 * 1024].lower()
    if not any(w in lower for w in _LITERALS):
        return set()
    found = {
        _days(m.group("k")) * (7 if m.group("u").startswith("w") else 1)
        for rx in (_PROSE, _NAMED)
        for m in rx.finditer(lower)
    }
    if rows:
        found.update(_column_shifts(rows))
    return {k for k in found if 0 < abs(k) <= MAX_SHIFT_DAYS}


def _column_shifts(rows: list[list[str]]) -> Iterable[int]:
    """The cells of each column named for a shift or an offset in days or weeks
    (``date_shift_days``), in days."""
    header = rows[0]
    columns: dict[int, int] = {}
    for c, name in enumerate(header):
        words = set(_WORDS.findall(name.lower()))
        if words & {"shift", "offset"} and words & {"day", "days", "week", "weeks"}:
            columns[c] = 7 if words & {"week", "weeks"} else 1
    seen: set[int] = set()
    for row in rows[1:]:
        for c, unit in columns.items():
            if c < len(row) and re.fullmatch(_SIGN + r"\d{1,4}", row[c].strip()):
                seen.add(_days(row[c].strip()) * unit)
        if len(seen) >= MAX_SHIFTS:
            break
    return seen


def _days(value: str) -> int:
    return int(value.replace("\u2212", "-"))


def check_shifted_dates(
    text: str, policy: Policy, context: CheckContext, rows: list[list[str]] | None = None
) -> list[CheckResult]:
    """`dates:shifted`: a dataset date moved by an offset the same text states."""
    shifts = sorted(stated_shifts(text, rows))[:MAX_SHIFTS]
    if not shifts or not context.identifiers:
        return []
    dates = matcher_for(policy, context.identifiers).dates
    targets = {
        moved
        for date in dates
        for k in shifts
        for sign in (1, -1)
        if (moved := _moved(date, sign * k)) and moved not in dates
    }
    hits = sum(1 for _ in find_dates(text, targets))
    if not hits:
        return []
    return [
        CheckResult(
            check="dates:shifted",
            outcome=action_outcome(policy.text.identifier_action),
            reason="a date of the dataset (birth or scan) shifted by an offset the file states "
            f"({count(hits, 'time')}): subtracting the offset gives the real date back; "
            "keep the offset inside",
            evidence={"times": hits, "offsets": len(shifts)},
        )
    ]


def _moved(date: str, days: int) -> str | None:
    """``date`` (YYYYMMDD) moved by ``days``, as YYYYMMDD."""
    try:
        day = datetime.date(int(date[:4]), int(date[4:6]), int(date[6:8])) + datetime.timedelta(days=days)
    except ValueError:
        return None
    return day.strftime("%Y%m%d")
