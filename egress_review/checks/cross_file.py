"""Differencing across the files of one request (leaks11).

A table that suppresses one small cell (``C,<10``) and leaves out its total is safe on its
own; the same request's other file that states the total (``all sites,100``, or
``{"patients": 81}`` in a summary) gives the cell back by subtraction. Each file's checks
run on their own, so this looks at the request's other small table files (CSV/TSV, JSON,
YAML, the frozen copies in `CheckContext.request_paths`) only when the file being checked
has suppressed cells in a count column: a total of the same name there (a one-row table, a
row labelled ``Total``/``All``..., or a top-level JSON/YAML value) is an equation for the
hidden cells. One hidden cell that the total gives back under the threshold, or hidden
cells that add up to under it, is a `sdc:differencing` finding like the one within a table.

Bounded: at most `MAX_OTHER_FILES` other files of at most `MAX_OTHER_BYTES` each are read,
and only when the file has a suppressed count cell. Differencing against earlier requests
is left to the reviewers, who see the project's earlier releases.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from egress_review.checks.derived_counts import _SUPPRESSED, _TOTAL, _count_like
from egress_review.checks.model import CheckContext, CheckResult, action_outcome
from egress_review.checks.table_readers import cell_text, parse_json
from egress_review.checks.tables import Table, _cell, parse_table
from tre.plural import agree, count
from tre.policy import Policy

MAX_OTHER_FILES = 20
MAX_OTHER_BYTES = 1024 * 1024
_NUMBER = re.compile(r"^[+-]?\d+(?:\.\d+)?$")
_TABLE_SUFFIXES = (".csv", ".tsv", ".json", ".yaml", ".yml")


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")


def _hidden_columns(table: Table, policy: Policy) -> dict[str, tuple[float, list[int]]]:
    """Count-like columns with suppressed cells and no total row: name -> (sum of the shown
    cells, rows of the hidden ones)."""
    out: dict[str, tuple[float, list[int]]] = {}
    if any(_TOTAL.match(_cell(r, c)) for r in table.rows for c in range(len(table.header))):
        return out  # a table with its own total: `derived_counts` solves it
    for col in _count_like(table, policy.sdc):
        cells = [_cell(r, col) for r in table.rows]
        hidden = [i for i, v in enumerate(cells) if _SUPPRESSED.match(v)]
        if not hidden or not all(_NUMBER.match(v) or i in hidden or not v for i, v in enumerate(cells)):
            continue
        shown = sum(float(v) for i, v in enumerate(cells) if i not in hidden and v)
        out[_norm(table.header[col])] = (shown, hidden)
    return out


def _totals(path: Path, name: str, policy: Policy) -> Iterator[tuple[str, float]]:
    """(column name, total) stated by another file of the request."""
    try:
        text = path.read_bytes()[:MAX_OTHER_BYTES].decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return
    lower = name.lower()
    if lower.endswith((".csv", ".tsv")):
        table = parse_table(text, "\t" if lower.endswith(".tsv") else _delimiter(text), policy.sdc)
        for row in table.rows:
            labelled = len(table.rows) == 1 or any(_TOTAL.match(_cell(row, c)) for c in range(len(row)))
            if labelled:
                for col, head in enumerate(table.header):
                    if _NUMBER.match(_cell(row, col)):
                        yield _norm(head), float(_cell(row, col))
        return
    doc: Any
    try:
        if lower.endswith(".json"):
            doc = parse_json(text)
        else:
            import yaml

            doc = yaml.safe_load(text) if "&" not in text and "*" not in text else None
    except Exception:  # noqa: BLE001 - an unreadable file states no total; its own checks judge it
        return
    if isinstance(doc, dict):
        for key, value in list(doc.items())[:1000]:
            if isinstance(value, int | float) and not isinstance(value, bool):
                yield _norm(str(key)), float(cell_text(value))
            elif isinstance(value, dict) and _TOTAL.match(str(key)):
                for inner, v in list(value.items())[:1000]:
                    if isinstance(v, int | float) and not isinstance(v, bool):
                        yield _norm(str(inner)), float(v)


def _delimiter(text: str) -> str:
    first = text.split("\n", 1)[0]
    return ";" if first.count(";") > first.count(",") else ("\t" if "\t" in first else ",")


def check_across_files(
    table: Table, display_name: str, policy: Policy, context: CheckContext
) -> list[CheckResult]:
    """`sdc:differencing` findings for ``table``'s suppressed cells given back by a total in
    another file of the same request."""
    if context.depth or len(context.request_paths) < 2:
        return []
    hidden = _hidden_columns(table, policy)
    if not hidden:
        return []
    found: list[dict[str, object]] = []
    others = [(n, p) for n, p in context.request_paths.items() if n != display_name]
    for other, path in sorted(others)[:MAX_OTHER_FILES]:
        if not other.lower().endswith(_TABLE_SUFFIXES):
            continue
        try:
            if path.stat().st_size > MAX_OTHER_BYTES:
                continue
        except OSError:
            continue
        for column, total in _totals(path, other, policy):
            if column not in hidden:
                continue
            shown, rows = hidden[column]
            rest = total - shown
            if 0.5 <= rest < policy.sdc.threshold - 0.5:
                found.append(
                    {"row": rows[0] + 2, "column": column, "other_file": other, "hidden_cells": len(rows)}
                )
    if not found:
        return []
    first = found[0]
    return [
        CheckResult(
            check="sdc:differencing",
            outcome=action_outcome(policy.sdc.threshold_action),
            reason=f"{count(len(found), 'suppressed cell')} can be recovered, alone or together, "
            f"by subtracting the "
            f"shown cells from a total stated in another file of this request, and "
            f"{agree(len(found), 'is', 'are')} below the threshold "
            f"of {policy.sdc.threshold} (e.g. row {first['row']}, column {first['column']!r})",
            evidence={"threshold": policy.sdc.threshold, "cells": found[:20], "across_files": True},
        )
    ]
