"""Shares of a subgroup whose size is said only in prose above their table (leaks17).

A report writes "Of the 12 women:" or "## Women (n = 12)" and then a table of percentages
with no count column: ``relapsed | 25.0`` is 3 of those 12 women, although no cell states a
count and no count column gives the table a denominator. The table readers judge each table
on its own, so the size in the sentence before it was never joined to its shares.

`table_subgroup_shares` pairs each Markdown or whitespace-aligned table with the size stated
on one of the few lines just above it (a people noun after "of"/"among"/"in", or an
``(n = 12)``), and reads the table's share columns (``%``, ``pct``, ``relapsed (%)``: as
`shares.pct_column` names them) as shares of that size. A share that is a whole count under
the threshold (exactly one whole count fits it as written: `shares.share_count`) is a
finding; a metric's row or column (``dice``, ``sensitivity``: `shares.is_metric`) is not.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator

from egress_review.checks.shares import NUMERIC_CELL, is_metric, pct_column, pct_value, share_count
from egress_review.checks.text_counts import PEOPLE_WORDS

LINES_ABOVE = 3  # the size's line may be this far above the table's header (blank lines between)
MAX_SIZES = 50  # sizes read per text
MAX_WINDOW_LINES = 200  # lines after a size read for its table
MAX_HEAD_CHARS = 4096  # characters after a size in which its table must start


# "of the 12 women", "among 16 smokers", and a heading's or caption's "(n = 12)" at its end
_SIZE = re.compile(
    r"\b(?:of|among|in)[ \t]+(?:the[ \t]+|all[ \t]+|our[ \t]+)?(?P<d>\d{1,7})[ \t]+"
    rf"(?:[A-Za-z][\w\-]*[ \t]+){{0,2}}?(?:{PEOPLE_WORDS})\b"
    r"|[(\[,][ \t]*[nN][ \t]*=[ \t]*(?P<n>\d{1,7})[ \t]*[)\],]?[ \t]*:?[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)


def table_subgroup_shares(text: str, threshold: int) -> list[tuple[int, str]]:
    """(the table's offset in ``text``, "25.0 % of 12") for each share in a table that is a count under
    ``threshold`` of the size stated just above the table. The sizes are found first (one
    pass of a regular expression); only the few lines after each are read for a table."""
    from egress_review.checks.text_tables import aligned_tables, markdown_tables

    lower = text.lower()
    if "%" not in text and "pct" not in lower and "percent" not in lower and "proportion" not in lower:
        return []
    found: list[tuple[int, str]] = []
    for m in itertools.islice(_SIZE.finditer(text), MAX_SIZES):
        line_start = text.rfind("\n", 0, m.start()) + 1
        line_end = text.find("\n", m.end())
        if "|" in text[line_start : m.start()] or (line_end != -1 and "|" in text[m.end() : line_end]):
            continue  # a table's row states its own cells, not a size
        if line_end == -1:
            continue
        size = int(m.group("d") or m.group("n"))
        head = text[line_end + 1 : line_end + 1 + MAX_HEAD_CHARS].split("\n", LINES_ABOVE + 3)[
            : LINES_ABOVE + 3
        ]
        if not _starts_table("\n".join(head)):
            continue  # most sizes (a log's "(n = 33)" on every line) have no table below them
        window = text[line_end + 1 :].split("\n", MAX_WINDOW_LINES)[:MAX_WINDOW_LINES]
        below = "\n".join(window)
        for first, rows in markdown_tables(below) or aligned_tables(below):
            between = window[: first - 1]
            if first > LINES_ABOVE or any(b.strip() and ("|" in b or _SIZE.search(b)) for b in between):
                continue  # not right below the size: another table's, or another size's
            offset = line_end + 1 + sum(len(w) + 1 for w in between)
            found.extend((offset, share) for share in _small_shares(rows, size, threshold))
    return list(dict.fromkeys(found))


def _starts_table(head: str) -> bool:
    """Whether a table with a share column starts within `LINES_ABOVE` lines of ``head``."""
    from egress_review.checks.text_tables import aligned_tables, markdown_tables

    return any(
        first <= LINES_ABOVE and any(pct_column(h) is not None for h in rows[0])
        for first, rows in markdown_tables(head) or aligned_tables(head)
    )


def _small_shares(rows: list[list[str]], size: int, threshold: int) -> Iterator[str]:
    """The cells of a table's share columns that are a count under ``threshold`` of ``size``."""
    if size <= 0:
        return
    header = rows[0]
    columns = [c for c, h in enumerate(header) if pct_column(h) is not None and not is_metric(h, header)]
    for row in rows[1:]:
        labels = [cell for cell in row if cell and not NUMERIC_CELL.match(cell)]
        if any(is_metric(label) for label in labels):
            continue  # a metric's row ("dice | 91.7"): a share of cases' scores, not people
        for c in columns:
            parsed = pct_value(row[c], header[c]) if c < len(row) else None
            whole = share_count(parsed[0], parsed[1], size) if parsed is not None else None
            if whole is not None and 0 < whole < threshold:
                yield f"{row[c]} % of {size}"
