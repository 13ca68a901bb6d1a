"""Counts a table discloses without a count cell showing them (leaks10).

The threshold rule reads the cells of count-named columns. A table can give a small count away
in other shapes, which a data access committee expects an automatic check to see:

* a count written with its percentage or as a fraction in one cell (``3 (2.5%)``, ``3/120``),
  the usual form of a clinical "Table 1";
* a percentage beside its denominator (``2.5`` percent of ``120``: the count is 3);
* a suppressed cell (``<10``, ``*``) that the table's own total row gives back by subtraction
  (differencing within one table);
* a table written with its rows as columns (``group,lung,liver`` / ``n,3,45``): the row
  labelled ``n`` is a count column turned sideways.

Each finding is a threshold finding (``sdc:threshold`` or ``sdc:differencing``), with the row
and column for the requester and the cell's text for the reviewers only, as for any table.
"""

from __future__ import annotations

import re

from egress_review.checks.model import CheckResult, action_outcome
from egress_review.checks.tables import MAX_CELLS_REPORTED, Table, _cell, _label, _matches, classify
from tre.policy import SdcRules

_WITH_PERCENT = re.compile(r"^(\d+)\s*\(\s*\d+(?:\.\d+)?\s*%\s*\)$")
_FRACTION = re.compile(r"^(\d+)\s*/\s*(\d+)(?:\s*\(\s*\d+(?:\.\d+)?\s*%\s*\))?$")
_SUPPRESSED = re.compile(r"^(?:[<≤]=?\s*\d+|\*{1,3}|x|c|suppressed|redacted|masked|n/?p)$", re.IGNORECASE)
_TOTAL = re.compile(r"^(?:grand\s+)?(?:total|totals|all|overall|sum|all\s+\w+)$", re.IGNORECASE)
_NUMBER = re.compile(r"^[+-]?\d+(?:\.\d+)?$")
MAX_TRANSPOSED_ROWS = 50


def _not_a_count(name: str, rules: SdcRules) -> bool:
    return any(
        _matches(name, globs)
        for globs in (rules.measurement_columns, rules.category_columns, rules.parameter_columns)
    )


def derived_counts(table: Table, rules: SdcRules) -> list[CheckResult]:
    """Small counts that follow from cells (percent forms, fractions, percent x denominator,
    a suppressed cell and the total row)."""
    below = _in_cells(table, rules) + _from_percentages(table, rules)
    out: list[CheckResult] = []
    if below:
        first = below[0]
        out.append(
            CheckResult(
                check="sdc:threshold",
                outcome=action_outcome(rules.threshold_action),
                reason=f"{len(below)} count(s) follow from the table's cells (a count with its percentage, "
                f"a fraction, or a percentage with its denominator) and are below the threshold of "
                f"{rules.threshold} (e.g. row {first['row']}, column {first['column']!r})",
                evidence={"threshold": rules.threshold, "cells": below},
            )
        )
    recovered = _differencing(table, rules)
    if recovered:
        first = recovered[0]
        out.append(
            CheckResult(
                check="sdc:differencing",
                outcome=action_outcome(rules.threshold_action),
                reason=f"{len(recovered)} suppressed cell(s) can be recovered by subtracting the other cells "
                f"from the table's total row, and are below the threshold of {rules.threshold} "
                f"(e.g. row {first['row']}, column {first['column']!r})",
                evidence={"threshold": rules.threshold, "cells": recovered},
            )
        )
    return out


def _note(
    bucket: list[dict[str, object]], table: Table, row_no: int, col: int, value: object, **extra: object
) -> None:
    if len(bucket) < MAX_CELLS_REPORTED:
        row = table.rows[row_no - 2]
        bucket.append(
            {"row": row_no, "column": table.header[col], "value": value, "label": _label(table, row), **extra}
        )


def _in_cells(table: Table, rules: SdcRules) -> list[dict[str, object]]:
    found: list[dict[str, object]] = []
    for col, name in enumerate(table.header):
        if col in table.magnitudes or col in table.contributors or _not_a_count(name, rules):
            continue
        for row_no, row in enumerate(table.rows, start=2):
            raw = _cell(row, col)
            match = _WITH_PERCENT.match(raw)
            if match is None:
                match = _FRACTION.match(raw)
                # a fraction is a count of its denominator (3/120), not a score out of ten (7/10)
                if match is None:
                    continue
                denominator = int(match.group(2))
                if denominator < rules.threshold or denominator < int(match.group(1)):
                    continue
            value = int(match.group(1))
            if 0 < value < rules.threshold:
                _note(found, table, row_no, col, raw)
    return found


def _from_percentages(table: Table, rules: SdcRules) -> list[dict[str, object]]:
    percents = [i for i, h in enumerate(table.header) if _matches(h, rules.percent_columns)]
    denominators = [
        i for i, h in enumerate(table.header) if _matches(h, rules.denominator_columns) and i not in percents
    ]
    found: list[dict[str, object]] = []
    if not percents or not denominators:
        return found
    for row_no, row in enumerate(table.rows, start=2):
        for p_col in percents:
            for d_col in denominators:
                p, d = _cell(row, p_col).rstrip("%").strip(), _cell(row, d_col)
                if not (_NUMBER.match(p) and _NUMBER.match(d)):
                    continue
                count = float(p) * float(d) / 100
                if 0.5 <= count < rules.threshold - 0.5:
                    _note(found, table, row_no, p_col, f"{p}% of {d}", denominator=table.header[d_col])
    return found


def _differencing(table: Table, rules: SdcRules) -> list[dict[str, object]]:
    totals = [
        i
        for i, row in enumerate(table.rows)
        if any(
            _TOTAL.match(_cell(row, c)) for c in range(len(table.header)) if not _NUMBER.match(_cell(row, c))
        )
    ]
    found: list[dict[str, object]] = []
    if len(totals) != 1:
        return found
    (t,) = totals
    for col in table.counts:
        total = _cell(table.rows[t], col)
        if not _NUMBER.match(total):
            continue
        hidden = [i for i, row in enumerate(table.rows) if i != t and _SUPPRESSED.match(_cell(row, col))]
        shown = [_cell(row, col) for i, row in enumerate(table.rows) if i != t and i not in hidden]
        if len(hidden) != 1 or not all(_NUMBER.match(v) for v in shown if v):
            continue
        value = float(total) - sum(float(v) for v in shown if v)
        if 0.5 <= value < rules.threshold - 0.5:
            _note(found, table, hidden[0] + 2, col, _cell(table.rows[hidden[0]], col), recovered=True)
    return found


def transposed(table: Table, rules: SdcRules) -> Table | None:
    """The table with rows as columns, when it has no count column but a row is labelled as one
    (``n``, ``patients``): a count table written sideways."""
    if table.counts or not 2 <= len(table.rows) + 1 <= MAX_TRANSPOSED_ROWS or len(table.header) < 3:
        return None
    labels = [_cell(row, 0) for row in table.rows]
    if not any(
        _matches(label, rules.count_columns) and not _matches(label, rules.parameter_columns)
        for label in labels
    ):
        return None
    rows = [[table.header[0] or "label", *labels]]
    rows += [[table.header[j], *(_cell(row, j) for row in table.rows)] for j in range(1, len(table.header))]
    return classify(rows, rules)
