"""Rare combinations of quasi-identifiers in record-level tables (leaks20).

A table of one row per patient with no name in it (``sex,age,site,dice``) still picks people
out: the one 71-year-old man at site B is known to anyone who knows him, and his row's other
cells are then his. Record-level tables pass the frequency rules (they have no count column),
so their rows are grouped by the quasi-identifiers they state (sex or gender, an exact age,
the site, postcode, ethnicity) and a combination fewer rows than the threshold share is
flagged for the reviewers (k-anonymity with k the threshold).

Where an exact age (whole years, or DICOM's ``064Y``) stands beside at least one other of
them; since leaks21 also two of the others of different kinds without an age (``sex,site,
dice``: the one woman at site A is as recognisable, and her Dice is hers; ``site`` and
``site_id`` are one kind, `QUASI_KINDS`). An age band (``60-69``) is the
aggregated form and is no quasi-identifier column here. A table with a count column is a
table of groups: its small cells are the threshold rule's. Since airlock round 18 a "lookup"
table written long (``key,attribute,value``: one row per attribute of a patient) is read as
the one row per patient it spells (`long_form`).
"""

from __future__ import annotations

import re
from collections import Counter

from egress_review.checks.ages import age_name
from egress_review.checks.model import CheckResult
from egress_review.checks.tables import Table, header_matches
from tre.plural import agree, count

# the quasi-identifiers by kind: two columns of one kind (``site`` and ``site_id``) say no
# more together than either alone (leaks21)
QUASI_KINDS = {
    "sex": ("sex", "gender"),
    "place": ("site", "site_id", "centre", "center", "hospital", "institution"),
    "postcode": ("postcode", "post_code", "zip", "zip_code"),
    "ethnicity": ("ethnicity", "race"),
}
QUASI_COLUMNS = tuple(name for names in QUASI_KINDS.values() for name in names)
_WHOLE_YEARS = re.compile(r"^\s*\d{1,3}(?:[.,]\d+)?[yY]?\s*$")  # 64, 64.5, or DICOM's age string 064Y
# Cells that leave an exact-age column exact (red team round 18: one of them hid the column,
# and with it every rare combination): a missing value, and the top or bottom code of an
# otherwise exact column ("90+", ">89", "<18", HIPAA's way of keeping the oldest few apart).
_MISSING = frozenset({"na", "n/a", "nan", "none", "null", "unknown", "missing", "-", ".", "?"})
_TOP_CODED = re.compile(r"^\s*(?:[<>]=?|[≤≥])\s*\d{1,3}\s*$|^\s*\d{1,3}\s*\+\s*$")


def rare_combinations(table: Table, threshold: int) -> list[CheckResult]:
    """`sdc:quasi_identifiers`: rows of a record-level table whose exact age and other
    quasi-identifiers (or two or more of the others, leaks21) fewer than ``threshold`` rows
    share."""
    if table.counts or not table.rows:
        return []
    wide = long_form(table)
    if wide is not None:  # one row per attribute of a patient (airlock round 18)
        table = wide
    ages = [c for c, h in enumerate(table.header) if age_name(h) and _whole_years(table, c)]
    others = [c for c, h in enumerate(table.header) if header_matches(h, QUASI_COLUMNS)]
    kinds = {_kind(table.header[c]) for c in others} | ({"age"} if ages else set())
    if len(kinds) < 2:
        return []
    columns = ages[:1] + others
    combos = Counter(tuple(_cell(row, c) for c in columns) for row in table.rows)
    rare = sum(n for n in combos.values() if n < threshold)
    if not rare:
        return []
    names = ", ".join(table.header[c] for c in columns)
    return [
        CheckResult(
            check="sdc:quasi_identifiers",
            outcome="flag",
            reason=f"{count(rare, 'row')} of a record-level table {agree(rare, 'has', 'have')} a "
            f"combination of {names} that fewer "
            f"than {threshold} rows share: a person who has it is recognisable (band the ages, "
            "merge small sites, or release counts)",
            evidence={"rows": rare, "columns": [table.header[c] for c in columns]},
        )
    ]


def long_form(table: Table) -> Table | None:
    """A "lookup" table of one row per attribute of a patient (``key,attribute,value``:
    ``case01,age,71``, ``case01,sex,F``; entity-attribute-value), laid out as one row per
    patient (``age,sex``) when its attribute column names two or more kinds of
    quasi-identifier: the same record-level rows, written long (airlock round 18)."""
    if len(table.header) < 3 or len(table.rows) > MAX_LONG_ROWS:
        return None
    for attr in range(1, len(table.header) - 1):
        names = {_cell(row, attr) for row in table.rows}
        quasi = {n for n in names if age_name(n) or header_matches(n, QUASI_COLUMNS)}
        kinds = {"age" if age_name(n) else _kind(n) for n in quasi}
        if len(kinds) < 2:
            continue
        attrs = sorted(quasi)
        records: dict[str, dict[str, str]] = {}
        for row in table.rows:
            name = _cell(row, attr)
            if name in quasi:
                records.setdefault(_cell(row, 0), {})[name] = _cell(row, attr + 1)
        rows = [[record.get(a, "") for a in attrs] for record in records.values()]
        return Table(attrs, rows, [], [], [])
    return None


MAX_LONG_ROWS = 100_000


def _kind(header: str) -> str:
    return next(kind for kind, names in QUASI_KINDS.items() if header_matches(header, names))


def _whole_years(table: Table, col: int) -> bool:
    """Whether the column states exact ages: every cell one (whole or decimal years), a
    missing value, or a top or bottom code, and at least one an age. A band ("60-69") in it
    makes it the aggregated form."""
    cells = [c for r in table.rows if (c := _cell(r, col)) and c not in _MISSING]
    exact = [c for c in cells if _WHOLE_YEARS.match(c)]
    return bool(exact) and all(_WHOLE_YEARS.match(c) or _TOP_CODED.match(c) for c in cells)


def _cell(row: list[str], col: int) -> str:
    return row[col].strip().lower() if col < len(row) else ""
