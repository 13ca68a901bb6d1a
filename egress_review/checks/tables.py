"""Statistical disclosure control (SDC) of CSV/TSV tables, with ACRO's rules.

ACRO (AI-SDC/ACRO, the SACRO project) checks tables as the researcher builds them with pandas;
an egress airlock sees only the finished file. So the rules are re-implemented here, with
ACRO's parameters and semantics (see docs/egress-checks.md for why the package is not used):

* threshold: a frequency cell, or a magnitude cell's number of contributors, under
  ``safe_threshold`` (10) is disclosive;
* p-percent: with contributors sorted descending x1 >= x2 >= ..., the cell is disclosive when
  (total - x1 - x2) / x1 < p (0.10): the second largest contributor could estimate the largest
  to within p percent;
* (n, k) dominance: the n (2) largest contributors make up more than k (0.9) of the total;
* zeros and negative magnitudes are reported (ACRO: zeros_are_disclosive, negative values
  make the dominance rules meaningless).

Column roles come from the header: policy globs name count, magnitude and contributor-value
columns. An integer column matching none of them but holding values below the threshold is
flagged, because an unlabelled count is still a count.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import math
import re
from dataclasses import dataclass

from egress_review.checks.model import CheckResult, action_outcome
from tre.policy import Policy, SdcRules

MAX_CELLS_REPORTED = 20
SMALL_COUNT_BASE = 5  # small counts near the threshold should at least be rounded to 5
_INT = re.compile(r"^[+-]?\d+$")
_NUM = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


@dataclass
class Table:
    """A parsed table: header, rows and each column's role."""

    header: list[str]
    rows: list[list[str]]
    counts: list[int]
    magnitudes: list[int]
    contributors: list[int]


def _matches(name: str, patterns: list[str]) -> bool:
    norm = re.sub(r"[\s\-]+", "_", name.strip().lower())
    return any(fnmatch.fnmatchcase(norm, p.lower()) for p in patterns)


def parse_table(text: str, delimiter: str, rules: SdcRules) -> Table:
    """Parse delimited text and classify its columns by header name."""
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    rows = [r for r in reader if any(c.strip() for c in r)]
    header = [h.strip() for h in rows[0]] if rows else []
    body = rows[1:]
    counts, magnitudes, contributors = [], [], []
    for i, name in enumerate(header):
        if _matches(name, rules.contributor_columns):
            contributors.append(i)
        elif _matches(name, rules.count_columns):
            counts.append(i)
        elif _matches(name, rules.magnitude_columns):
            magnitudes.append(i)
    return Table(header, body, counts, magnitudes, contributors)


def _cell(row: list[str], i: int) -> str:
    return row[i].strip() if i < len(row) else ""


def _label(table: Table, row: list[str]) -> str:
    """A cell's row label: the non-numeric values of the row (its categories)."""
    roles = set(table.counts) | set(table.magnitudes) | set(table.contributors)
    keys = [
        _cell(row, i) for i in range(len(table.header)) if i not in roles and not _NUM.match(_cell(row, i))
    ]
    return " / ".join(k for k in keys if k)[:80] or "(unlabelled row)"


def _contributor_values(raw: str) -> list[float] | None:
    parts = [p for p in re.split(r"[;| ]+", raw.strip()) if p]
    try:
        return [float(p) for p in parts]
    except ValueError:
        return None


def _is_row_index(cells: list[str]) -> bool:
    """0..n-1 or 1..n in order: the index pandas writes with ``to_csv``, not data."""
    values = [int(v) for v in cells]
    return (
        len(values) > 1 and values == list(range(values[0], values[0] + len(values))) and values[0] in (0, 1)
    )


def p_percent_fails(values: list[float], p: float) -> bool:
    """ACRO's p-ratio rule: disclosive if (total - x1 - x2) / x1 < p (fewer than 3 contributors fail)."""
    ordered = sorted(values, reverse=True)
    total = sum(ordered)
    if len(ordered) < 3 or total <= 0 or ordered[0] <= 0:
        return True
    return (total - ordered[0] - ordered[1]) / ordered[0] < p


def nk_fails(values: list[float], n: int, k: float) -> bool:
    """(n, k) dominance: disclosive if the n largest contributors exceed k of the total.

    As in ACRO's ``agg_nk``, an all-zero cell does not fail this rule (the p-percent rule,
    with zeros_are_disclosive, already reports it).
    """
    ordered = sorted(values, reverse=True)
    total = sum(ordered)
    if total <= 0:
        return False
    return sum(ordered[:n]) / total > k


def check_table(text: str, delimiter: str, policy: Policy) -> list[CheckResult]:
    """Run the SDC rules on one table and return one result per rule that fired (or a pass)."""
    rules = policy.sdc
    table = parse_table(text, delimiter, rules)
    out: list[CheckResult] = []
    if not table.header:
        return [CheckResult(check="sdc", outcome="pass", reason="empty table")]
    below: list[dict[str, object]] = []
    zeros: list[dict[str, object]] = []
    unrounded: list[dict[str, object]] = []
    dominance: list[dict[str, object]] = []
    negatives: list[dict[str, object]] = []
    count_cells = 0
    count_small = 0

    def note(bucket: list[dict[str, object]], row_no: int, col: int, value: object, **extra: object) -> None:
        if len(bucket) < MAX_CELLS_REPORTED:
            bucket.append(
                {
                    "row": row_no,
                    "column": table.header[col],
                    "value": value,
                    "label": _label(table, row),
                    **extra,
                }
            )
        else:
            bucket[-1]["more"] = True

    for row_no, row in enumerate(table.rows, start=2):
        for col in table.counts:
            raw = _cell(row, col)
            if not raw:
                continue
            try:
                value = float(raw)
            except ValueError:
                continue
            if math.isnan(value):
                continue
            count_cells += 1
            if value == 0:
                note(zeros, row_no, col, raw)
                count_small += 1
            elif 0 < value < rules.threshold:
                note(below, row_no, col, raw)
                count_small += 1
            elif rules.rounding_base and value % rules.rounding_base != 0:
                note(unrounded, row_no, col, raw)
            elif (
                not rules.rounding_base and value < rules.small_count_limit and value % SMALL_COUNT_BASE != 0
            ):
                note(unrounded, row_no, col, raw, small=True)
        for col in table.contributors:
            values = _contributor_values(_cell(row, col))
            if values is None:
                continue
            if len(values) < rules.threshold:
                note(below, row_no, col, f"{len(values)} contributors")
            if any(v < 0 for v in values):
                note(negatives, row_no, col, "negative contributor value")
                continue
            failed = []
            if p_percent_fails(values, rules.p_percent):
                failed.append(f"p-percent (p={rules.p_percent})")
            if nk_fails(values, rules.nk_n, rules.nk_k):
                failed.append(f"({rules.nk_n},{rules.nk_k}) dominance")
            if failed:
                note(dominance, row_no, col, f"{len(values)} contributors", rules=failed)
        for col in table.magnitudes:
            raw = _cell(row, col)
            if _NUM.match(raw) and float(raw) < 0:
                note(negatives, row_no, col, raw)

    if below:
        out.append(
            CheckResult(
                check="sdc:threshold",
                outcome=action_outcome(rules.threshold_action),
                reason=f"{len(below)}{'+' if below[-1].get('more') else ''} cell(s) have fewer than "
                f"{rules.threshold} observations or contributors (e.g. row {below[0]['row']}, "
                f"column {below[0]['column']!r}: {below[0]['value']})",
                evidence={"threshold": rules.threshold, "cells": below},
            )
        )
    if dominance:
        out.append(
            CheckResult(
                check="sdc:dominance",
                outcome=action_outcome(rules.dominance_action),
                reason=f"{len(dominance)} magnitude cell(s) are dominated by their largest contributors",
                evidence={"p": rules.p_percent, "n": rules.nk_n, "k": rules.nk_k, "cells": dominance},
            )
        )
    if zeros:
        out.append(
            CheckResult(
                check="sdc:zeros",
                outcome=action_outcome(rules.zeros),
                reason=f"{len(zeros)} zero count(s): an empty cell can disclose that nobody in a group has "
                "an attribute (group disclosure)",
                evidence={"cells": zeros},
            )
        )
    if negatives:
        out.append(
            CheckResult(
                check="sdc:negative",
                outcome=action_outcome(rules.negative_magnitudes),
                reason="negative magnitudes present: the dominance rules cannot be applied reliably",
                evidence={"cells": negatives},
            )
        )
    if unrounded:
        base = (
            f"multiples of {rules.rounding_base}"
            if rules.rounding_base
            else f"rounded to {SMALL_COUNT_BASE} although they are small (below {rules.small_count_limit})"
        )
        out.append(
            CheckResult(
                check="sdc:rounding",
                outcome=action_outcome(rules.unrounded),
                reason=f"{len(unrounded)} count(s) are not {base}",
                evidence={"rounding_base": rules.rounding_base, "cells": unrounded},
            )
        )
    if count_cells and count_small / count_cells >= rules.sparse_fraction and count_cells >= 4:
        out.append(
            CheckResult(
                check="sdc:sparse",
                outcome="flag",
                reason=f"{count_small} of {count_cells} count cells are zero or below the threshold: "
                "the table is sparse",
                evidence={"small_cells": count_small, "count_cells": count_cells},
            )
        )
    if table.magnitudes and not table.contributors and not table.counts:
        out.append(
            CheckResult(
                check="sdc:magnitudes",
                outcome=action_outcome(rules.magnitude_without_contributors),
                reason="magnitude column(s) "
                + ", ".join(repr(table.header[i]) for i in table.magnitudes)
                + " come with neither contributor counts nor contributor values, so the threshold and "
                "dominance rules cannot be checked",
                evidence={"columns": [table.header[i] for i in table.magnitudes]},
            )
        )
    classified = set(table.counts) | set(table.magnitudes) | set(table.contributors)
    suspicious: list[dict[str, object]] = []
    # With count columns identified, other integer columns are category codes (sex 0/1,
    # stage 1-4); without any, a small integer may be an unlabelled count.
    for col, name in enumerate(table.header if not (table.counts or table.contributors) else []):
        if col in classified:
            continue
        cells = [_cell(r, col) for r in table.rows if _cell(r, col)]
        if not cells or not all(_INT.match(v) for v in cells) or _is_row_index(cells):
            continue
        small = [v for v in cells if 0 <= int(v) < rules.threshold]
        if small:
            suspicious.append({"column": name, "small_values": len(small), "example": small[0]})
    if suspicious:
        out.append(
            CheckResult(
                check="sdc:unclassified",
                outcome=action_outcome(rules.unclassified_small_integers),
                reason="integer column(s) "
                + ", ".join(repr(s["column"]) for s in suspicious)
                + f" hold values below {rules.threshold}; if these are counts they are disclosive "
                "(name count columns e.g. 'n' or 'count' so the rules apply)",
                evidence={"columns": suspicious},
            )
        )
    if len(table.rows) > rules.max_rows:
        out.append(
            CheckResult(
                check="sdc:record_level",
                outcome=action_outcome(rules.record_level),
                reason=f"{len(table.rows)} rows: larger than {rules.max_rows}, "
                "this looks like record-level data, "
                "not a summary table",
                evidence={"rows": len(table.rows), "max_rows": rules.max_rows},
            )
        )
    if not out:
        out.append(
            CheckResult(
                check="sdc",
                outcome="pass",
                reason=f"{count_cells} count cell(s) checked; no disclosure rule fired",
                evidence={
                    "count_columns": [table.header[i] for i in table.counts],
                    "magnitude_columns": [table.header[i] for i in table.magnitudes],
                    "contributor_columns": [table.header[i] for i in table.contributors],
                },
            )
        )
    return out
