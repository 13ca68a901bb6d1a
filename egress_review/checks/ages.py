"""Ages over 89 (leaks20): an identifier under HIPAA's Safe Harbor rule.

Few people in a cohort are 90 or older, and an age such as 93 picks one of them out with
anything else known about them. Safe Harbor (45 CFR 164.514(b)(2)(i)(C)) counts "all ages
over 89" among the identifiers and asks that they be aggregated into one category of 90 or
older. So an age over 89 is refused wherever an output states one:

* in a table's column named for an age (``age``, ``age_at_diagnosis``, ``oldest_age``,
  ``age_max``), by its cells (`table_ages`): a label ``90+`` or ``>=90`` is the aggregated
  category and passes;
* in a text (`text_ages`): "94 years old", "aged 93", "at the age of 91", and a named value
  ``oldest_age: 93`` or ``"age": 95`` (JSON, YAML, ``name=value`` lines).

An age's mean or median (``age_mean``), and an age in days, weeks or months (``age_days``: a
newborn's), is no one's age in years: not read. Since leaks21 the words before an age in a
sentence are read as its name too ("the mean age 91", "Mean (SD) age: 91", "average age of
92" are aggregates, no one's age); and an age is also read in DICOM's age string (``091Y``
under ``PatientAge``; ``091M`` is months), in words ("aged ninety-two") and as "93 yo".
Since airlock round 18 also the oldest person's age with its unit ("oldest patient: 96 y").
"""

from __future__ import annotations

import re

from egress_review.checks.model import CheckResult
from egress_review.checks.number_words import words_to_digits
from egress_review.checks.tables import Table
from tre.plural import count

MAX_AGE = 89  # Safe Harbor: an age over 89 is an identifier
_OLDEST = 120  # a larger number in an age column is no age in years
_WORDS = re.compile(r"[a-z]+")
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")  # ``PatientAge`` is two words
_NOT_YEARS = frozenset(
    "mean median avg average sd std stdev iqr var variance days day weeks week months month mo wk hours "
    "gestational bone brain biological predicted group groups band bands range category bin bins".split()
)
# a number of years, or DICOM's age string in years (``091Y``; ``091M`` is months, ``091W`` weeks)
_NUMBER = re.compile(r"^\s*(\d{2,3})(?:\.0+|[ ]?[yY])?\s*$")
_AGE = r"(?P<age>9\d|1[01]\d)"
# "94 years old", "94-year-old": read backwards from each "old" (a pattern that opens on a
# literal is searched for it; one that opens on a digit is tried at every position)
_OLD = re.compile(r"old\b")
# "93 yo", "93 y/o" (leaks21): searched apart, only in a text that says one (an alternation
# with "old" lost its literal start and was tried at every position: 0.5 CPU-s more for 10 MB)
_YO = re.compile(r"y(?:o(?![a-z])|/o|\.o\.)")
_YO_LITERALS = ("yo", "y/o", "y.o.")
_YEARS_OLD = re.compile(r"(?<![\d.])" + _AGE + r"[ \t-]*(?:years?|yrs?|y)[ \t-]*$")
_YO_BEFORE = re.compile(r"(?<![\d.])" + _AGE + r"[ \t-]*$")  # "93 yo", "93 y/o" (leaks21)
# "aged 93", "at the age of 91", "age 95", and a named value ("oldest_age: 93", '"age": 95',
# "age_at_diagnosis = 91"); on the lower-cased text, each match opening on "age"
_AGED = re.compile(
    r"age(?:(?:d|[ \t]+of)?[ \t]+"
    + _AGE
    + r"(?![\d.]|[ \t-]*(?:days?|weeks?|months?)\b|[ \t]+(?:or|and)[ \t]+(?:older|over|above)\b)"
    r"|(?![a-z])(?P<rest>[a-z0-9_ -]{0,30}?)[\"']?[ \t]*[:=][ \t]*[\"']?(?P<named>9\d|1[01]\d)(?![\d.]))"
)
# a key's or a sentence's words before "age": ``oldest_age``, "Mean (SD) age", "the mean age"
# (a sentence's last three words only: "mean-centred; the oldest was aged 93" is an age)
# "oldest patient: 96 y", "the eldest was 93 yrs" (airlock round 18): the oldest person's age,
# with its unit (a number after "oldest" alone may be of anything); "... years old" is `_OLD`'s
_OLDEST_AGE = re.compile(
    r"\b(?:oldest|eldest)\b[^\n\d]{0,30}?(?<![\d.])" + _AGE + r"[ \t-]*(?:years?|yrs?|y)\b(?![ \t-]*old)"
)
_KEY_BEFORE = re.compile(r"[a-z0-9_ ()-]{0,30}$")
_SENTENCE_WORDS = 3


def age_name(name: str) -> bool:
    """Whether a column or key ``name`` is a person's age in years: ``age``, ``oldest_age``,
    ``age_at_diagnosis``; not ``age_mean`` (a statistic), ``age_days`` (another unit) nor
    ``age_group`` (a category)."""
    words = _WORDS.findall(_CAMEL.sub(" ", name).lower())
    return "age" in words and _NOT_YEARS.isdisjoint(words)


def table_ages(table: Table) -> list[CheckResult]:
    """`identifiers:age_over_89` for a table whose age column states an age over 89."""
    rows: list[int] = []
    for col, name in enumerate(table.header):
        if col in table.counts or not age_name(name):
            continue
        rows += [i for i, row in enumerate(table.rows, start=2) if col < len(row) and _over(row[col])]
    return (
        [_result(len(set(rows)), "row of a table's age column", "rows of a table's age column")]
        if rows
        else []
    )


def text_ages(text: str) -> list[CheckResult]:
    """`identifiers:age_over_89` for a text that states an age over 89."""
    lower = text.lower()
    if "ninety" in lower or "hundred" in lower:  # "aged ninety-two": an age over 89 says either
        # only the lines that say one are rewritten: a long log's other lines stay unread
        lower = "\n".join(
            words_to_digits(line) if "ninety" in line or "hundred" in line else line
            for line in lower.split("\n")
        )
    found = sum(
        1 for m in _OLD.finditer(lower) if _YEARS_OLD.search(lower, max(0, m.start() - 16), m.start())
    )
    if any(w in lower for w in _YO_LITERALS):
        found += sum(
            1
            for m in _YO.finditer(lower)
            if m.start()
            and lower[m.start() - 1] in " 0123456789"
            and _YO_BEFORE.search(lower, max(0, m.start() - 16), m.start())
        )
    if "oldest" in lower or "eldest" in lower:
        found += sum(1 for _ in _OLDEST_AGE.finditer(lower))
    found += sum(
        1
        for m in _AGED.finditer(lower)
        if (m.start() == 0 or not lower[m.start() - 1].isalpha())
        and (m.group("age") or m.group("named"))
        and _named_age(lower, m)
    )
    return [_result(found, "time in the text", "times in the text")] if found else []


def _named_age(lower: str, m: re.Match[str]) -> bool:
    """Whether a named value's whole key or an age's words (the words before ``age`` too:
    ``oldest_age``, ``mean_age``, "the median age 91") name an age in years."""
    found = _KEY_BEFORE.search(lower, max(0, m.start() - 30), m.start())
    before = found.group(0) if found else ""
    if m.group("age"):
        before = " ".join(before.split(" ")[-_SENTENCE_WORDS - 1 :])
    return age_name(f"{before}age{m.group('rest') or ''}")


def _over(cell: str) -> bool:
    m = _NUMBER.match(cell)
    return m is not None and MAX_AGE < int(m.group(1)) <= _OLDEST


def _result(times: int, where: str, where_plural: str) -> CheckResult:
    return CheckResult(
        check="identifiers:age_over_89",
        outcome="block",
        reason=f"an age over {MAX_AGE} ({count(times, where, where_plural)}): an identifier under "
        f"HIPAA Safe Harbor; "
        f"aggregate ages over {MAX_AGE} into one category ('90 or older')",
        evidence={"times": times},
    )
