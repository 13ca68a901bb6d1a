"""Differencing against the project's earlier releases (leaks13).

A total released last week (``patients,100``) and the same total today minus one patient
(``patients,99``), or a table by site released twice with one row changed by 1-2, give an
individual back by subtraction, although each release is safe on its own. Each file's checks
see one request; this module gives them the project's memory:

* `extract_aggregates` reads the counts a table states (CSV/TSV, and the top-level numbers of
  a JSON/YAML summary) as ``key -> value``, where the key is the normalised column name and
  row label (``n@site_a``, ``patients@total``), never the file name, so renaming a file does
  not hide it. The workflow stores them for every request (`egress_review.releases`) and
  marks them released when the DAC approves.
* Since leaks14 the same table in another file format is read too (Markdown and aligned
  `.txt`/`.md` tables, XLSX sheets), and keys are compared under a canonical column name as
  well (`canonical_key`): a count column renamed from ``n`` to ``patients`` or ``n_patients``
  is the same count of people, so ``n@site_a`` and ``patients@site_a`` meet.
* `check_against_releases` compares a new file's aggregates with the released ones of the
  same project (the caller loads them: `CheckContext.released`) and flags a pair that differs
  by more than nothing and less than the policy's threshold. The reason names only the earlier
  request's id (made by the server) and positions, never a column name or label.

Bounded: files over `MAX_BYTES` and tables past `MAX_ROWS` rows add nothing, at most
`MAX_KEYS` aggregates are kept per file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from egress_review.checks.derived_counts import _TOTAL, _count_like
from egress_review.checks.model import CheckContext, CheckResult
from egress_review.checks.table_readers import parse_json
from egress_review.checks.tables import Table, _cell, classify, parse_table
from tre.policy import Policy

MAX_BYTES = 1024 * 1024
MAX_ROWS = 2000
MAX_KEYS = 2000
MAX_KEY_CHARS = 200
_INT = re.compile(r"^\d{1,15}(?:\.0+)?$")
_NUMERIC = re.compile(r"^[+-]?\d+(?:[.,]\d+)?%?$")
TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".json", ".yaml", ".yml", ".md", ".markdown", ".xlsx")
# Column-name words that say "a number of people" and nothing about which people: a column
# renamed among them (``n`` -> ``patients`` -> ``n_patients``) still counts the same thing.
_GENERIC = frozenset(
    "n no num number count counts freq frequency of patients patient subjects subject cases "
    "participants people persons individuals".split()
)


@dataclass(frozen=True)
class Released:
    """One released aggregate of the project: its value and the request that released it."""

    value: float
    request_id: str


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.strip().lower()).strip("_")


def _row_label(table: Table, row: list[str], counts: set[int]) -> str:
    """The row's categories: its non-count, non-numeric cells; every total spelling is ``total``."""
    parts = []
    for i in range(len(table.header)):
        cell = _cell(row, i)
        if i in counts or not cell or _NUMERIC.match(cell):
            continue
        parts.append("total" if _TOTAL.match(cell) else _norm(cell))
    return "/".join(p for p in parts if p)


def _key(column: str, label: str) -> str:
    return f"{_norm(column)}@{label}"[:MAX_KEY_CHARS]


def _table_aggregates(table: Table, policy: Policy) -> Iterator[tuple[str, float]]:
    if len(table.rows) > MAX_ROWS:
        return
    counts = set(_count_like(table, policy.sdc))
    single = len(table.rows) == 1
    for row in table.rows:
        label = _row_label(table, row, counts)
        if not label and not single:
            continue  # an unlabelled row of many is not the same cell in another release
        for col in sorted(counts):
            value = _cell(row, col)
            if col < len(table.header) and _INT.match(value):
                yield _key(table.header[col], label or "total"), float(value)


def canonical_key(key: str) -> str:
    """``key`` with its column name reduced to the words that say which people it counts
    (``n_patients@total`` and ``patients@total`` -> ``n@total``; ``n_relapsed`` -> ``relapsed``).
    Applied when comparing, so keys stored by earlier releases compare the same way."""
    column, sep, label = key.partition("@")
    words = [w for w in column.split("_") if w and w not in _GENERIC]
    return f"{'_'.join(words) or 'n'}{sep}{label}"


def _doc_aggregates(doc: Any) -> Iterator[tuple[str, float]]:
    """A summary's top-level counts (``{"patients": 99}``) and one level of groups
    (``{"by_site": {"A": 45}}``): key ``patients@total``, ``by_site@a``."""
    if not isinstance(doc, dict):
        return
    for key, value in list(doc.items())[:MAX_KEYS]:
        if isinstance(value, bool):
            continue
        if isinstance(value, int) and value >= 0:
            yield _key(str(key), "total"), float(value)
        elif isinstance(value, dict):
            for inner, v in list(value.items())[:MAX_KEYS]:
                if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
                    label = "total" if _TOTAL.match(str(inner)) else _norm(str(inner))
                    yield _key(str(key), label), float(v)


def _delimiter(text: str) -> str:
    first = text.split("\n", 1)[0]
    counts = {d: first.count(d) for d in (",", ";", "\t", "|")}
    return max(counts, key=lambda d: counts[d])


def extract_aggregates(path: Path, display_name: str, policy: Policy) -> dict[str, float]:
    """The counts a table or summary file states, by key (see the module docstring)."""
    lower = display_name.lower()
    if not lower.endswith(TABLE_SUFFIXES):
        return {}
    try:
        if path.stat().st_size > MAX_BYTES:
            return {}
        if lower.endswith(".xlsx"):
            return _collect(_sheet_aggregates(path, policy))
        text = path.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return {}
    pairs: Iterator[tuple[str, float]]
    if lower.endswith(".json"):
        try:
            pairs = _doc_aggregates(parse_json(text))
        except ValueError:
            return {}
    elif lower.endswith((".yaml", ".yml")):
        import yaml

        try:
            doc = yaml.safe_load(text) if "&" not in text and "*" not in text else None
        except yaml.YAMLError:
            return {}
        pairs = _doc_aggregates(doc)
    elif lower.endswith((".md", ".markdown")) or (
        lower.endswith(".txt") and _delimiter(text) not in text.split("\n", 1)[0]
    ):
        pairs = _text_table_aggregates(text, policy)
    else:
        delimiter = "\t" if lower.endswith(".tsv") else _delimiter(text)
        pairs = _table_aggregates(parse_table(text, delimiter, policy.sdc), policy)
    return _collect(pairs)


def _collect(pairs: Iterable[tuple[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in pairs:
        if len(out) >= MAX_KEYS:
            break
        out.setdefault(key, value)
    return out


def _text_table_aggregates(text: str, policy: Policy) -> Iterator[tuple[str, float]]:
    """The counts of the Markdown and whitespace-aligned tables of a text (a report's table,
    ``print(df)``): the same table released before as CSV is the same counts."""
    from egress_review.checks.text_tables import aligned_tables, markdown_tables

    for _, rows in [*markdown_tables(text), *aligned_tables(text)]:
        yield from _table_aggregates(classify(rows, policy.sdc), policy)


def _sheet_aggregates(path: Path, policy: Policy) -> Iterator[tuple[str, float]]:
    """The counts of every sheet of a workbook (an unreadable one adds nothing: `table_read`
    blocks it)."""
    from egress_review.checks.table_readers import read_xlsx

    try:
        sheets = read_xlsx(path).tables
    except Exception:  # noqa: BLE001 - openpyxl raises many kinds on a damaged workbook
        return
    for rows in sheets.values():
        if rows:
            yield from _table_aggregates(classify(rows, policy.sdc), policy)


def check_against_releases(
    path: Path, display_name: str, policy: Policy, context: CheckContext
) -> list[CheckResult]:
    """`sdc:differencing_releases`: this file's counts differ from counts an earlier request of
    the same project released by less than the threshold."""
    released: Mapping[str, list[Released]] = context.released
    if context.depth or not released:
        return []
    mine = extract_aggregates(path, display_name, policy)
    found = list(differences(mine, released, policy.sdc.threshold))
    if not found:
        return []
    requests = sorted({r for _, r in found})
    return [
        CheckResult(
            check="sdc:differencing_releases",
            outcome="flag",
            reason=f"{len(found)} count(s) in this file differ by less than the threshold of "
            f"{policy.sdc.threshold} from counts of the same name released earlier by this project "
            f"(request {requests[0]}"
            + (f" and {len(requests) - 1} other(s)" if len(requests) > 1 else "")
            + "): subtracting one from the other may give back individuals; compare the two releases",
            evidence={
                "threshold": policy.sdc.threshold,
                "released_requests": requests[:20],
                "count": len(found),
            },
        )
    ]


def differences(
    mine: Mapping[str, float], released: Mapping[str, list[Released]], threshold: int
) -> Iterator[tuple[str, str]]:
    """(key, earlier request id) for each of ``mine`` within (0, threshold) of a released value
    of the same key, or of the same key once both column names are canonical (`canonical_key`)."""
    canonical: dict[str, list[Released]] = {}
    for key, values in released.items():
        canonical.setdefault(canonical_key(key), []).extend(values)
    for key, value in mine.items():
        for earlier in [*released.get(key, []), *canonical.get(canonical_key(key), [])]:
            gap = abs(value - earlier.value)
            if 0.5 <= gap < threshold:
                yield key, earlier.request_id
                break
