"""Dates in text, whatever way they are written, normalised to the DICOM form (YYYYMMDD).

A birth or exam date leaves as ``1962-03-15``, ``15.3.1962``, ``3/15/62``, ``15th March
1962``, ``March 15th, 1962``, ``15MAR1962`` (SAS), ``15 mars 1962``... Listing spellings
misses the next one; instead every date-shaped phrase is parsed, each reading it allows
(day-month-year, month-day-year, year-month-day) is normalised, and the result is compared
with the dataset's dates. Month names are those of the languages of the European cancer
imaging data (English, French, German, Spanish, Italian, Dutch, Portuguese), full and short.
"""

from __future__ import annotations

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
_YEAR = r"(?P<year>\d{4}|'?\d{2})"
_SEP = r"[\s,\-/.]*"
_NUMERIC = re.compile(r"(?<![\d.])(\d{1,4})([-/. ])(\d{1,2})\2(\d{1,4})(?![\d])")
_COMPACT = re.compile(r"(?<!\d)(\d{8})(?!\d)")
_WORDED = [
    re.compile(rf"(?<![a-z0-9]){_DAY}(?:{_SEP}of)?{_SEP}{_MONTH}{_SEP}{_YEAR}(?![0-9])"),
    re.compile(rf"(?<![a-z0-9]){_MONTH}{_SEP}{_DAY}{_SEP}{_YEAR}(?![0-9])"),
    re.compile(rf"(?<![a-z0-9]){_YEAR}{_SEP}{_MONTH}{_SEP}{_DAY}(?![0-9])"),
]


_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def _fold_char(m: re.Match[str]) -> str:
    base = unicodedata.normalize("NFKD", m.group(0))[:1]
    return base if base.isascii() and base.isalpha() else m.group(0)


def _fold(text: str) -> str:
    """Lower case without accents (février -> fevrier), one character for one (offsets hold)."""
    lower = text.lower()
    if len(lower) != len(text):
        lower = "".join(ch.lower()[:1] for ch in text)
    return lower if lower.isascii() else _NON_ASCII.sub(_fold_char, lower)


def _years(raw: str) -> list[int]:
    raw = raw.lstrip("'")
    if len(raw) == 4:
        return [int(raw)]
    if len(raw) == 2:
        return [1900 + int(raw), 2000 + int(raw)]
    return []


def _valid(y: int, m: int, d: int) -> str | None:
    if 1800 <= y <= 2199 and 1 <= m <= 12 and 1 <= d <= 31:
        return f"{y:04d}{m:02d}{d:02d}"
    return None


def _readings(a: str, b: str, c: str) -> set[str]:
    """Every YYYYMMDD a numeric date a-b-c can mean."""
    out: set[str] = set()
    if len(a) == 4:
        out.add(_valid(int(a), int(b), int(c)) or "")
    else:
        for y in _years(c):
            out.add(_valid(y, int(b), int(a)) or "")  # day-month-year
            out.add(_valid(y, int(a), int(b)) or "")  # month-day-year
    out.discard("")
    return out


WINDOW = 48
MAX_WINDOWS = 20000


def _windows(folded: str, years: set[str]) -> list[tuple[int, int]]:
    """Stretches around each occurrence of a wanted 4-digit year (merged when they overlap).

    Only dates equal to the dataset's matter, and every 4-digit-year form contains the year:
    ``str.find`` locates those at memory speed, and the parsers run on the stretches only.
    """
    spans: list[tuple[int, int]] = []
    for year in years:
        start = 0
        while len(spans) < MAX_WINDOWS:
            off = folded.find(year, start)
            if off < 0:
                break
            spans.append((max(0, off - WINDOW), off + len(year) + WINDOW))
            start = off + 1
    spans.sort()
    merged: list[tuple[int, int]] = []
    for a, b in spans:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def _short_year_forms(target: str) -> set[str]:
    """The two-digit-year spellings of one date (15/3/62, 3-15-62, 15MAR62, 15-mar-62...)."""
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
    return out


def find_dates(text: str, targets: set[str]) -> Iterator[tuple[str, int]]:
    """(YYYYMMDD, offset) for each date-shaped phrase of ``text`` that reads as one of
    ``targets`` (YYYYMMDD) in any of the readings it allows."""
    if not targets:
        return
    folded = _fold(text)
    for a, b in _windows(folded, {t[:4] for t in targets}):
        chunk = folded[a:b]
        for value, off in _parse(chunk):
            if value in targets:
                yield value, a + off
    for target in targets:
        yy = target[2:4]
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


def _parse(folded: str) -> Iterator[tuple[str, int]]:
    """Every reading of every date-shaped phrase (four-digit years) in a short stretch."""
    for m in _NUMERIC.finditer(folded):
        a, _, b, c = m.groups()
        if len(a) in (1, 2, 4) and len(c) in (2, 4) and not (len(a) == 4 and len(c) == 4):
            for value in _readings(a, b, c):
                yield value, m.start()
    for m in _COMPACT.finditer(folded):
        digits = m.group(1)
        for compact in (
            _valid(int(digits[:4]), int(digits[4:6]), int(digits[6:])),
            _valid(int(digits[4:]), int(digits[2:4]), int(digits[:2])),  # DDMMYYYY
            _valid(int(digits[4:]), int(digits[:2]), int(digits[2:4])),  # MMDDYYYY
        ):
            if compact:
                yield compact, m.start()
    for rx in _WORDED:
        for m in rx.finditer(folded):
            month = MONTHS[m.group("mon")]
            for year in _years(m.group("year")):
                worded = _valid(year, month, int(m.group("day")))
                if worded:
                    yield worded, m.start()
