"""The panel's table pages, landing on the SDC-named cell, capped evidence and readable sizes,
on real CSV, JSON and Parquet bytes (no browser)."""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq

from egress_review.panel import preview


def csv_bytes(columns: int, rows: int) -> bytes:
    header = ",".join(f"c{i}" for i in range(columns))
    body = "\n".join(",".join(f"{r}.{c}" for c in range(columns)) for r in range(rows))
    return f"{header}\n{body}\n".encode()


def test_a_wide_table_is_paged_by_rows_and_columns() -> None:
    data = csv_bytes(columns=130, rows=70)
    first = preview.table(data)
    assert (first.total_columns, first.column_pages, first.pages) == (130, 4, 3)
    assert len(first.header) == preview.MAX_TABLE_COLUMNS and len(first.rows) == preview.TABLE_PAGE_ROWS
    last = preview.table(data, page=2, column_page=3)
    assert last.header == [f"c{i}" for i in range(120, 130)]  # the last 10 columns
    assert last.first_row == 2 + 2 * preview.TABLE_PAGE_ROWS and last.rows[0][0] == "50.120"
    assert last.hidden_columns == 120
    beyond = preview.table(data, page=99, column_page=99)  # clamped, never empty
    assert (beyond.page, beyond.column_page) == (2, 3)


def test_without_a_page_asked_for_the_table_opens_where_the_named_cell_is() -> None:
    data = csv_bytes(columns=130, rows=70)
    focus = preview.Focus(row=61, column="c95")  # file row 61: the 60th data row
    t = preview.table(data, None, None, focus)
    assert t.page == 2 and t.column_page == 2
    assert t.first_row <= 61 < t.first_row + len(t.rows) and "c95" in t.header
    asked = preview.table(data, 0, 0, focus)  # an explicit page wins
    assert (asked.page, asked.column_page) == (0, 0)


def test_focus_is_the_first_named_cell() -> None:
    checks = [
        {
            "check": "sdc:threshold",
            "outcome": "block",
            "evidence": {"cells": [{"row": 40, "column": "n"}, {"row": 7, "column": "deaths"}]},
        },
        {"check": "identifiers", "outcome": "flag", "evidence": {"cells": [{"row": 2, "column": "id"}]}},
    ]
    cells = preview.highlighted_cells(checks)
    assert cells == {(40, "n"), (7, "deaths")}  # only SDC rules name cells to highlight
    assert preview.focus_of(cells) == preview.Focus(7, "deaths")
    assert preview.focus_of(set()) is None


def test_json_and_parquet_tables_are_paged_the_same_way() -> None:
    records = [{f"f{c}": r * 1000 + c for c in range(90)} for r in range(30)]
    (t,) = preview.structured_tables(
        json.dumps(records).encode(), "json", None, None, preview.Focus(28, "f85")
    )
    assert t.column_page == 2 and t.page == 1 and "f85" in t.header
    buf = io.BytesIO()
    pq.write_table(pa.table({f"f{c}": [r * 1000 + c for r in range(30)] for c in range(90)}), buf)
    (p,) = preview.structured_tables(buf.getvalue(), "parquet", 0, 1)
    assert p.header[0] == "f40" and p.total_columns == 90


def test_evidence_is_cut_and_sizes_read_at_a_glance() -> None:
    small = {"cells": [{"row": 2, "column": "n"}]}
    assert json.loads(preview.evidence_json(small)) == small
    huge = {"cells": [{"row": r, "column": "n"} for r in range(5000)]}
    text = preview.evidence_json(huge)
    assert len(text) < preview.MAX_EVIDENCE_CHARS + 80 and "more characters not shown" in text
    assert [preview.human_size(n) for n in (0, 1023, 1536, 5 * 1024**2, 3 * 1024**3)] == [
        "0 bytes",
        "1023 bytes",
        "1.5 KiB",
        "5.0 MiB",
        "3.0 GiB",
    ]
