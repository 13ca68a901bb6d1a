"""Dates in text, whatever way they are written, normalised to the DICOM form (YYYYMMDD).

A birth or exam date leaves as ``1962-03-15``, ``15.3.1962``, ``3/15/62``, ``15th March
1962``, ``March 15th, 1962``, ``15MAR1962`` (SAS), ``15 mars 1962``... Listing spellings
misses the next one; instead every date-shaped phrase is parsed, each reading it allows
(day-month-year, month-day-year, year-month-day) is normalised, and the result is compared
with the dataset's dates. Month names are those of the languages of the European cancer
imaging data (English, French, German, Spanish, Italian, Dutch, Portuguese), full and short.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterator

_MONTH_NAMES = {
    1: "january jan janvier janv januar jän enero ene gennaio gen januari janeiro",
    2: "february feb fevrier fevr februar febrero febbraio febbr februari fevereiro fev",
    3: "march mar mars marz marzo maart marco",
    4: "april apr avril abril aprile",
    5: "may mai mayo maggio mei maio",
    6: "june jun juin juni junio giugno junho",
    7: "july jul juillet juil juli julio luglio lug julho",
    8: "august aug aout august agosto ago augustus",
    9: "september sep sept septembre septiembre settembre set setembro",
    10: "october oct octobre oktober octubre ottobre ott oktober outubro out",
    11: "november nov novembre noviembre novembro",
    12: "december dec decembre dezember diciembre dic dicembre dezembro dez",
}
MONTHS: dict[str, int] = {name: m for m, names in _MONTH_NAMES.items() for name in names.split()}
_MONTH = "(?P<mon>" + "|".join(sorted(MONTHS, key=len, reverse=True)) + r")\.?"
_DAY = r"(?P<day>[0-3]?\d)(?:st|nd|rd|th|er|e|\.)?"
_SEP = r"[\s,\-/.]*"


class _FoldTable(dict[int, str]):
    """``str.translate`` table folding each character to its unaccented ASCII letter (or
    itself), filled on first use: a per-character Python callback (``re.sub``) cost seconds
    on the decoded forms of a cohort's 50,000 output names."""

    def __missing__(self, code: int) -> str:
        ch = chr(code)
        base = unicodedata.normalize("NFKD", ch)[:1]
        folded = base if base.isascii() and base.isalpha() else ch
        self[code] = folded
        return folded


_FOLD = _FoldTable()


def _fold(text: str) -> str:
    """Lower case without accents (février -> fevrier), one character for one (offsets hold)."""
    lower = text.lower()
    if len(lower) != len(text):
        lower = "".join(ch.lower()[:1] for ch in text)
    return lower if lower.isascii() else lower.translate(_FOLD)


def _valid(y: int, m: int, d: int) -> str | None:
    if 1800 <= y <= 2199 and 1 <= m <= 12 and 1 <= d <= 31:
        return f"{y:04d}{m:02d}{d:02d}"
    return None


_BEFORE_NUMERIC = re.compile(r"(?<![\d.])(\d{1,2})([-/. ])(\d{1,2})\2$")
_AFTER_NUMERIC = re.compile(r"([-/. ])(\d{1,2})\1(\d{1,2})(?!\d)")
_BEFORE_WORDED = [
    re.compile(rf"(?<![a-z0-9]){_DAY}(?:{_SEP}of)?{_SEP}{_MONTH}{_SEP}'?$"),
    re.compile(rf"(?<![a-z0-9]){_MONTH}{_SEP}{_DAY}{_SEP}'?$"),
]
_AFTER_WORDED = re.compile(rf"{_SEP}{_MONTH}{_SEP}{_DAY}(?![0-9])")
_REACH = 40
_LETTERS = re.compile(r"[a-z]+")


def _after(m: re.Match[str], year: int) -> str | None:
    """The date a year-first match reads as: 1962-03-15, 1962/3/15, 19620315, 1962 March 15,
    and EXIF's 1962:03:15 (leaks15: a JPEG's DateTimeOriginal held the scan's date)."""
    if m.group("m1"):
        return _valid(year, int(m.group("m1")), int(m.group("d1")))
    if m.group("m2"):
        return _valid(year, int(m.group("m2")), int(m.group("d2")))
    return None


def _before(folded: str, off: int, year: int) -> Iterator[str]:
    """The dates a year is the end of: 15/3/1962, 3-15-1962, 15031962, 15th of March 1962."""
    before = folded[max(0, off - _REACH) : off]
    m = _BEFORE_NUMERIC.search(before[-9:])
    if m:
        a, b = int(m.group(1)), int(m.group(3))
        yield from filter(None, (_valid(year, b, a), _valid(year, a, b)))
    head = before[-4:]
    if len(head) == 4 and head.isdigit() and not before[-5:-4].isdigit():
        yield from filter(
            None, (_valid(year, int(head[2:]), int(head[:2])), _valid(year, int(head[:2]), int(head[2:])))
        )
    # The month-name patterns are costly: only where a month name is near.
    if any(w in MONTHS for w in _LETTERS.findall(before[-24:])):
        for rx in _BEFORE_WORDED:
            found = rx.search(before)
            if found:
                value = _valid(year, MONTHS[found.group("mon")], int(found.group("day")))
                if value:
                    yield value


def _year_pattern(year: str) -> re.Pattern[str]:
    """The year as a literal (so the regex engine finds it at memory speed), then what may follow."""
    return re.compile(
        re.escape(year)
        + r"(?:(?P<s>[-/.: ])(?P<m1>\d{1,2})(?P=s)(?P<d1>\d{1,2})(?!\d)|(?P<m2>[01]\d)(?P<d2>[0-3]\d)(?!\d)"
        + rf"|(?={_SEP}{_MONTH}{_SEP}{_DAY}(?![0-9]))(?P<w>))?(?!\d)"
    )


@functools.lru_cache(maxsize=4096)
def _short_year_forms(target: str) -> frozenset[str]:
    """The two-digit-year spellings of one date (15/3/62, 3-15-62, 15MAR62, 15-mar-62...).

    Cached: a log screen's set-up asks for every dataset date's forms once per identifier it
    screens, so building them anew each time made that set-up quadratic in the dataset."""
    y, m, d = target[2:4], int(target[4:6]), int(target[6:])
    days, months = {str(d), f"{d:02d}"}, {str(m), f"{m:02d}"}
    out = {
        f"{a}{sep}{b}{sep}{y}"
        for sep in "-/."
        for dd in days
        for mm in months
        for a, b in ((dd, mm), (mm, dd))
    }
    names = [n for n, k in MONTHS.items() if k == m and len(n) == 3]
    out |= {f"{dd}{sep}{n}{sep}{y}" for dd in days for n in names for sep in ("", "-", " ")}
    return frozenset(out)


def find_dates(text: str, targets: set[str]) -> Iterator[tuple[str, int]]:
    """(YYYYMMDD, offset) for each date-shaped phrase of ``text`` that reads as one of
    ``targets`` (YYYYMMDD) in any of the readings it allows.

    Only the dataset's dates matter, and every four-digit-year form contains the year: its
    occurrences are found with ``str.find`` (memory speed) and read from their neighbours;
    two-digit-year forms are searched as the few strings they can be.
    """
    if not targets:
        return
    folded = _fold(text)
    for year in {t[:4] for t in targets}:
        number = int(year)
        for m in _year_pattern(year).finditer(folded):
            off = m.start()
            if off and folded[off - 1].isdigit() and not folded[max(0, off - 4) : off].isdigit():
                continue  # the end of a longer number
            readings: set[str] = set()
            after = _after(m, number)
            if after:
                readings.add(after)
            if m.group("w") is not None:
                worded = _AFTER_WORDED.match(folded, m.start() + 4)
                if worded:
                    readings.add(_valid(number, MONTHS[worded.group("mon")], int(worded.group("day"))) or "")
            if off and not folded[off - 1].isspace() or off > 1 and folded[off - 1] == " ":
                readings.update(_before(folded, off, number))
            for value in readings & targets:
                yield value, off
    for target in targets:
        yy = target[2:4]
        if yy not in folded:
            continue  # every two-digit-year form ends with the year's two digits
        tails = {t for t in (f"-{yy}", f"/{yy}", f".{yy}", f" {yy}") if t in folded}
        for form in _short_year_forms(target):
            if not any(form.endswith(t) for t in tails) and not form[-3:-2].isalpha():
                continue  # its ending is nowhere in the text
            start = 0
            while True:
                off = folded.find(form, start)
                if off < 0:
                    break
                start = off + 1
                end = off + len(form)
                if (off == 0 or not folded[off - 1].isalnum()) and (
                    end >= len(folded) or not folded[end].isalnum()
                ):
                    yield target, off
    yield from find_numeric_dates(text, targets)


# Dates as a computer keeps them (leaks11): seconds or milliseconds since 1970-01-01 UTC
# (a Unix timestamp, pandas' `to_json`), and days since Excel's epoch (1900 system: 1899-12-30;
# 1904 system) or MATLAB's `datenum`. A timestamp anywhere in the target day matches.
# a serial day is only a date where the line (or the table's header) says so: 5-digit
# numbers are everywhere (voxel counts, parameter counts)
_DATE_WORD = re.compile(
    r"date|dob|birth|born|(?<![a-z])dt(?![a-z])|_dt\b|day|when|serial|excel|datenum|time|scan|study|visit|"
    r"admi|diagnos|acqui|exam|dod|death",
    re.IGNORECASE,
)
_DAY_SECONDS = 86_400
_EXCEL_1900 = 25_569  # 1970-01-01 as an Excel 1900-system serial
# A serial day of fewer digits is no date, even after a date word: Excel's serials below it are
# days before 1927-05-18, and the placeholder birth date of de-identified archives, 1900-01-01,
# is Excel's serial 2, so with it every "day 2" or "time 3" of a log was withheld as a date.
MIN_SERIAL_DAY = 10_000
_EXCEL_1904 = 24_107
_DATENUM = 719_529  # 1970-01-01 as a MATLAB datenum


def _epoch_day(target: str) -> int:
    import datetime as dt

    day = dt.date(int(target[:4]), int(target[4:6]), int(target[6:]))
    return (day - dt.date(1970, 1, 1)).days


def _prefix(value: int, tail: int) -> str:
    """The digits of ``value`` as written, without its last ``tail`` digits (sign kept)."""
    digits = str(abs(value))
    return ("-" if value < 0 else "") + digits[:-tail]


_AFTER_PREFIX = re.compile(r"(\d{5}|\d{8})(?:\.\d+)?(?![\w.])")
_SERIAL_END = re.compile(r"(?:\.\d+)?(?![\w\-]|\.\d*[a-z_])", re.IGNORECASE)
MAX_OCCURRENCES = 10_000  # of one literal in one text: bounds the cost of a pathological text


@functools.lru_cache(maxsize=64)
def _numeric_forms(targets: frozenset[str]) -> tuple[dict[int, str], tuple[str, ...], dict[int, str]]:
    """For the target dates: their days since 1970, the literal prefixes of their timestamps
    and their serial days (built once per set of dates).

    A day's seconds share their digits but the last five (milliseconds: eight), so each day's
    timestamps start with one or two literal prefixes; they and the serial days are found
    with ``str.find`` (memory speed) and only their occurrences are read, so a log full of
    other timestamps costs no loop per number (the disguise search runs the matcher on a
    dozen forms of one text)."""
    days: dict[int, str] = {}
    for target in targets:
        try:
            days[_epoch_day(target)] = target
        except ValueError:
            continue
    seconds = {_prefix(v, 5) for d in days for v in (d * _DAY_SECONDS, (d + 1) * _DAY_SECONDS - 1)}
    millis = {
        _prefix(v, 8) for d in days for v in (d * _DAY_SECONDS * 1000, (d + 1) * _DAY_SECONDS * 1000 - 1)
    }
    serials = {d + _EXCEL_1900: t for d, t in days.items()}
    serials |= {d + _EXCEL_1904: t for d, t in days.items()}
    serials |= {d + _DATENUM: t for d, t in days.items()}
    serials = {v: t for v, t in serials.items() if v >= MIN_SERIAL_DAY}
    return days, tuple(sorted(seconds | millis)), serials


def _occurrences(text: str, literal: str) -> Iterator[int]:
    """Offsets of ``literal`` in ``text`` that start a number (not inside a word, a decimal
    or a longer or negative number)."""
    start, seen = 0, 0
    while seen < MAX_OCCURRENCES:
        k = text.find(literal, start)
        if k < 0:
            return
        start, seen = k + 1, seen + 1
        before = text[k - 1] if k else " "
        if before.isalnum() or before in "_." or (before == "-" and not literal.startswith("-")):
            continue
        yield k


def find_numeric_dates(text: str, targets: set[str]) -> Iterator[tuple[str, int]]:
    """(YYYYMMDD, offset) for each Unix timestamp (seconds or milliseconds, any time of the
    day), and each Excel or MATLAB serial day, that reads as one of ``targets``.

    A timestamp of at least 10^8 seconds from 1970 is a date anywhere; nearer 1970 (March
    1966 to March 1973, 7 to 9 digits, as common as any count) and a serial day are dates
    only in a date-named column of a table or after a date word on their line (leaks12: a
    birth date in 1969 as ``dob,-14256000`` passed)."""
    days, prefixes, serials = _numeric_forms(frozenset(targets))
    if not days:
        return
    dated = _DatedContext(text)
    for literal in prefixes:
        if literal in ("", "-"):
            continue  # the first day or two of 1970: too few digits to tell from any number
        for k in _occurrences(text, literal):
            m = _AFTER_PREFIX.match(text, k + len(literal))
            if m is None:
                continue
            value = int(literal + m.group(1))
            day = value // _DAY_SECONDS if len(m.group(1)) == 5 else value // (_DAY_SECONDS * 1000)
            if day not in days:
                continue
            if len(m.group(1)) == 8 or abs(value) >= 10**8 or dated(k):
                yield days[day], k
    found = [(k, v) for v in serials for k in _occurrences(text, str(v))]
    for k, v in sorted(found):
        if _SERIAL_END.match(text, k + len(str(v))) and dated(k):
            yield serials[v], k


class _DatedContext:
    """Whether the number at an offset is in a date-named column of the text's table (its
    first line read as a header) or follows a date word on its line: a number that is a date
    only where the text says so."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.columns: set[int] | None = None
        self.delimiter = ","

    def _header(self) -> set[int]:
        first_line = (self.text[: self.text.find("\n")] if "\n" in self.text else self.text)[:4096]
        self.delimiter = max(",;\t|", key=first_line.count)
        if not first_line.count(self.delimiter):
            return set()
        return {i for i, name in enumerate(first_line.split(self.delimiter)) if _DATE_WORD.search(name)}

    def __call__(self, k: int) -> bool:
        if self.columns is None:
            self.columns = self._header()
        start = self.text.rfind("\n", 0, k) + 1
        # in a table, the cell's column must name a date (a voxel count beside a scan date is
        # no date); elsewhere a date word must come before it on its line
        in_dated_column = self.text.count(self.delimiter, start, k) in self.columns
        return in_dated_column or _DATE_WORD.search(self.text, start, k) is not None
