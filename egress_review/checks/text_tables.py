"""Tables written inside text: Markdown (and org-mode) pipe tables, HTML and LaTeX tables,
and whitespace-aligned tables such as a pandas DataFrame printed by ``print(df)``.

A count table does not have to be a CSV to be a table: a README, a report or a notebook
export holds it as ``| site | n |`` rows or as ``<table>`` markup. Both are read into rows of
cells (the standard library's HTML parser; nothing is rendered or fetched) and handed to the
same SDC rules as any other table.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

MAX_TABLES = 20
MAX_ROWS = 20_000
# org-mode joins the rule's columns with "+": |-------+---|
_MD_RULE = re.compile(r"^\|?\s*:?-{2,}:?\s*([|+]\s*:?-{2,}:?\s*)*\|?$")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?%?$")
MAX_ALIGNED_CHARS = 2 * 1024 * 1024


def _md_cells(line: str) -> list[str]:
    body = line.strip()
    if body.startswith("|"):
        body = body[1:]
    if body.endswith("|"):
        body = body[:-1]
    return [c.strip() for c in body.split("|")]


def markdown_tables(text: str) -> list[tuple[int, list[list[str]]]]:
    """(first line, rows) of each pipe table: a header row, a ``---`` rule, then rows."""
    lines = text.splitlines()
    out: list[tuple[int, list[list[str]]]] = []
    i = 0
    while i + 1 < len(lines) and len(out) < MAX_TABLES:
        if "|" in lines[i] and _MD_RULE.match(lines[i + 1].strip()):
            header = _md_cells(lines[i])
            rows = [header]
            j = i + 2
            while j < len(lines) and "|" in lines[j] and len(rows) < MAX_ROWS:
                rows.append(_md_cells(lines[j]))
                j += 1
            if len(header) >= 2 and len(rows) >= 2:
                out.append((i + 1, rows))
            i = j
        else:
            i += 1
    return out


MAX_SPAN = 100


def _span(raw: str | None) -> int:
    """A rowspan/colspan attribute as a count of cells (1 when absent or nonsense, bounded)."""
    try:
        return min(MAX_SPAN, max(1, int((raw or "1").strip())))
    except ValueError:
        return 1


def _expand_spans(rows: list[list[str]], spans: list[list[tuple[int, int]]]) -> list[list[str]]:
    """The grid a browser lays out: a cell with ``colspan=2`` fills two columns, one with
    ``rowspan=2`` the same column of the next row too (leaks11: ``<td rowspan=2>A</td>``
    shifted the next row's counts under the wrong header, and the small count passed)."""
    grid: list[list[str]] = []
    pending: dict[tuple[int, int], str] = {}  # (row, column) -> text carried down by a rowspan
    for r, (row, row_spans) in enumerate(zip(rows, spans, strict=False)):
        out: list[str] = []
        col = 0
        for text, (rowspan, colspan) in zip(row, row_spans, strict=False):
            while (r, col) in pending:
                out.append(pending.pop((r, col)))
                col += 1
            for c in range(colspan):
                out.append(text)
                for below in range(1, rowspan):
                    if r + below < len(rows):
                        pending[(r + below, col + c)] = text
            col += colspan
        while (r, col) in pending:
            out.append(pending.pop((r, col)))
            col += 1
        grid.append(out)
    return grid


def merge_header_rows(rows: list[list[str]], head_rows: int | None = None) -> list[list[str]]:
    """A table with a header of two or three rows (a spanning ``Patients`` over ``Male`` and
    ``Female``) gets one header row, each column named bottom-up (``Male Patients``), so a
    count named by the spanning cell still names the columns under it. Without ``head_rows``
    (known for HTML ``<th>`` rows), leading rows without a number are the header."""
    if head_rows is None:
        head_rows = 0
        while head_rows < min(3, len(rows) - 1) and not any(
            _NUMBER.match(c.strip()) for c in rows[head_rows]
        ):
            head_rows += 1
    if head_rows <= 1:
        return rows
    width = max(len(r) for r in rows[:head_rows])
    header = []
    for c in range(width):
        parts: list[str] = []
        for r in reversed(range(head_rows)):
            cell = rows[r][c].strip() if c < len(rows[r]) else ""
            if cell and cell not in parts:
                parts.append(cell)
        header.append(" ".join(parts))
    return [header, *rows[head_rows:]]


class _TableParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[list[list[str]]] = []
        self.spans: list[list[list[tuple[int, int]]]] = []
        self.head_rows: list[list[bool]] = []
        self._depth = 0
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._span = (1, 1)
        self._spans: list[tuple[int, int]] = []
        self._heads: list[bool] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._depth += 1
            if self._depth == 1 and len(self.tables) < MAX_TABLES:
                self.tables.append([])
                self.spans.append([])
                self.head_rows.append([])
        elif tag == "tr" and self._depth == 1:
            self._row = []
            self._spans = []
            self._heads = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
            found = dict(attrs)
            self._span = (_span(found.get("rowspan")), _span(found.get("colspan")))
            self._heads.append(tag == "th")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._spans.append(self._span)
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if self._row and self.tables and len(self.tables[-1]) < MAX_ROWS:
                self.tables[-1].append(self._row)
                self.spans[-1].append(self._spans)
                self.head_rows[-1].append(all(self._heads))
            self._row = None
        elif tag == "table":
            self._depth = max(0, self._depth - 1)

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def html_tables(text: str) -> list[list[list[str]]]:
    """Rows of each top-level ``<table>`` (cells as their text)."""
    if "<table" not in text.lower():
        return []
    parser = _TableParser()
    parser.feed(text)
    parser.close()
    out = []
    for rows, spans, heads in zip(parser.tables, parser.spans, parser.head_rows, strict=False):
        grid = _expand_spans(rows, spans)
        leading = next((i for i, head in enumerate(heads) if not head), len(heads))
        grid = merge_header_rows(grid, leading if leading > 1 else 1)
        if len(grid) >= 2 and max(len(r) for r in grid) >= 2:
            out.append(grid)
    return out


_TABULAR = re.compile(
    r"\\begin\{(?P<env>tabular\*?|tabularx|longtable\*?|tabulary|array)\}(?P<body>.*?)\\end\{(?P=env)\}",
    re.DOTALL,
)
_LATEX_RULES = re.compile(
    r"\\(?:hline|toprule|midrule|bottomrule|addlinespace|endfirsthead|endhead|endfoot|endlastfoot|"
    r"cline\{[^}]*\}|cmidrule(?:\([^)]*\))?\{[^}]*\}|caption\{[^{}]*\}|label\{[^{}]*\})"
)
_HEAD_RULE = re.compile(r"^\s*\\(?:midrule|hline)")
_LATEX_COMMAND = re.compile(r"\\[a-zA-Z]+\*?(?:\[[^\]]*\])?\{([^{}]*)\}")
# \multicolumn{2}{c}{Patients} spans two columns; \multirow{2}{*}{A} is its text in one
_MULTICOLUMN = re.compile(r"^\s*\\multicolumn\{(\d{1,3})\}\{[^{}]*\}\{(.*)\}\s*$", re.DOTALL)
_MULTIROW = re.compile(r"\\multirow\*?(?:\[[^\]]*\])?\{[^{}]*\}(?:\[[^\]]*\])?\{[^{}]*\}")


def _latex_cell(cell: str) -> str:
    cell = _MULTIROW.sub("", cell)
    for _ in range(4):  # \textbf{\emph{3}} -> 3
        cell = _LATEX_COMMAND.sub(r"\1", cell)
    return cell.replace("\\&", "&").replace("{", "").replace("}", "").strip()


def _latex_row(line: str) -> list[str]:
    """One row's cells, a ``\\multicolumn{k}`` cell repeated over its k columns (leaks11:
    the spanning cell shifted every column after it)."""
    cells: list[str] = []
    for raw in re.split(r"(?<!\\)&", line):
        span = _MULTICOLUMN.match(raw)
        if span:
            cells.extend([_latex_cell(span.group(2))] * min(MAX_SPAN, int(span.group(1))))
        else:
            cells.append(_latex_cell(raw))
    return cells


def latex_tables(text: str) -> list[list[list[str]]]:
    """Rows of each LaTeX ``tabular`` (also ``tabular*``, ``tabularx``, ``longtable``; redteam9:
    counts in a paper's table passed unread); the column specification is dropped, rules,
    captions and longtable's head/foot markers are ignored, a header of several rows (a
    ``\\multicolumn`` over the columns it names) becomes one."""
    if "\\begin{" not in text:
        return []
    out: list[list[list[str]]] = []
    for match in _TABULAR.finditer(text):
        body = match.group("body")
        # [t]{lrr}; tabular* and tabularx take a width first: {\textwidth}{lrr}
        body = re.sub(r"^\s*(?:\[[^\]]*\]\s*)?(?:\{(?:[^{}]|\{[^{}]*\})*\}\s*){1,2}", "", body, count=1)
        lines = [
            line for line in re.split(r"\\\\(?:\[[^\]]*\])?", body) if _LATEX_RULES.sub("", line).strip()
        ]
        # the rows above the first rule under a row (\midrule, \hline) are the header, years too
        ruled = next((i for i, line in enumerate(lines[1:], 1) if _HEAD_RULE.search(line)), None)
        rows = [_latex_row(_LATEX_RULES.sub("", line)) for line in lines]
        if len(rows) >= 2 and max(len(r) for r in rows) >= 2:
            out.append(merge_header_rows(rows[:MAX_ROWS], ruled if ruled and ruled <= 3 else None))
        if len(out) >= MAX_TABLES:
            break
    return out


# a number with a space between its thousands ("1 204", SI style): one field, not two, where
# the line has more fields than the header (leaks15: the row of "1 204" ended the table, and
# its small cell below was never read)
_SPACED_THOUSANDS = re.compile(r"(?<![\w.,])\d{1,3}(?:[ \u00a0\u202f]\d{3})+(?![\w.,])")


def _join_thousands(line: str) -> str:
    return _SPACED_THOUSANDS.sub(lambda m: re.sub(r"\s", "", m.group(0)), line)


def aligned_tables(text: str) -> list[tuple[int, list[list[str]]]]:
    """(first line, rows) of each whitespace-aligned table: a header line of words, then at
    least two lines with as many fields (or one more: a pandas index), some of them numbers.

    ``print(df)`` writes a count table this way, and it passed as plain text (redteam9). The
    caller applies the SDC rules only when the header names a count column, so
    aligned log lines are not read as tables of unknown numbers."""
    lines = text[:MAX_ALIGNED_CHARS].splitlines()
    out: list[tuple[int, list[list[str]]]] = []
    i = 0
    while i + 2 < len(lines) and len(out) < MAX_TABLES:
        header = lines[i].split()
        if len(header) < 2 or any(_NUMBER.match(h) for h in header):
            i += 1
            continue
        rows: list[list[str]] = []
        j = i + 1
        if j < len(lines) and not lines[j].strip():
            j += 1  # scikit-learn's classification report leaves a blank line under its header
        index_name = lines[j].split() if j < len(lines) else []
        if len(index_name) == 1 and not _NUMBER.match(index_name[0]):
            j += 1  # pandas prints the index's name on a line of its own (lifelines' `event_at`)
        labelled = False  # rows opened by a label the header does not name (airlock round 18)
        while j < len(lines) and len(rows) < MAX_ROWS:
            fields = lines[j].split()
            if len(fields) == len(header) + 1 and _NUMBER.match(fields[0]):
                fields = fields[1:]  # the DataFrame's index
            elif (
                len(fields) == len(header) + 1
                and (labelled or not rows)
                and not _SPACED_THOUSANDS.search(lines[j])
            ):
                # a string index or a report's class name: "malignant 0.60 0.50 0.55 3"
                labelled = True
                rows.append(fields)
                j += 1
                continue
            if len(fields) > len(header) and _SPACED_THOUSANDS.search(lines[j]):
                fields = _join_thousands(lines[j]).split()
                if len(fields) == len(header) + 1 and _NUMBER.match(fields[0]):
                    fields = fields[1:]
            if len(fields) != len(header):
                break
            rows.append(fields)
            j += 1
        if labelled and any(len(r) != len(header) + 1 for r in rows):
            rows = []  # labelled and unlabelled rows mixed: no one table
        if len(rows) >= 2 and any(_NUMBER.match(c) for r in rows for c in r):
            out.append((i + 1, [["label", *header] if labelled else header, *rows]))
            i = j
        else:
            i += 1
    return out


# a row framed by pipes (org-mode without a rule, a reStructuredText grid's row) and the
# rules a grid draws between rows: +-----+---+, +=====+===+, |-----+---|
_FRAMED_ROW = re.compile(r"^\s*\|.*\|\s*$")
_GRID_RULE = re.compile(r"^\s*[+|][-=+:| ]*[-=][-=+:| ]*[+|]\s*$")


def framed_tables(text: str) -> list[tuple[int, list[list[str]]]]:
    """(first line, rows) of each block of pipe-framed rows without a Markdown rule under its
    header: an org-mode table written without ``|---+---|``, a reStructuredText grid table
    (its ``+---+`` and ``+===+`` rules dropped; a cell over several lines reads as several
    rows). Leaks11: both passed unread. Markdown tables are `markdown_tables`'s."""
    lines = text.splitlines()
    out: list[tuple[int, list[list[str]]]] = []
    i = 0
    while i < len(lines) and len(out) < MAX_TABLES:
        if not (_FRAMED_ROW.match(lines[i]) or _GRID_RULE.match(lines[i])):
            i += 1
            continue
        j = i
        rows: list[list[str]] = []
        markdown = False
        grid = (
            lines[i].lstrip().startswith("+")
        )  # a reStructuredText grid: the lines between two rules are one row
        joined = False
        while j < len(lines) and (_FRAMED_ROW.match(lines[j]) or _GRID_RULE.match(lines[j])):
            if _GRID_RULE.match(lines[j]):
                markdown = markdown or (len(rows) == 1 and bool(_MD_RULE.match(lines[j].strip())))
                joined = False
            elif len(rows) < MAX_ROWS:
                cells = _md_cells(lines[j])
                if grid and joined and rows and len(rows[-1]) == len(cells):
                    rows[-1] = [f"{a} {b}".strip() for a, b in zip(rows[-1], cells, strict=True)]
                else:
                    rows.append(cells)
                joined = grid
            j += 1
        widths = {len(r) for r in rows}
        if not markdown and len(rows) >= 2 and len(widths) == 1 and widths.pop() >= 2:
            out.append((i + 1, rows))
        i = j
    return out


_SIMPLE_BORDER = re.compile(r"^\s*=+(?:\s+=+)+\s*$")


def rst_simple_tables(text: str) -> list[tuple[int, list[list[str]]]]:
    """(first line, rows) of each reStructuredText simple table: ``=====  =====`` borders
    give the columns; each line between is cut at them (the last column runs to the end)."""
    lines = text.splitlines()
    out: list[tuple[int, list[list[str]]]] = []
    i = 0
    while i < len(lines) and len(out) < MAX_TABLES:
        if not _SIMPLE_BORDER.match(lines[i]):
            i += 1
            continue
        starts = [m.start() for m in re.finditer(r"=+", lines[i])]
        rows: list[list[str]] = []
        borders = 1
        j = i + 1
        while j < len(lines) and len(rows) < MAX_ROWS:
            line = lines[j]
            if _SIMPLE_BORDER.match(line):
                borders += 1
                j += 1
                # a header's underline is followed by rows; the closing border by a blank line
                if borders >= 3 or j >= len(lines) or not lines[j].strip():
                    break
                continue
            if re.match(r"^\s*-+(?:\s+-+)*\s*$", line) or not line.strip():
                j += 1
                continue
            cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], len(line) + 1], strict=False)]
            rows.append(cells)
            j += 1
        if len(rows) >= 2 and len(starts) >= 2:
            out.append((i + 1, rows))
        i = j
    return out


_LIST_TABLE = re.compile(r"^\s*\.\.\s+list-table::")


def rst_list_tables(text: str) -> list[tuple[int, list[list[str]]]]:
    """(first line, rows) of each reStructuredText ``list-table``: ``* -`` starts a row,
    each further ``-`` at the cell indentation is its next cell."""
    lines = text.splitlines()
    out: list[tuple[int, list[list[str]]]] = []
    for i, line in enumerate(lines):
        if len(out) >= MAX_TABLES or not _LIST_TABLE.match(line):
            continue
        rows: list[list[str]] = []
        for item in lines[i + 1 :]:
            stripped = item.strip()
            if not stripped or stripped.startswith(":"):
                continue
            if not item[:1].isspace():
                break  # the directive's body ended
            if stripped.startswith("* -"):
                rows.append([stripped[3:].strip()])
            elif stripped.startswith("- ") or stripped == "-":
                if rows:
                    rows[-1].append(stripped[1:].strip())
            elif rows and rows[-1]:
                rows[-1][-1] = f"{rows[-1][-1]} {stripped}"  # a cell's continuation line
            if len(rows) >= MAX_ROWS:
                break
        if len(rows) >= 2 and max(len(r) for r in rows) >= 2:
            out.append((i + 1, rows))
    return out


_ADOC_FENCE = re.compile(r"^\s*[|!]===\s*$")


def asciidoc_tables(text: str) -> list[tuple[int, list[list[str]]]]:
    """(first line, rows) of each AsciiDoc table between ``|===`` fences: cells start with
    ``|``; a row is one line of cells, or (cells one a line) the first row's width, taken
    from its first line or from the cells before the first blank line."""
    lines = text.splitlines()
    out: list[tuple[int, list[list[str]]]] = []
    i = 0
    while i < len(lines) and len(out) < MAX_TABLES:
        if not _ADOC_FENCE.match(lines[i]):
            i += 1
            continue
        sep = lines[i].strip()[0]
        body: list[list[str]] = []  # cells of each non-blank line, None for a blank line
        blank_after: int | None = None
        j = i + 1
        while j < len(lines) and not _ADOC_FENCE.match(lines[j]) and len(body) < MAX_ROWS * 4:
            stripped = lines[j].strip()
            if not stripped:
                if body and blank_after is None:
                    blank_after = len(body)
            elif stripped.startswith(sep):
                body.append([c.strip() for c in stripped[1:].split(sep)])
            elif body:
                body[-1][-1] = f"{body[-1][-1]} {stripped}"
            j += 1
        if body:
            width = len(body[0]) if len(body[0]) > 1 else sum(len(b) for b in body[: blank_after or 1])
            cells = [c for b in body for c in b]
            rows = [cells[k : k + width] for k in range(0, len(cells), max(1, width))]
            if width >= 2 and len(rows) >= 2:
                out.append((i + 1, rows[:MAX_ROWS]))
        i = j + 1
    return out


_AT_RISK = re.compile(
    r"^\s*(?:(?:no\.?|number|numbers|n)\s+)?(?:of\s+\w+\s+)?at[\s_-]+risk\b[\s:]*$", re.IGNORECASE
)
_RISK_ROW = re.compile(
    r"^\s*(?P<label>[A-Za-z][\w ()/.+\-]{0,60}?)\s*[:|]?\s+(?P<nums>\d+(?:[\s|]+\d+)+)\s*\|?\s*$"
)
_TIME_LABEL = re.compile(r"^(?:time|t|months?|years?|days?|weeks?|time \(\w+\))$", re.IGNORECASE)


def risk_tables(text: str) -> list[tuple[int, list[list[str]]]]:
    """(first line, rows) of each "Number at risk" table printed under a Kaplan-Meier plot or in
    a report: a heading line, then one line a group (a label and its numbers at risk at each
    time). Leaks11: the groups' last numbers (4, 3 left at risk) passed as plain text. A
    line labelled as the time axis (``Months 0 12 24``) is not a group."""
    if "risk" not in text.lower():
        return []
    lines = text[:MAX_ALIGNED_CHARS].splitlines()
    out: list[tuple[int, list[list[str]]]] = []
    for i, line in enumerate(lines):
        if len(out) >= MAX_TABLES or not _AT_RISK.match(line):
            continue
        rows: list[list[str]] = []
        for below in lines[i + 1 : i + 1 + MAX_ROWS]:
            m = _RISK_ROW.match(below)
            if not m:
                break
            if _TIME_LABEL.match(m.group("label").strip()):
                continue
            rows.append([m.group("label").strip(), *re.split(r"[\s|]+", m.group("nums").strip())])
        if rows:
            width = max(len(r) for r in rows)
            header = ["group", *(f"at_risk {k}" for k in range(1, width))]
            out.append((i + 1, [header, *rows]))
    return out
