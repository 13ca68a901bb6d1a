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

import itertools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from egress_review.checks.derived_counts import _TOTAL, _all_percent, _count_like
from egress_review.checks.file_groups import disjoint_groups
from egress_review.checks.model import CheckContext, CheckResult
from egress_review.checks.prose_flow import FLOW_STAGES, flow_differencing
from egress_review.checks.prose_shares import prose_shares
from egress_review.checks.shares import (
    NUMERIC_CELL,
    count_from_mean_and_sum,
    is_metric,
    is_percent_string,
    parse_share_key,
    pct_column,
    pct_value,
    share_count,
    share_differs,
    share_key,
)
from egress_review.checks.table_readers import parse_json
from egress_review.checks.tables import Table, _cell, classify, parse_table
from tre.plural import agree, count
from tre.policy import Policy

MAX_BYTES = 1024 * 1024
MAX_ROWS = 2000
MAX_KEYS = 2000
MAX_KEY_CHARS = 200
MAX_PAIRS = 20  # released counts and totals tried per share (the newest first)
MAX_PROSE_SHARES = 50  # shares read from a text's sentences
MAX_OTHER_FILES = 20  # the request's other files read for the wholes of this file's shares
DATASET_COHORT = "the datasets' patients"  # where a whole counted from the datasets comes from
_INT = re.compile(r"^\d{1,15}(?:\.0+)?$")
_CUMULATIVE = frozenset({"cum", "cumul", "cumulative", "running", "cumsum"})
TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".json", ".yaml", ".yml", ".md", ".markdown", ".xlsx")
# documents read for their prose totals only: a LaTeX report's text and a figure's caption or
# title (leaks15: "\\caption{Overall survival, N = 99}", an SVG's <title>)
PROSE_SUFFIXES = (".tex", ".svg")
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
        if i in counts or not cell or NUMERIC_CELL.match(cell):
            continue
        parts.append("total" if _TOTAL.match(cell) else _norm(cell))
    return "/".join(p for p in parts if p)


def _key(column: str, label: str) -> str:
    return f"{_norm(column)}@{label}"[:MAX_KEY_CHARS]


def _table_aggregates(table: Table, policy: Policy) -> Iterator[tuple[str, float]]:
    if len(table.rows) > MAX_ROWS:
        return
    shares = {
        col: name for col, header in enumerate(table.header) if (name := pct_column(header)) is not None
    }
    # a column whose every cell is written "3.0%" is shares whatever its name (leaks17: JSON
    # records' "relapse": "6.1%")
    shares.update(
        {c: _norm(h) or "n" for c, h in enumerate(table.header) if c not in shares and _all_percent(table, c)}
    )
    # a measured change beside a model's metrics (``volume_change_pct`` by ``dice_pct``) is the
    # table's measurement, not a share of its people (`shares.is_metric`, leaks18)
    metric = {c for c in shares if is_metric(table.header[c], table.header)}
    counts = set(_count_like(table, policy.sdc)) - set(shares)
    denominators = [c for c in sorted(counts) if c < len(table.header) and is_denominator(table.header[c])]
    single = len(table.rows) == 1
    for row in table.rows:
        label = _row_label(table, row, counts | set(shares)) or ("total" if single else "")
        if not label:
            continue  # an unlabelled row of many is not the same cell in another release
        for col in sorted(counts):
            value = _cell(row, col)
            if col < len(table.header) and _INT.match(value):
                yield _key(table.header[col], label), float(value)
        total = next((float(v) for c in denominators if _INT.match(v := _cell(row, c))), None)
        # a metric's row (``error | 6.1``) is a model's share, not its people's (leaks18)
        skip = set(shares) if any(is_metric(part) for part in label.split("/")) else metric
        cells = (
            (name, _cell(row, col), table.header[col]) for col, name in shares.items() if col not in skip
        )
        yield from _shares(cells, label, total)
        named = {_norm(h): _cell(row, i) for i, h in enumerate(table.header)}
        if (n := count_from_mean_and_sum(named)) is not None:
            yield _key("n", label), n
    yield from _cumulative_totals(table, counts)
    yield from _breakdown_sum(table, counts, set(shares))


def _dimension(name: str) -> str:
    """A breakdown's dimension as a key's column: ``by_arm``, ``Arm`` and ``arms`` are ``arm``."""
    norm = _norm(name).removeprefix("by_")
    return norm[:-1] if len(norm) > 3 and norm.endswith("s") and not norm.endswith("ss") else norm


def breakdown_key(dimension: str) -> str:
    """The key of a breakdown's sum: ``sum:arm@total``, compared with the same dimension's sum
    in a release, whatever its categories are called (leaks15)."""
    return f"sum:{_dimension(dimension)}@total"[:MAX_KEY_CHARS]


def _breakdown_sum(table: Table, counts: set[int], shares: set[int]) -> Iterator[tuple[str, float]]:
    """The sum of a one-way breakdown (one label column, one count column, no total row): the
    people the breakdown covers. A total released once and its subgroups later (100, then
    ``arm`` 51 + 48) differ by the one person the subgroups leave out (leaks15). The sum is
    compared only with a dimension the project released whole (its parts summed to a released
    total: arms 50 + 50 of 100): a breakdown of part of a cohort (two age groups of three, two
    new sites) sums to less, or to other people, by design."""
    if len(counts) != 1 or len(table.rows) < 2:
        return
    col = next(iter(counts))
    labels = [
        i
        for i in range(len(table.header))
        if i not in counts
        and i not in shares
        and any(not NUMERIC_CELL.match(_cell(r, i)) for r in table.rows)
    ]
    if len(labels) != 1 or not _norm(table.header[labels[0]]):
        return
    values = []
    for row in table.rows:
        value, label = _cell(row, col), _cell(row, labels[0])
        if not _INT.match(value) or not label or _TOTAL.match(label):
            return  # a stated total is compared as itself; a gap is not a breakdown
        values.append(float(value))
    yield breakdown_key(table.header[labels[0]]), sum(values)


def _cumulative_totals(table: Table, counts: set[int]) -> Iterator[tuple[str, float]]:
    """A cumulative count's last row is the whole cohort (``cumulative_patients`` by month ends
    at the total): kept as the total of the count it accumulates (leaks14b)."""
    for col in sorted(counts):
        words = _norm(table.header[col]).split("_") if col < len(table.header) else []
        if _CUMULATIVE.isdisjoint(words):
            continue
        values = [v for row in table.rows if _INT.match(v := _cell(row, col))]
        if values:
            yield _key("_".join(w for w in words if w not in _CUMULATIVE) or "n", "total"), float(values[-1])


def is_denominator(header: str) -> bool:
    """A count column that names no one in particular (``n``, ``patients``): the row's people,
    of whom the row's percentages are shares."""
    return canonical_key(_key(header, "")).startswith("n@")


def _shares(
    cells: Iterable[tuple[str, str, str]], label: str, total: float | None
) -> Iterator[tuple[str, float]]:
    """A row's percentages (the count's name, the cell, the column's header): as counts where
    the row states its denominator ``total``, else as shares (`shares.share_key`)."""
    for name, cell, header in cells:
        parsed = pct_value(cell, header)
        if parsed is None:
            continue
        pct, decimals = parsed
        if total is None:
            yield share_key(decimals, _key(name, label)), pct
        elif (count := share_count(pct, decimals, total)) is not None:
            yield _key(name, label), count


def canonical_key(key: str) -> str:
    """``key`` with its column name reduced to the words that say which people it counts
    (``n_patients@total`` and ``patients@total`` -> ``n@total``; ``n_relapsed`` -> ``relapsed``).
    Applied when comparing, so keys stored by earlier releases compare the same way."""
    column, sep, label = key.partition("@")
    words = [w for w in column.split("_") if w and w not in _GENERIC]
    if words[:1] == ["by"] and label != "total" and not column.startswith("sum:"):
        words = []  # a summary's group (``by_site@b``) counts that category's people (leaks15)
    return f"{'_'.join(words) or 'n'}{sep}{label}"


def _doc_aggregates(doc: Any) -> Iterator[tuple[str, float]]:
    """A summary's top-level counts (``{"patients": 99}``) and one level of groups
    (``{"by_site": {"A": 45}}``): key ``patients@total``, ``by_site@a``. A breakdown's group
    (a key with ``by``/``per``: `_is_breakdown`) is a row of its own: its shares are of the
    group's people, not the cohort's (leaks18, `_group_aggregates`)."""
    if not isinstance(doc, dict):
        return
    names = [str(k) for k in list(doc)[:MAX_KEYS]]
    scalars = {str(k): v for k, v in list(doc.items())[:MAX_KEYS] if type(v) in (int, float)}
    shares = [cell for k, v in scalars.items() if (cell := _share_cell(k, v, names)) is not None]
    shares.extend(
        cell
        for k, v in list(doc.items())[:MAX_KEYS]
        if isinstance(v, str) and (cell := _share_cell(str(k), v, names)) is not None
    )
    for key, value in list(doc.items())[:MAX_KEYS]:
        if isinstance(value, dict) and _is_breakdown(str(key)):
            yield from _group_aggregates(str(key), value)
            continue
        if isinstance(value, bool) or pct_column(str(key)) is not None:
            continue
        if isinstance(value, int) and value >= 0:
            yield _key(str(key), "total"), float(value)
        elif isinstance(value, dict):
            for inner, v in list(value.items())[:MAX_KEYS]:
                if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
                    label = "total" if _TOTAL.match(str(inner)) else _norm(str(inner))
                    yield _key(str(key), label), float(v)
                elif isinstance(v, str) and is_percent_string(v):
                    # {"summary": {"relapse": "5.9%"}}: a share of the whole cohort (leaks17)
                    yield from _shares([(_norm(str(inner)) or "n", v, str(inner))], "total", None)
                elif isinstance(v, dict) and _is_breakdown(str(inner)):
                    yield from _group_aggregates(str(inner), v)  # {"results": {"by_site": ...}}
            groups = list(value.items())[:MAX_KEYS]
            if len(groups) >= 2 and all(
                type(v) is int and v >= 0 and not _TOTAL.match(str(k)) for k, v in groups
            ):
                yield breakdown_key(str(key)), float(sum(v for _, v in groups))
    # after the stated counts, which win over what is derived (`_collect` keeps the first)
    total = next((float(v) for k, v in scalars.items() if type(v) is int and is_denominator(k)), None)
    yield from _shares(shares, "total", total)
    if (n := count_from_mean_and_sum({_norm(k): str(v) for k, v in scalars.items()})) is not None:
        yield _key("n", "total"), n


_BREAKDOWN = re.compile(r"(?:^|_)(?:by|per)(?:_|$)")


def _is_breakdown(key: str) -> bool:
    """A key naming a breakdown (``by_site``, ``n_by_site``, ``relapse_pct_per_arm``, or a
    dimension itself: ``sites``, ``arms``): its inner keys are the groups' labels, not
    quantities of the whole cohort."""
    return _BREAKDOWN.search(_norm(key)) is not None or _dimension(key) in _DIMENSIONS


# a breakdown named by its dimension alone (``{"sites": {"A": "6.8%"}}``)
_DIMENSIONS = frozenset(
    "site centre center hospital arm stage grade region country sex gender age_group subgroup stratum "
    "strata".split()
)


def _group_aggregates(key: str, groups: dict[Any, Any]) -> Iterator[tuple[str, float]]:
    """A breakdown's groups (``{"by_site": {"A": 45}}``, ``{"A": "6.8%"}``, ``{"A": {"n": 12,
    "relapse": "8.3%"}}``): a count as ``by_site@a``; a share as a share of the group's people
    (``share@a``, compared with site A's ``n`` wherever it is stated or released), or as a
    count where the group states its ``n`` beside it. Before leaks18 a group's share was read
    as a share of the whole cohort, and a group's own row was not read."""
    share_of_key = pct_column(key) is not None
    if is_metric(key):
        return  # ``dice_by_site``: a model's score by site, no share of anyone
    counted: list[float] = []
    for inner, v in list(groups.items())[:MAX_KEYS]:
        label = "total" if _TOTAL.match(str(inner)) else _norm(str(inner))
        if not label:
            continue
        if isinstance(v, dict):
            yield from _row_doc_aggregates(v, label)
        elif isinstance(v, str) and is_percent_string(v):
            yield from _shares([("share", v, "")], label, None)
        elif type(v) in (int, float) and share_of_key:
            yield from _shares([("share", str(v), key)], label, None)
        elif type(v) is int and v >= 0:
            yield _key(key, label), float(v)
            if label != "total":
                counted.append(float(v))
    if len(counted) >= 2 and len(counted) == len(groups):
        yield breakdown_key(key), sum(counted)


def _row_doc_aggregates(row: dict[Any, Any], label: str) -> Iterator[tuple[str, float]]:
    """One group's own counts and shares (``{"n": 12, "relapse": "8.3%"}`` under ``by_site``'s
    ``A``): its shares are of its ``n`` where it states one, else of the group's people."""
    names = [str(k) for k in list(row)[:MAX_KEYS]]
    cells: list[tuple[str, str, str]] = []
    total = None
    for k, v in list(row.items())[:MAX_KEYS]:
        name = str(k)
        if type(v) is int and v >= 0 and pct_column(name) is None:
            yield _key(name, label), float(v)
            if total is None and is_denominator(name):
                total = float(v)
        elif (cell := _share_cell(name, v, names)) is not None:
            cells.append(cell)
    yield from _shares(cells, label, total)


def _share_cell(key: str, value: Any, names: list[str]) -> tuple[str, str, str] | None:
    """A document's entry read as a share (the count's name, the value, the key; see `_shares`):
    a number under a share's name (``relapse_pct``), or a percentage string under any name
    (``"relapse": "3.0%"``, leaks17); none for a metric's (`shares.is_metric`, judged beside
    the document's other keys ``names``)."""
    if isinstance(value, str) and is_percent_string(value):
        name = pct_column(key) or _norm(key) or "n"
    elif type(value) in (int, float) and (share := pct_column(key)) is not None:
        name = share
    else:
        return None
    return None if is_metric(key, names) else (name, str(value), key)


def _delimiter(text: str) -> str:
    first = text.split("\n", 1)[0]
    counts = {d: first.count(d) for d in (",", ";", "\t", "|")}
    return max(counts, key=lambda d: counts[d])


def extract_aggregates(path: Path, display_name: str, policy: Policy) -> dict[str, float]:
    """The counts a table or summary file states, by key (see the module docstring)."""
    lower = display_name.lower()
    if not lower.endswith(TABLE_SUFFIXES + PROSE_SUFFIXES):
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
    if lower.endswith(PROSE_SUFFIXES):
        pairs = iter(())
    elif lower.endswith(".json"):
        try:
            doc = parse_json(text)
        except ValueError:
            return {}
        pairs = _doc_aggregates(doc) if isinstance(doc, dict) else _records_aggregates(doc, policy)
        if isinstance(doc, dict):  # {"by_site": [{"site": "A", "relapse": "6.8%"}]}: records
            lists = [v for v in list(doc.values())[:MAX_KEYS] if isinstance(v, list)]
            pairs = itertools.chain(pairs, *(_records_aggregates(v, policy) for v in lists[:20]))
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
    if lower.endswith((".txt", ".md", ".markdown", *PROSE_SUFFIXES)):
        pairs = itertools.chain(pairs, _prose_aggregates(text))
    return _collect(pairs)


def _prose_aggregates(text: str) -> Iterator[tuple[str, float]]:
    """The cohort's total said in a sentence ("Of the 99 patients included"), the first one: a
    report's text is compared with the totals released as tables (leaks14b); and the shares
    its sentences state (`prose_shares`), of the cohort's or a group's total."""
    from egress_review.checks.text_counts import prose_totals

    for noun, value in prose_totals(text)[:1]:
        yield _key(noun, "total"), float(value)
    for i, share in enumerate(prose_shares(text)[:MAX_PROSE_SHARES]):
        # numbered: a text's several shares are several keys ("share", "share_2", ...)
        column = "share" if i == 0 else f"share_{i + 1}"
        label = "total" if share.group is None else _norm(share.group)
        yield share_key(share.decimals, _key(column, label)), float(share.percent)


def _collect(pairs: Iterable[tuple[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in pairs:
        if len(out) >= MAX_KEYS:
            break
        out.setdefault(key, value)
    return out


def aggregates_of(path: Path, display_name: str, policy: Policy, context: CheckContext) -> dict[str, float]:
    """`extract_aggregates`, read once per request for a file and a policy (kept on the request's
    `CheckContext.aggregates`): a file's shares are compared with every other file's wholes, so
    each file was read again for every file of the request with a share, and once more when the
    request kept its counts. The result is shared: callers only read it."""
    try:
        stat = path.stat()
    except OSError:
        return extract_aggregates(path, display_name, policy)
    # the file's size and time too: a context may outlive a file rewritten in its place
    key = (str(path), display_name, id(policy), stat.st_size, stat.st_mtime_ns)
    kept = context.aggregates.get(key)
    if kept is not None and kept[0] is policy:
        return kept[1]
    found = extract_aggregates(path, display_name, policy)
    context.aggregates[key] = (policy, found)  # the policy kept with it: its id stays its own
    return found


def _records_aggregates(doc: Any, policy: Policy) -> Iterator[tuple[str, float]]:
    """The counts and shares of a JSON list of records (``[{"site": "A", "relapse": "6.8%"}]``,
    leaks17), read as the table it is."""
    from egress_review.checks.table_readers import json_tables

    for _, rows in itertools.islice(json_tables(doc), 20):
        if rows:
            yield from _table_aggregates(classify(rows, policy.sdc), policy)


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
    if context.depth:
        return []
    released: Mapping[str, list[Released]] = context.released
    mine = aggregates_of(path, display_name, policy, context)
    threshold = policy.sdc.threshold
    results = _request_share_flag(mine, display_name, policy, context)
    stated = _other_files(mine, display_name, policy, context)
    results += _request_differences(mine, stated, policy) + _flow_differences(mine, policy, stated)
    if not released:
        return results
    return (
        results
        + _release_flag(
            "sdc:released_share",
            list(small_shares(mine, released, threshold)),
            (
                f"percentage in this file is a count below the threshold of {threshold} of a total "
                "released earlier by this project",
                f"percentages in this file are a count below the threshold of {threshold} of a total "
                "released earlier by this project",
            ),
            "the share and the released total give the count back",
            threshold,
        )
        + _release_flag(
            "sdc:differencing_releases",
            list(differences(mine, released, threshold)),
            (
                f"count in this file differs by less than the threshold of {threshold} from counts of "
                "the same name released earlier by this project",
                f"counts in this file differ by less than the threshold of {threshold} from counts of "
                "the same name released earlier by this project",
            ),
            "subtracting one from the other may give back individuals",
            threshold,
        )
    )


def _request_share_flag(
    mine: Mapping[str, float], display_name: str, policy: Policy, context: CheckContext
) -> list[CheckResult]:
    """`sdc:request_share`: a share of this file is a count under the threshold of a whole
    that this request states, in this file (``N = 33`` above "6.1 % withdrew") or in another
    of its files (``cohort.csv``'s 33), though no whole stands beside the share (leaks17), or
    of the cohort of the datasets the job read (`CheckContext.cohort_size`, leaks18).
    The other files are read only when this file has a share without its whole."""
    if not any(parse_share_key(k) is not None for k in mine):
        return []
    threshold = policy.sdc.threshold
    wholes = _request_wholes(mine, display_name, policy, context)
    found = list(small_shares(mine, wholes, threshold))
    if not found:
        return []
    files = sorted({f for _, f in found})
    return [
        CheckResult(
            check="sdc:request_share",
            outcome="flag",
            reason=f"{count(len(found), 'percentage')} in this file "
            f"{agree(len(found), 'is', 'are')} a count below the threshold of {threshold} "
            "of a total this request states (in this file or another of its files) or of the number of "
            "patients in the datasets the job read: the share and the total give the count back; "
            "compare the files",
            # the other files' names are the job's words: reviewers only
            evidence={"threshold": threshold, "count": len(found), "reviewer_only": {"files": files[:20]}},
        )
    ]


def _flow_differences(
    mine: Mapping[str, float], policy: Policy, stated: Mapping[str, list[Released]] | None = None
) -> list[CheckResult]:
    """`sdc:flow_differencing`: two counts of this file named for different stages of the
    study's flow and otherwise alike (``patients_screened 35``, ``patients_enrolled 33``; rows
    ``enrolled``/``analysed`` of a ``patients`` column) that differ by less than the threshold:
    the difference is the number of people who left between the stages, a small count no cell
    states (leaks20). Counts of groups side by side (sites, arms: ``n_enrolled`` of site A and
    of site B) are one stage: their difference counts no one. Since airlock round 18 also a
    count of this file against one of another stage in another file of the request
    (``stated``): the flow split into one table per stage."""
    threshold = policy.sdc.threshold
    alike = _stage_counts(mine.items())
    gaps = sum(
        1
        for counts in alike.values()
        for (s1, a), (s2, b) in itertools.combinations(counts.items(), 2)
        if s1 != s2 and 0.5 <= abs(a - b) < threshold
    )
    if gaps or not stated:
        return flow_differencing(
            gaps, ("pair of counts in this file names", "pairs of counts in this file name"), threshold
        )
    theirs = _stage_counts((key, r.value) for key, found in stated.items() for r in found)
    across = sum(
        1
        for rest, counts in alike.items()
        for s1, a in counts.items()
        for s2, b in theirs.get(rest, {}).items()
        if s1.isdisjoint(s2) and 0.5 <= abs(a - b) < threshold
    )
    return flow_differencing(
        across,
        (
            "pair of counts, in this file and another file of this request, names",
            "pairs of counts, in this file and another file of this request, name",
        ),
        threshold,
    )


def _stage_counts(pairs: Iterable[tuple[str, float]]) -> dict[str, dict[frozenset[str], float]]:
    """Counts named for stages of the flow, by the rest of their name (``patients_enrolled``:
    ``patients_``) and their stages."""
    alike: dict[str, dict[frozenset[str], float]] = {}
    for key, value in pairs:
        if parse_share_key(key) is not None or key.startswith("sum:"):
            continue
        words = re.split(r"([^a-z]+)", key.lower())
        stages = frozenset(w for w in words if w in FLOW_STAGES)
        if stages:
            rest = "".join(w for w in words if w not in FLOW_STAGES)
            alike.setdefault(rest, {}).setdefault(stages, value)
    return alike


def _other_files(
    mine: Mapping[str, float], display_name: str, policy: Policy, context: CheckContext
) -> dict[str, list[Released]]:
    """The counts of the request's other files (at most `MAX_OTHER_FILES`), by name, each with
    its file's name; files named for a disjoint group of this one's (``train_``/``val_``,
    ``fold1``/``fold2``: `file_groups`) are left out (leaks21). Read once for
    `_request_differences` and `_flow_differences`."""
    if len(context.request_paths) < 2 or not mine:
        return {}
    others = [
        (n, p)
        for n, p in context.request_paths.items()
        if n != display_name and not disjoint_groups(display_name, n)
    ][:MAX_OTHER_FILES]
    stated: dict[str, list[Released]] = {}
    for name, path in others:
        for key, value in aggregates_of(path, name, policy, context).items():
            stated.setdefault(key, []).append(Released(value, name))
    return stated


def _request_differences(
    mine: Mapping[str, float], stated: Mapping[str, list[Released]], policy: Policy
) -> list[CheckResult]:
    """`sdc:differencing_request`: a count of this file a few off a count of the same name in
    another file of the same request (leaks20): the same table twice, one row changed
    (``site E 37`` in one file, ``35`` in the other), gives back the two people between them as
    a table released twice across requests does (`differences`, the same rule). Files named
    for disjoint groups (``train_``/``val_``, ``fold1``/``fold2``: `file_groups`) are no pair
    (leaks21)."""
    threshold = policy.sdc.threshold
    found = list(differences(mine, stated, threshold)) if stated else []
    if not found:
        return []
    files = sorted({f for _, f in found})
    return [
        CheckResult(
            check="sdc:differencing_request",
            outcome="flag",
            reason=f"{count(len(found), 'count')} in this file "
            f"{agree(len(found), 'differs', 'differ')} by less than the "
            f"threshold of {threshold} from counts of the same name in {count(len(files), 'other file')} of "
            "this request: subtracting one "
            "from the other may give back individuals; compare the files",
            # the other files' names are the job's words: reviewers only, as sdc:request_share's
            evidence={"threshold": threshold, "count": len(found), "reviewer_only": {"files": files[:20]}},
        )
    ]


def _request_wholes(
    mine: Mapping[str, float], display_name: str, policy: Policy, context: CheckContext
) -> dict[str, list[Released]]:
    """The counts this file and the request's other files state (bounded), as wholes a share
    may be of; each tagged with the file that states it ("this file" for its own)."""
    others = [(n, p) for n, p in context.request_paths.items() if n != display_name][:MAX_OTHER_FILES]
    stated = [("this file", mine), *((name, aggregates_of(p, name, policy, context)) for name, p in others)]
    wholes: dict[str, list[Released]] = {}
    for source, aggregates in stated:
        for key, value in aggregates.items():
            if parse_share_key(key) is None:
                wholes.setdefault(key, []).append(Released(value, source))
    if context.cohort_size:
        # the datasets' own cohort, which no output need state (leaks18): after the stated
        # wholes, which win where both fit
        wholes.setdefault("n@total", []).append(Released(float(context.cohort_size), DATASET_COHORT))
    return wholes


def _release_flag(
    check: str, found: list[tuple[str, str]], finding: tuple[str, str], consequence: str, threshold: int
) -> list[CheckResult]:
    """One flag for what ``found`` pairs (a figure, the earlier request that released what
    recovers it) with the earlier releases: the reason names only the first request's id."""
    if not found:
        return []
    requests = sorted({r for _, r in found})
    others = f" and {count(len(requests) - 1, 'other')}" if len(requests) > 1 else ""
    return [
        CheckResult(
            check=check,
            outcome="flag",
            reason=f"{count(len(found), *finding)} (request {requests[0]}{others}): {consequence}; "
            "compare the two releases",
            evidence={"threshold": threshold, "released_requests": requests[:20], "count": len(found)},
        )
    ]


def small_shares(
    mine: Mapping[str, float], released: Mapping[str, list[Released]], threshold: int
) -> Iterator[tuple[str, str]]:
    """(key, earlier request id) for each share of ``mine`` that, of the total the project
    released for its row (``n@site_b`` for ``died_pct`` of site B, the grand total for the
    whole cohort's), is a whole count under the threshold: ``withdrawn_pct 3.0`` after a
    released total of 100 is 3 people, though no count of them was ever released (leaks16).
    Only where exactly one whole count fits the share as stated (`shares.share_count`), and
    not for a metric's share (``sensitivity_pct``)."""
    denominators: dict[str, list[Released]] = {}
    for key, values in released.items():
        if parse_share_key(key) is None:
            denominators.setdefault(canonical_key(key), []).extend(values)
    for key, value in mine.items():
        share = parse_share_key(key)
        if share is None:
            continue
        decimals, counted = share
        column, _, label = canonical_key(counted).partition("@")
        if is_metric(counted.partition("@")[0]):
            continue
        of = "n@total" if column == "n" else f"n@{label}"
        hit = next(
            (
                r.request_id
                for r in denominators.get(of, [])[:MAX_PAIRS]
                if (k := share_count(value, decimals, r.value)) is not None and 0 < k < threshold
            ),
            None,
        )
        if hit is not None:
            yield key, hit


def differences(
    mine: Mapping[str, float], released: Mapping[str, list[Released]], threshold: int
) -> Iterator[tuple[str, str]]:
    """(key, earlier request id) for each of ``mine`` within (0, threshold) of a released value
    of the same key, or of the same key once both column names are canonical (`canonical_key`);
    and (leaks14b) for each share that is a few people off a released count of the same total,
    or count a few off a released share (`shares.share_differs`)."""
    canonical: dict[str, list[Released]] = {}
    shares: dict[str, list[tuple[int, Released]]] = {}
    for key, values in released.items():
        if (share := parse_share_key(key)) is not None:
            shares.setdefault(canonical_key(share[1]), []).extend((share[0], v) for v in values)
        else:
            canonical.setdefault(canonical_key(key), []).extend(values)
    totals = _totals(mine, canonical)
    whole = {r.value for r in canonical.get("n@total", [])}
    for key, value in mine.items():
        if key.startswith("sum:"):
            # a breakdown by a dimension the project released whole (its parts summed to a
            # released total): the new parts' sum a few short of it leaves a few out (leaks15)
            hit = next(
                (
                    e.request_id
                    for e in released.get(key, [])
                    if e.value in whole and 0.5 <= abs(value - e.value) < threshold
                ),
                None,
            )
            if hit is not None:
                yield key, hit
            continue
        if (share := parse_share_key(key)) is not None:
            decimals, counted = share
            name = canonical_key(counted)
            hit = next(
                (
                    c.request_id
                    for c in canonical.get(name, [])[:MAX_PAIRS]
                    for t in totals(name)
                    if share_differs(value, decimals, c.value, t, threshold)
                ),
                None,
            )
            if hit is not None:
                yield key, hit
            continue
        found = next(
            (
                e.request_id
                for e in [*released.get(key, []), *canonical.get(canonical_key(key), [])]
                if 0.5 <= abs(value - e.value) < threshold
            ),
            None,
        )
        if found is None:
            name = canonical_key(key)
            found = next(
                (
                    e.request_id
                    for decimals, e in shares.get(name, [])[:MAX_PAIRS]
                    for t in totals(name)
                    if share_differs(e.value, decimals, value, t, threshold)
                ),
                None,
            )
        if found is not None:
            yield key, found


def _totals(
    mine: Mapping[str, float], canonical: Mapping[str, list[Released]]
) -> Callable[[str], list[float]]:
    """The people a count of ``name`` (canonical) is a share of: the row's total (``n@site_a``
    for ``relapsed@site_a``), or the grand total for a row's own total (``n@site_a``), as this
    request states it or the project released it."""
    mine_canonical: dict[str, list[float]] = {}
    for key, value in mine.items():
        if parse_share_key(key) is None:
            mine_canonical.setdefault(canonical_key(key), []).append(value)

    def of(name: str) -> list[float]:
        column, _, label = name.partition("@")
        denominator = "n@total" if column == "n" else f"n@{label}"
        found = [*mine_canonical.get(denominator, []), *(r.value for r in canonical.get(denominator, []))]
        return list(dict.fromkeys(found))[:MAX_PAIRS]

    return of
