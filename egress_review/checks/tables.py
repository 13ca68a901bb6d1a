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
import functools
import io
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from egress_review.checks.model import CheckResult, action_outcome
from tre.plural import agree, count
from tre.policy import Policy, SdcRules

MAX_CELLS_REPORTED = 20
MAX_KEY_COLUMNS = 8  # a crosstab is keyed by a few categories, not dozens
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
    # (row, column) cells of a long table's value column that its row labels as a measurement
    # (``relapsed,median_months,7``): not counts, though the column counts people elsewhere
    measured: frozenset[tuple[int, int]] = frozenset()


_SEPARATORS = re.compile(r"[\s\-]+")


@functools.lru_cache(maxsize=256)
def _globs(patterns: tuple[str, ...]) -> re.Pattern[str]:
    """A policy's column globs as one expression (what `fnmatch.fnmatchcase` reads each as):
    a table's columns were matched against ~50 globs one by one, ~10 million fnmatch calls
    for the wide tables of one request, the largest share of their checks' time."""
    return re.compile("|".join(f"(?:{fnmatch.translate(p.lower())})" for p in patterns) or "(?!)")


def header_matches(name: str, patterns: Iterable[str]) -> bool:
    """Whether a column name matches a policy's globs once case and separators are set aside
    (``Patient-ID``, ``patient id`` and ``patient_id`` alike): the one rule every check that
    classifies columns by name uses, so that no two of them read a header differently."""
    norm = _SEPARATORS.sub("_", name.strip().lower())
    return _globs(tuple(patterns)).match(norm) is not None


def parse_table(text: str, delimiter: str, rules: SdcRules) -> Table:
    """Parse delimited text and classify its columns by header name."""
    if text.startswith(("sep=", "\ufeffsep=")):  # Excel's delimiter line: "sep=;"
        first, _, text = text.partition("\n")
        delimiter = first.strip().lstrip("\ufeff")[4:5] or delimiter
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    rows = [r for r in reader if any(c.strip() for c in r)]
    # A title or comment above the header ("# Table 1: counts by group") hid the header, and
    # with it the count column (redteam9): leading comment rows, and one-cell title rows
    # above a wider row, are not the header.
    while len(rows) > 1 and (rows[0][0].lstrip().startswith("#") or (len(rows[0]) == 1 and len(rows[1]) > 1)):
        rows = rows[1:]
    return classify(rows, rules)


def classify(rows: list[list[str]], rules: SdcRules) -> Table:
    """Classify a table's columns (first row: header; a numeric first row is data, not names)."""
    if rows and all(_NUM.match(c.strip()) for c in rows[0] if c.strip()) and len(rows[0]) > 1:
        rows = [[f"column {i + 1}" for i in range(len(rows[0]))], *rows]
    header = [h.strip() for h in rows[0]] if rows else []
    body = rows[1:]
    counts, magnitudes, contributors = [], [], []
    for i, name in enumerate(header):
        if header_matches(name, rules.contributor_columns):
            contributors.append(i)
        elif header_matches(name, rules.count_columns) and not header_matches(name, rules.parameter_columns):
            counts.append(i)
        elif header_matches(name, rules.magnitude_columns):
            magnitudes.append(i)
    melted, measured = _melted_counts(header, body)
    counts.extend(i for i in melted if i not in counts and i not in contributors)
    if (_confusion_header(header) or _same_labels(header, body)) and _count_matrix(body):
        counts = sorted({*counts, *(i for i in range(1, len(header)) if i not in contributors)})
        magnitudes = [i for i in magnitudes if i not in counts]
    return Table(header, _plain_numbers(body, set(counts)), counts, magnitudes, contributors, measured)


_GENERIC_VALUE = re.compile(r"^(?:value|values|val|cell|cell_value|frequency|freq)$", re.IGNORECASE)
MAX_MELTED_ROWS = 2000  # a long table's labels are looked at in its first rows only


# a long table's row whose label says its value is a statistic or a quantity, not a number of
# people (leaks16: ``relapsed,median_months,7`` was blocked as a small count of relapses)
_STATISTIC_WORDS = frozenset(
    "median mean average avg sd std stdev se sem iqr min max minimum maximum range percentile quartile "
    "q1 q3 hr".split()
)
_QUANTITY_WORDS = frozenset(
    "month months week weeks day days year years hour hours time duration mm cm ml cc hu kg gy volume "
    "size diameter length dose weight bmi pct percent percentage proportion rate ratio".split()
)


def _measured_label(cell: str) -> bool:
    """Whether a long table's label names a measurement: a statistic (``median``), or a
    quantity (``time_to_event_months``) that is not a time point (``6_months``: the people
    relapsed within six months are counted) and names no people (``relapsed``)."""
    from egress_review.checks.text_counts import people_word

    words = [w for w in re.split(r"[^a-z0-9]+", cell.lower()) if w]
    if not _STATISTIC_WORDS.isdisjoint(words):
        return True
    if any(people_word(w) for w in words):
        return False
    return any(w in _QUANTITY_WORDS and (i == 0 or not words[i - 1].isdigit()) for i, w in enumerate(words))


def _melted_counts(header: list[str], body: list[list[str]]) -> tuple[list[int], frozenset[tuple[int, int]]]:
    """The value column of a crosstab in long format (pandas' ``melt``/``stack``: ``row,
    column,value``, one row per cell) whose labels name what happened to people
    (``relapsed``): its cells count them, though "value" says nothing (leaks15: the small
    cell was only an unclassified integer). A long table of measurements (``variable`` of
    ``age``, ``volume``) keeps its values unclassified; so does each row whose own label
    names a statistic or quantity (``relapsed,median_months,7``, leaks16): the cells returned
    with the column, which the count rules skip."""
    from egress_review.checks.text_counts import people_word

    cols = [i for i, h in enumerate(header) if _GENERIC_VALUE.match(h)]
    if len(cols) != 1 or len(header) < 3:
        return [], frozenset()
    value = cols[0]
    rows = body[:MAX_MELTED_ROWS]
    cells = [r[value].strip() for r in rows if len(r) > value and r[value].strip()]
    if not cells or not all(_INT.match(_plain_number(c, True)) for c in cells):
        return [], frozenset()
    measured: set[tuple[int, int]] = set()
    people = False
    for n, row in enumerate(rows):
        labels = [c.strip() for i, c in enumerate(row) if i != value and c.strip()]
        if any(_measured_label(label) for label in labels):
            measured.add((n, value))
        elif not people:
            people = any(people_word(label) for label in labels)
    return ([value] if people else []), frozenset(measured)


_ACTUAL = re.compile(
    r"^(?:actual|true|truth|ground[ _]?truth|observed|reference|gold|label|class)\b", re.IGNORECASE
)
_PREDICTED = re.compile(r"^pred(?:icted|iction)?\b|^pred_", re.IGNORECASE)


def _confusion_header(header: list[str]) -> bool:
    """A confusion matrix (``actual,pred_benign,pred_malignant``; a blank corner): every
    cell counts cases (leaks11: its small cell was only an unclassified integer)."""
    return (
        len(header) >= 3
        and (not header[0].strip() or bool(_ACTUAL.match(header[0].strip())))
        and all(_PREDICTED.match(h.strip()) for h in header[1:])
    )


MAX_MATRIX_ROWS = 50


def _count_matrix(body: list[list[str]]) -> bool:
    """Whether the body is a small matrix of whole numbers under row labels, as a confusion
    matrix is; per-case predictions (``label,pred_benign,pred_malignant`` with probabilities)
    and a correlation matrix (floats) are not."""
    if not body or len(body) > MAX_MATRIX_ROWS:
        return False
    for row in body:
        label, cells = (row[0].strip(), [c.strip() for c in row[1:]]) if row else ("", [])
        if not label or _NUM.match(label):
            return False
        if not all(_INT.match(_plain_number(c, True)) for c in cells if c):
            return False
    return True


def _same_labels(header: list[str], body: list[list[str]]) -> bool:
    """A square table whose rows are labelled by its own column names (``,benign,malignant`` /
    ``benign,412,3``): a confusion matrix or a crosstab of one variable against itself, whose
    every cell counts cases (leaks11)."""
    names = [h.strip().lower() for h in header[1:]]
    labels = [r[0].strip().lower() for r in body if r and not _TOTALISH.match(r[0].strip())]
    return len(names) >= 2 and len(set(names)) == len(names) and sorted(names) == sorted(labels)


_TOTALISH = re.compile(r"^(?:total|all|overall|sum)$", re.IGNORECASE)


# a spreadsheet's number as written for people: "1,234", "3*", "3†", "3 [1]", "3¹"; in a
# count column also a footnote letter ("3a", "3^a"). Leaks11: "3*" was no number, so the
# small count under its footnote mark passed.
_THOUSANDS = re.compile(r"^([+-]?\d{1,3}(?:,\d{3})+)(\.\d+)?$")
_FOOTNOTE = re.compile(
    r"^([+-]?\d+(?:\.\d+)?)\s*(?:\*{1,3}|[\u2020\u2021\u00a7\u00b6#]{1,3}|\[\d{1,2}\]|\(\d{1,2}\)|[\u00b9\u00b2\u00b3\u2070-\u2079]{1,2})$"
)
_FOOTNOTE_LETTER = re.compile(r"^([+-]?\d+)\s*\^?\(?([a-z])\)?$")


def _plain_number(raw: str, count: bool) -> str:
    cell = raw.strip()
    if not cell or not cell[0].isdigit() and cell[0] not in "+-" or _NUM.match(cell):
        return raw
    thousands = _THOUSANDS.match(cell)
    if thousands:
        return thousands.group(1).replace(",", "") + (thousands.group(2) or "")
    mark = _FOOTNOTE.match(cell) or (_FOOTNOTE_LETTER.match(cell) if count else None)
    return _plain_number(mark.group(1), count) if mark else raw


def _plain_numbers(body: list[list[str]], counts: set[int]) -> list[list[str]]:
    """Rows with numbers written for people read as numbers (see `_plain_number`)."""
    out = body
    for r, row in enumerate(body):
        plain = [_plain_number(c, i in counts) for i, c in enumerate(row)]
        if plain != row:
            if out is body:
                out = list(body)
            out[r] = plain
    return out


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
    """Run the SDC rules on one delimited text table (CSV/TSV)."""
    return check_parsed(parse_table(text, delimiter, policy.sdc), policy)


def check_rows(rows: list[list[str]], policy: Policy, where: str = "") -> list[CheckResult]:
    """Run the SDC rules on a table read from JSON, XLSX or Parquet (cells as strings).

    ``where`` (e.g. ``sheet 'Results'``) is added to every reason so a reviewer finds the cells.
    """
    results = check_parsed(classify(rows, policy.sdc), policy)
    if not where:
        return results
    return [r.model_copy(update={"reason": f"{where}: {r.reason}"}) for r in results]


# What a result quotes of the cells it judged, which only reviewers may read: the job wrote
# them, and a blocked table's small counts are exactly what the block keeps in.
_CELL_CONTENT = ("value", "label", "example")
REVIEWER_ONLY = "reviewer_only"  # as egress_review.checking.REVIEWER_ONLY (which imports this module)


def check_parsed(table: Table, policy: Policy) -> list[CheckResult]:
    """Run the SDC rules on one table and return one result per rule that fired (or a pass).

    The cells' values and row labels go to the reviewers only: shown to the requester before
    any review, a blocked table of 20 small counts with their labels was read back from the
    check results (redteam9), the block notwithstanding. The requester sees row and column."""
    subjects = _rows_are_subjects(table, policy)
    if subjects:
        # One row per subject, named by the agreement's pseudonyms (Dice, lesion count, volume
        # per case): `n_lesions` of one case is an attribute of that case, not the size of a
        # group, so the frequency rules do not apply; record-level rules still do.
        table = Table(table.header, table.rows, [], table.magnitudes, [])
    from egress_review.checks.ages import table_ages  # use Table
    from egress_review.checks.derived_counts import derived_counts, transposed, with_margins
    from egress_review.checks.quasi_identifiers import rare_combinations

    if not subjects:
        table = with_margins(table, policy.sdc)
    results = _check_cells(table, policy, subjects=subjects)
    if not subjects:
        results = _merge(results, derived_counts(table, policy.sdc))
        flipped = transposed(table, policy.sdc)
        if flipped is not None:
            results = _merge(
                results,
                [
                    r.model_copy(update={"reason": f"read with rows as columns: {r.reason}"})
                    for r in _check_cells(flipped, policy)
                    if r.outcome != "pass"
                ]
                + derived_counts(flipped, policy.sdc),
            )
    # an age over 89, rare combinations of an age with sex or site (leaks20)
    results = _merge(results, table_ages(table) + rare_combinations(table, policy.sdc.threshold))
    return [_content_for_reviewers(r) for r in results]


def _merge(results: list[CheckResult], more: list[CheckResult]) -> list[CheckResult]:
    """Add findings; the 'nothing fired' pass goes when something did."""
    if not more:
        return results
    return [r for r in results if r.outcome != "pass"] + more


def _rows_are_subjects(table: Table, policy: Policy) -> bool:
    """Whether some column names every row by a distinct pseudonym of the data agreement
    (`dicom.pseudonym_patterns`): then each row is one subject's results."""
    patterns = [re.compile(p) for p in policy.dicom.pseudonym_patterns]
    if len(table.rows) < 2 or not patterns:
        return False
    for col in range(len(table.header)):
        values = [_cell(row, col) for row in table.rows]
        if len(set(values)) == len(values) and all(any(p.fullmatch(v) for p in patterns) for v in values):
            return True
    return False


def _content_for_reviewers(result: CheckResult) -> CheckResult:
    evidence = result.evidence
    if not isinstance(evidence, dict):
        return result
    shown: dict[str, object] = {}
    hidden: dict[str, object] = {}
    for key, value in evidence.items():
        if (
            key in ("cells", "columns")
            and isinstance(value, list)
            and any(isinstance(v, dict) and set(v) & set(_CELL_CONTENT) for v in value)
        ):
            shown[key] = [
                {k: v for k, v in item.items() if k not in _CELL_CONTENT} if isinstance(item, dict) else item
                for item in value
            ]
            hidden[key] = value
        else:
            shown[key] = value
    if not hidden:
        return result
    return result.model_copy(update={"evidence": {**shown, REVIEWER_ONLY: hidden}})


def _check_cells(table: Table, policy: Policy, *, subjects: bool = False) -> list[CheckResult]:
    rules = policy.sdc
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
            if not raw or (row_no - 2, col) in table.measured:
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
                reason=f"{len(below)}{'+' if below[-1].get('more') else ''} "
                f"{'cell has' if len(below) == 1 and not below[-1].get('more') else 'cells have'} fewer than "
                f"{rules.threshold} observations or contributors (e.g. row {below[0]['row']}, "
                f"column {below[0]['column']!r})",
                evidence={"threshold": rules.threshold, "cells": below},
            )
        )
    if dominance:
        out.append(
            CheckResult(
                check="sdc:dominance",
                outcome=action_outcome(rules.dominance_action),
                reason=f"{count(len(dominance), 'magnitude cell')} "
                f"{agree(len(dominance), 'is', 'are')} dominated by "
                "their largest contributors",
                evidence={"p": rules.p_percent, "n": rules.nk_n, "k": rules.nk_k, "cells": dominance},
            )
        )
    if zeros:
        out.append(
            CheckResult(
                check="sdc:zeros",
                outcome=action_outcome(rules.zeros),
                reason=f"{count(len(zeros), 'zero count')}: an empty cell can disclose that "
                f"nobody in a group has "
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
                reason=f"{count(len(unrounded), 'count')} {agree(len(unrounded), 'is', 'are')} not {base}",
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
    out.extend(_magnitude_rules(table, rules))
    out.extend(_missing_cells(table, rules))
    if not subjects:  # a subject's small integers (lesions, stage) are not unnamed counts
        out.extend(_unnamed_counts(table, rules))
    out.extend(_numeric_grid(table, rules))
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
                reason=f"{count(count_cells, 'count cell')} checked; no disclosure rule fired",
                evidence={
                    "count_columns": [table.header[i] for i in table.counts],
                    "magnitude_columns": [table.header[i] for i in table.magnitudes],
                    "contributor_columns": [table.header[i] for i in table.contributors],
                },
            )
        )
    return out


_MEAN = re.compile(r"(^|_)(mean|avg|average|median)(_|$)")
_MISSING = frozenset({"", "nan", "na", "n/a", "null", "none", "-"})


def _magnitude_rules(table: Table, rules: SdcRules) -> list[CheckResult]:
    """Magnitudes without contributor values: say which of ACRO's rules could not be applied.

    Totals (sums) disclose a dominant contributor whatever the count; means are checked only
    against the count column's threshold, and flagged when there is no count to check.
    """
    if not table.magnitudes or table.contributors:
        return []
    totals = [i for i in table.magnitudes if not _MEAN.search(_norm(table.header[i]))]
    unchecked = totals if table.counts else table.magnitudes
    if not unchecked:
        return []
    skipped = ["p-ratio", "nk dominance"] + ([] if table.counts else ["threshold"])
    return [
        CheckResult(
            check="sdc:magnitudes",
            outcome=action_outcome(rules.magnitude_without_contributors),
            reason=f"magnitude {agree(len(unchecked), 'column', 'columns')} "
            + ", ".join(repr(table.header[i]) for i in unchecked)
            + f" {agree(len(unchecked), 'comes', 'come')} without contributor values, so ACRO's "
            + ", ".join(skipped)
            + f" {agree(len(skipped), 'rule', 'rules')} could not be applied"
            + ("" if table.counts else " (and there is no count column)"),
            evidence={"columns": [table.header[i] for i in unchecked], "rules_not_applied": skipped},
        )
    ]


def _norm(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def _missing_cells(table: Table, rules: SdcRules) -> list[CheckResult]:
    """ACRO's check_missing_values: an empty count or magnitude is often a suppressed small cell."""
    cells: list[dict[str, object]] = []
    for row_no, row in enumerate(table.rows, start=2):
        for col in [*table.counts, *table.magnitudes]:
            if _cell(row, col).lower() in _MISSING and len(cells) < MAX_CELLS_REPORTED:
                cells.append({"row": row_no, "column": table.header[col], "label": _label(table, row)})
    if not cells:
        return []
    return [
        CheckResult(
            check="sdc:missing",
            outcome=action_outcome(rules.missing),
            reason=f"{count(len(cells), 'count or magnitude cell')} "
            f"{agree(len(cells), 'is', 'are')} empty or NaN (e.g. row {cells[0]['row']}, "
            f"column {cells[0]['column']!r}): a missing cell can stand for a suppressed small one",
            evidence={"cells": cells},
        )
    ]


def _integer_columns(table: Table) -> list[int]:
    roles = set(table.counts) | set(table.magnitudes) | set(table.contributors)
    out = []
    for col in range(len(table.header)):
        if col in roles:
            continue
        cells = [_cell(r, col) for r in table.rows if _cell(r, col)]
        if cells and all(_INT.match(v) for v in cells):
            out.append(col)
    return out


def _unnamed_counts(table: Table, rules: SdcRules) -> list[CheckResult]:
    """Integer columns that are not named as counts: category codes, measurements or counts?

    Category codes are the columns that, with the text columns, tell the rows apart (a
    crosstab's keys: sex 0/1 by stage 1-4). Measurements (``lesion_mm``, ``age``) and
    category-named columns are neither. What is left is a measure: when it never exceeds the
    named count in its row it is a sub-count (``deaths`` of ``n``) and the threshold applies;
    otherwise small values are flagged as a possible unlabelled count. A long table's value
    column whose every row is labelled a measurement (``median_months``) is not a count.
    """
    integer = [
        c
        for c in _integer_columns(table)
        if not _is_row_index([_cell(r, c) for r in table.rows if _cell(r, c)])
        and not all((r, c) in table.measured for r in range(len(table.rows)))
    ]
    measures: list[int] = []
    key_cols = [
        c
        for c in range(len(table.header))
        if c not in integer
        and c not in table.counts
        and c not in table.magnitudes
        and c not in table.contributors
    ]
    candidates: list[int] = []
    for col in integer:
        name = table.header[col]
        if header_matches(name, rules.measurement_columns) or header_matches(name, rules.parameter_columns):
            continue
        if header_matches(name, rules.category_columns):
            key_cols.append(col)
            continue
        candidates.append(col)

    # Row keys built one column at a time (a wide table must not cost columns^2 x rows).
    keys: list[tuple[str, ...]] = [tuple(_cell(r, c) for c in key_cols) for r in table.rows]
    distinct = len(set(keys))
    for col in candidates:
        if len(table.rows) > 1 and distinct < len(keys) and len(key_cols) < MAX_KEY_COLUMNS:
            key_cols.append(col)  # still needed to tell the rows apart: a category code
            keys = [(*k, _cell(r, col)) for k, r in zip(keys, table.rows, strict=True)]
            distinct = len(set(keys))
        else:
            measures.append(col)
    out: list[CheckResult] = []
    below: list[dict[str, object]] = []
    suspicious: list[dict[str, object]] = []
    for col in measures:
        name = table.header[col]
        values = [(i, int(_cell(r, col))) for i, r in enumerate(table.rows) if _cell(r, col)]
        small = [(i, v) for i, v in values if 0 < v < rules.threshold]
        subcount_of = next(
            (
                table.header[c]
                for c in table.counts
                if all(_fits_under(table.rows[i], c, v) for i, v in values)
            ),
            None,
        )
        if subcount_of is not None:
            for i, v in small[:MAX_CELLS_REPORTED]:
                below.append(
                    {
                        "row": i + 2,
                        "column": name,
                        "value": str(v),
                        "label": _label(table, table.rows[i]),
                        "subcount_of": subcount_of,
                    }
                )
        elif len(table.rows) > 1 and any(0 <= v < rules.threshold for _, v in values):
            # one row of settings (epochs, folds, seed) is a record of parameters, not a table
            example = next(str(v) for _, v in values if 0 <= v < rules.threshold)
            suspicious.append(
                {
                    "column": name,
                    "small_values": sum(1 for _, v in values if 0 <= v < rules.threshold),
                    "example": example,
                }
            )
    if below:
        first = below[0]
        out.append(
            CheckResult(
                check="sdc:subcount",
                outcome=action_outcome(rules.subcount_action),
                reason=f"column {first['column']!r} never exceeds the count column {first['subcount_of']!r}, "
                f"so it counts a subgroup; {len(below)} of its cells are below the threshold of "
                f"{rules.threshold} (e.g. row {first['row']})",
                evidence={"threshold": rules.threshold, "cells": below},
            )
        )
    if suspicious:
        out.append(
            CheckResult(
                check="sdc:unclassified",
                outcome=action_outcome(rules.unclassified_small_integers),
                reason=f"integer {agree(len(suspicious), 'column', 'columns')} "
                + ", ".join(repr(s["column"]) for s in suspicious)
                + f" {agree(len(suspicious), 'holds', 'hold')} values below {rules.threshold}; if "
                f"these are counts they are disclosive "
                "(name count columns e.g. 'n' or 'count' so the rules apply, or measurement "
                "columns e.g. 'size_mm' so they are not taken as counts)",
                evidence={"columns": suspicious},
            )
        )
    return out


def _fits_under(row: list[str], count_col: int, value: int) -> bool:
    raw = _cell(row, count_col)
    try:
        return value <= float(raw)
    except ValueError:
        return True  # a suppressed count ('<10', '*') says nothing against it


def _numeric_grid(table: Table, rules: SdcRules) -> list[CheckResult]:
    """Images written as numbers, and record-level data that is too big for a summary.

    A grid at least ``image_table_min_side`` on both sides whose neighbouring cells are
    correlated along rows and along columns is a picture (a CT slice as a 512x512 CSV): tables
    of features have unrelated neighbouring columns. Any table with more numeric cells than
    ``max_numeric_cells`` is record-level whatever its row count.
    """
    numeric_cols = [
        c
        for c in range(len(table.header))
        if sum(1 for r in table.rows if _NUM.match(_cell(r, c))) >= 0.9 * max(1, len(table.rows))
    ]
    cells = len(numeric_cols) * len(table.rows)
    out: list[CheckResult] = []
    side = rules.image_table_min_side
    if len(numeric_cols) >= side and len(table.rows) >= side:
        grid = np.array([[_float(_cell(r, c)) for c in numeric_cols] for r in table.rows], dtype=np.float64)
        across, down = neighbour_correlation(grid, 1), neighbour_correlation(grid, 0)
        if across >= 0.5 and down >= 0.5:
            out.append(
                CheckResult(
                    check="sdc:image_table",
                    outcome=action_outcome(rules.image_table),
                    reason=f"a {len(table.rows)} x {len(numeric_cols)} grid of numbers whose neighbouring "
                    f"cells are correlated like pixels (rows {down:.2f}, columns {across:.2f}): an image or "
                    "a volume slice written as a table, not a summary",
                    evidence={
                        "rows": len(table.rows),
                        "numeric_columns": len(numeric_cols),
                        "row_correlation": round(down, 3),
                        "column_correlation": round(across, 3),
                    },
                )
            )
    if (
        not out
        and len(numeric_cols) >= side
        and len(table.rows) >= side
        and len(numeric_cols) == len(table.header)
    ):
        # Not a picture, but a bare matrix: nothing labels a row or a column as a category,
        # so it is no summary table; it is how weights or a data matrix are written out.
        out.append(
            CheckResult(
                check="sdc:record_level",
                outcome=action_outcome(rules.record_level),
                reason=f"a {len(table.rows)} x {len(numeric_cols)} matrix of numbers with no label column: "
                "model weights or record-level values written as a table, not a summary",
                evidence={"rows": len(table.rows), "numeric_columns": len(numeric_cols)},
            )
        )
    if cells > rules.max_numeric_cells and not out:
        out.append(
            CheckResult(
                check="sdc:record_level",
                outcome=action_outcome(rules.record_level),
                reason=f"{cells} numeric cells ({len(table.rows)} rows x "
                f"{len(numeric_cols)} numeric columns), "
                f"more than {rules.max_numeric_cells}: record-level data, not a summary table",
                evidence={"numeric_cells": cells, "max_numeric_cells": rules.max_numeric_cells},
            )
        )
    return out


def _float(raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        return math.nan


def neighbour_correlation(grid: np.ndarray, axis: int) -> float:
    """Pearson correlation of each cell with its neighbour along ``axis`` (NaN-safe, 0 if flat)."""
    a = grid[:-1, :] if axis == 0 else grid[:, :-1]
    b = grid[1:, :] if axis == 0 else grid[:, 1:]
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 4:
        return 0.0
    x, y = a[ok], b[ok]
    if x.std() == 0 or y.std() == 0:
        return 0.0
    return float(np.corrcoef(x, y)[0, 1])
