"""Counts a table discloses without a count cell showing them (leaks10).

The threshold rule reads the cells of count-named columns. A table can give a small count away
in other shapes, which a data access committee expects an automatic check to see:

* a count written with its percentage or as a fraction in one cell (``3 (2.5%)``, ``3/120``),
  the usual form of a clinical "Table 1";
* a percentage beside its denominator (``2.5`` percent of ``120``: the count is 3);
* a suppressed cell (``<10``, ``*``) that the table's own total row or total column gives
  back by subtraction (differencing within one table);
* a table written with its rows as columns (``group,lung,liver`` / ``n,3,45``): the row
  labelled ``n`` is a count column turned sideways; likewise a two-column list of names and
  values (``metric,value`` / ``n_relapsed,3``), with or without a header.

A crosstab's total column that is the sum of its other columns is a margin, a count
(`with_margins`), not a magnitude whose contributors are missing.

Each finding is a threshold finding (``sdc:threshold`` or ``sdc:differencing``), with the row
and column for the requester and the cell's text for the reviewers only, as for any table.
"""

from __future__ import annotations

import re

from egress_review.checks.model import CheckResult, action_outcome
from egress_review.checks.tables import (
    _GENERIC_VALUE,
    _INT,
    MAX_CELLS_REPORTED,
    Table,
    _cell,
    _label,
    classify,
    header_matches,
)
from tre.plural import agree, count
from tre.policy import SdcRules

_WITH_PERCENT = re.compile(r"^(\d+)\s*\(\s*\d+(?:\.\d+)?\s*%\s*\)$")
_FRACTION = re.compile(r"^(\d+)\s*/\s*(\d+)(?:\s*\(\s*\d+(?:\.\d+)?\s*%\s*\))?$")
# a suppressed cell's marks: "<10", "*", and (leaks15) the UK statistics code of practice's
# bracketed "[c]" (confidential), "[x]", "[low]", and "n<10"; each passed as a plain text cell
_SUPPRESSED = re.compile(
    r"^(?:n?\s*[<≤]=?\s*\d+|\*{1,3}|x|c|suppressed|redacted|masked|n/?p"
    r"|\[\s*(?:c|x|s|low|suppressed|redacted)\s*\])$",
    re.IGNORECASE,
)
_TOTAL = re.compile(r"^(?:grand\s+)?(?:total|totals|all|overall|sum|all\s+\w+)$", re.IGNORECASE)
_NUMBER = re.compile(r"^[+-]?\d+(?:\.\d+)?$")
_DATED = re.compile(r"date|time|dob|birth|month|period|when|day", re.IGNORECASE)
MAX_TRANSPOSED_ROWS = 50


def _not_a_count(name: str, rules: SdcRules) -> bool:
    return any(
        header_matches(name, globs)
        for globs in (rules.measurement_columns, rules.category_columns, rules.parameter_columns)
    )


def derived_counts(table: Table, rules: SdcRules) -> list[CheckResult]:
    """Small counts that follow from cells (percent forms, fractions, percent x denominator,
    a suppressed cell and the total row or column)."""
    below = _in_cells(table, rules) + _from_percentages(table, rules)
    out: list[CheckResult] = []
    if below:
        first = below[0]
        out.append(
            CheckResult(
                check="sdc:threshold",
                outcome=action_outcome(rules.threshold_action),
                reason=f"{count(len(below), 'count')} {agree(len(below), 'follows', 'follow')} "
                f"from the table's cells (a count with its percentage, "
                f"a fraction, or a percentage with its denominator) and "
                f"{agree(len(below), 'is', 'are')} below the threshold of "
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
                reason=f"{count(len(recovered), 'suppressed cell')} can be recovered, alone or together, by "
                f"subtracting the other cells from the table's total row or column, and "
                f"{agree(len(recovered), 'is', 'are')} below the "
                f"threshold of "
                f"{rules.threshold} "
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
                if _DATED.search(name):
                    continue  # "3/12" in a date column is March 2012, not 3 of 12
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
    """A percentage (or proportion) times its row's denominator: a denominator column
    (``total``, ``n_total``), or else (leaks16) the row's count of people under no particular
    name (``n``, ``patients``: ``site,n,died_pct`` / ``B,52,3.8`` is 2 deaths). Of the latter
    only a share that exactly one whole count fits at its stated precision is a count, and a
    share of a metric (``sensitivity_pct``) is none."""
    scale = {i: 100.0 for i, h in enumerate(table.header) if header_matches(h, rules.percent_columns)}
    scale.update({i: 1.0 for i, h in enumerate(table.header) if header_matches(h, rules.proportion_columns)})
    percents = list(scale)
    denominators = [
        i
        for i, h in enumerate(table.header)
        if header_matches(h, rules.denominator_columns) and i not in percents
    ]
    found: list[dict[str, object]] = []
    if not denominators:
        return _shares_of_people(table, rules, percents)
    if not percents:
        return found
    for row_no, row in enumerate(table.rows, start=2):
        for p_col in percents:
            for d_col in denominators:
                p, d = _cell(row, p_col).rstrip("%").strip(), _cell(row, d_col)
                if not (_NUMBER.match(p) and _NUMBER.match(d)):
                    continue
                count = float(p) * float(d) / scale[p_col]
                if 0.5 <= count < rules.threshold - 0.5 and (scale[p_col] == 100 or float(p) <= 1):
                    _note(found, table, row_no, p_col, f"{p} of {d}", denominator=table.header[d_col])
    return found


def _shares_of_people(table: Table, rules: SdcRules, percents: list[int]) -> list[dict[str, object]]:
    """Shares (the policy's percent and proportion columns, and ``died_pct``, ``Died (%)``,
    ``died_proportion``: `shares.pct_column`) of the row's count of people (``n``,
    ``patients``) that are a whole count under the threshold. Each share column's cells are
    parsed once (leaks20: an undirected change's were parsed again by the row rule)."""
    from egress_review.checks.shares import is_metric, pct_column, pct_value, undirected_change

    people = [c for c in table.counts if _people(table.header[c])]
    found: list[dict[str, object]] = []
    if not people:
        return found  # before the shares: reading every column's cells as percentages is the cost
    candidates = [
        c
        for c, h in enumerate(table.header)
        if c not in people and (c in percents or pct_column(h) is not None or _all_percent(table, c))
    ]
    for p_col in candidates:
        header = table.header[p_col]
        metric = is_metric(header, table.header)
        if metric and not undirected_change(header):
            continue
        counted = [_whole_counts(pct_value(_cell(row, p_col), header), row, people) for row in table.rows]
        if metric and not _every_row_whole(counted):
            continue
        for row_no, wholes in enumerate(counted, start=2):
            for d_col, whole in wholes or ():
                if 0 < whole < rules.threshold:
                    row = table.rows[row_no - 2]
                    _note(
                        found,
                        table,
                        row_no,
                        p_col,
                        f"{_cell(row, p_col)} of {_cell(row, d_col)}",
                        denominator=table.header[d_col],
                    )
    return found


def _whole_counts(
    parsed: tuple[float, int] | None, row: list[str], people: list[int]
) -> list[tuple[int, float]] | None:
    """(the people column, the whole count) for each of a row's people columns that one whole
    count of gives the row's share; None for a row that states no share."""
    from egress_review.checks.shares import share_count

    if parsed is None:
        return None
    out: list[tuple[int, float]] = []
    for d_col in people:
        d = _cell(row, d_col)
        whole = share_count(parsed[0], parsed[1], float(d)) if _INT.match(d) else None
        if whole is not None:
            out.append((d_col, whole))
    return out


def _every_row_whole(counted: list[list[tuple[int, float]] | None]) -> bool:
    """Whether two or more rows state a value in an undirected change's column and each is a
    whole count's share of its row's people (leaks19): ``volume_change_pct`` by arm is a
    measurement, and a measurement's value fits a whole count of its row's ``n`` by chance in
    one row (about 1 in 30 to a decimal), hardly in every row; a share of people fits in all
    of them. One row cannot be told (leaks20): round 15's benign ``diameter_delta_pct 9.1`` of
    33 fits 3 as the known limit's ``size_change_pct 6.1`` fits 2."""
    stated = [wholes for wholes in counted if wholes is not None]
    return len(stated) >= 2 and all(stated)


def _all_percent(table: Table, col: int) -> bool:
    """A column whose every cell is written as a percentage (``3.8%``, ``6,8%``), whatever its
    name: `shares.all_percent`, the rule a JSON string's share is read by too (leaks18)."""
    from egress_review.checks.shares import all_percent

    return all_percent(_cell(r, col) for r in table.rows)


def _people(header: str) -> bool:
    """A count column that names no one in particular (``n``, ``patients``, ``n_patients``)."""
    from egress_review.checks.released import is_denominator

    return is_denominator(header)


def _count_like(table: Table, rules: SdcRules) -> list[int]:
    """Count columns, and columns of whole numbers (some suppressed) that nothing names as
    something else: a crosstab's cells (``male``, ``female``) and its total column."""
    out = list(table.counts)
    for col, name in enumerate(table.header):
        if col in out or col in table.contributors or _not_a_count(name, rules):
            continue
        cells = [_cell(r, col) for r in table.rows if _cell(r, col)]
        if any(_INT.match(v) for v in cells) and all(_INT.match(v) or _SUPPRESSED.match(v) for v in cells):
            out.append(col)
    return out


def _differencing(table: Table, rules: SdcRules) -> list[dict[str, object]]:
    """Suppressed cells that the table's margins give back (a total row, a total column or
    both): every row and column is an equation (its cells add up to its total), solved one
    unknown at a time until nothing more follows, so two or more suppressed cells that are
    recoverable together are recovered (leaks11: a row's hidden cell, once its column gave it
    back, gave the row's other one). A line whose hidden cells stay unknown but add up to a
    number under the threshold discloses them together (they are a group under the threshold)."""
    found: list[dict[str, object]] = []
    columns = _count_like(table, rules)
    totals = [
        i
        for i, row in enumerate(table.rows)
        if any(
            _TOTAL.match(_cell(row, c)) for c in range(len(table.header)) if not _NUMBER.match(_cell(row, c))
        )
    ]
    body = [i for i in range(len(table.rows)) if i not in totals]
    total_row = totals[0] if len(totals) == 1 else None
    total_cols = [c for c in columns if _TOTAL.match(table.header[c])]
    total_col = total_cols[0] if len(total_cols) == 1 else None
    parts = [c for c in columns if c != total_col]
    if total_row is None and total_col is None:
        return found
    # each cell: a number, None (suppressed: unknown), or absent (text or empty: no equation)
    cells: dict[tuple[int, int], float | None] = {}
    for r in [*body, *([total_row] if total_row is not None else [])]:
        for c in [*parts, *([total_col] if total_col is not None else [])]:
            raw = _cell(table.rows[r], c)
            if _NUMBER.match(raw):
                cells[(r, c)] = float(raw)
            elif _SUPPRESSED.match(raw):
                cells[(r, c)] = None
    equations: list[tuple[list[tuple[int, int]], tuple[int, int]]] = []
    if total_col is not None:
        equations += [([(r, c) for c in parts], (r, total_col)) for r in body]
        if total_row is not None:
            equations.append(([(total_row, c) for c in parts], (total_row, total_col)))
    if total_row is not None:
        cols = [*parts, *([total_col] if total_col is not None else [])]
        equations += [([(r, c) for r in body], (total_row, c)) for c in cols]
    equations = [(terms, total) for terms, total in equations if all(k in cells for k in (*terms, total))]
    hidden = {k for k, v in cells.items() if v is None}
    solved: dict[tuple[int, int], float] = {}

    def known(key: tuple[int, int]) -> float | None:
        return solved[key] if key in solved else cells[key]

    for _ in range(len(hidden) + 1):
        progress = False
        for terms, total in equations:
            unknown = [k for k in (*terms, total) if known(k) is None]
            if len(unknown) != 1:
                continue
            others = sum(known(k) or 0.0 for k in terms if k != unknown[0])
            solved[unknown[0]] = others if unknown[0] == total else (known(total) or 0.0) - others
            progress = True
        if not progress:
            break
    for (r, c), got in sorted(solved.items()):
        if 0.5 <= got < rules.threshold - 0.5:
            _note(found, table, r + 2, c, _cell(table.rows[r], c), recovered=True)
    for terms, total in equations:
        unknown = [k for k in terms if known(k) is None]
        total_value = known(total)
        if len(unknown) < 2 or total_value is None:
            continue
        together = total_value - sum(known(k) or 0.0 for k in terms if k not in unknown)
        if 0.5 <= together < rules.threshold - 0.5:
            r, c = unknown[0]
            _note(found, table, r + 2, c, _cell(table.rows[r], c), together=len(unknown))
    return found


def transposed(table: Table, rules: SdcRules) -> Table | None:
    """The table with rows as columns, when a row is labelled as a count (``n``,
    ``patients``) and no column is: a count table written sideways, or a two-column list of
    names and values (``metric,value`` / ``n_relapsed,3``, or with no header at all). A long
    table (three or more columns, one of them ``value``: one row per cell) is not sideways:
    its first column's labels (``relapsed``) head no column of counts (leaks16)."""
    head, body = table.header, table.rows
    if len(head) >= 3 and any(_GENERIC_VALUE.match(h) for h in head):
        return None
    headerless = len(head) == 2 and bool(_NUMBER.match(head[1])) and not _NUMBER.match(head[0])
    if headerless:
        head, body = ["label", "value"], [head, *body]
    elif table.counts:
        return None
    if not 1 <= len(body) < MAX_TRANSPOSED_ROWS or len(head) < 2:
        return None
    labels = [_cell(row, 0) for row in body]
    if not any(
        header_matches(label, rules.count_columns) and not header_matches(label, rules.parameter_columns)
        for label in labels
    ):
        return None
    rows = [[head[0] or "label", *labels]]
    rows += [[head[j], *(_cell(row, j) for row in body)] for j in range(1, len(head))]
    return classify(rows, rules)


def with_margins(table: Table, rules: SdcRules) -> Table:
    """A crosstab's total column is a count, not a magnitude: when a magnitude-named column
    (``total``) equals, in every row it can be checked, the sum of two or more other columns
    of whole numbers, it is the table's margin and gets the count rules; the flag that ACRO's
    dominance rules could not run on it (there are no contributors to a head count) goes."""
    if not table.magnitudes:
        return table
    parts = [c for c in _count_like(table, rules) if c not in table.magnitudes]
    if len(parts) < 2:
        return table
    margins = []
    for col in table.magnitudes:
        checked = 0
        for row in table.rows:
            cells = [_cell(row, c) for c in (col, *parts)]
            if not all(_INT.match(v) for v in cells):
                continue  # a suppressed or empty cell: this row says nothing either way
            if int(cells[0]) != sum(int(v) for v in cells[1:]):
                break
            checked += 1
        else:
            if checked:
                margins.append(col)
    if not margins:
        return table
    return Table(
        table.header,
        table.rows,
        sorted([*table.counts, *margins]),
        [c for c in table.magnitudes if c not in margins],
        table.contributors,
        table.measured,
    )
