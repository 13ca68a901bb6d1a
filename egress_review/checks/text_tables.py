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


class _TableParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[list[list[str]]] = []
        self._depth = 0
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._depth += 1
            if self._depth == 1 and len(self.tables) < MAX_TABLES:
                self.tables.append([])
        elif tag == "tr" and self._depth == 1:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if self._row and self.tables and len(self.tables[-1]) < MAX_ROWS:
                self.tables[-1].append(self._row)
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
    return [t for t in parser.tables if len(t) >= 2 and max(len(r) for r in t) >= 2]


_TABULAR = re.compile(r"\\begin\{tabular\*?\}(.*?)\\end\{tabular\*?\}", re.DOTALL)
_LATEX_RULES = re.compile(
    r"\\(?:hline|toprule|midrule|bottomrule|cline\{[^}]*\}|cmidrule(?:\([^)]*\))?\{[^}]*\})"
)
_LATEX_COMMAND = re.compile(r"\\[a-zA-Z]+\*?(?:\[[^\]]*\])?\{([^{}]*)\}")


def _latex_cell(cell: str) -> str:
    for _ in range(4):  # \textbf{\emph{3}} -> 3
        cell = _LATEX_COMMAND.sub(r"\1", cell)
    return cell.replace("\\&", "&").replace("{", "").replace("}", "").strip()


def latex_tables(text: str) -> list[list[list[str]]]:
    """Rows of each LaTeX ``tabular`` (redteam9: counts in a paper's table passed unread);
    the column specification after ``\\begin{tabular}`` is dropped, rules are ignored."""
    if "\\begin{tabular" not in text:
        return []
    out: list[list[list[str]]] = []
    for match in _TABULAR.finditer(text):
        body = re.sub(r"^\s*\{[^}]*\}", "", match.group(1), count=1)  # {lrr}
        body = _LATEX_RULES.sub("", body)
        rows = [
            [_latex_cell(c) for c in re.split(r"(?<!\\)&", line)]
            for line in re.split(r"\\\\", body)
            if line.strip()
        ]
        if len(rows) >= 2 and max(len(r) for r in rows) >= 2:
            out.append(rows[:MAX_ROWS])
        if len(out) >= MAX_TABLES:
            break
    return out


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
        while j < len(lines) and len(rows) < MAX_ROWS:
            fields = lines[j].split()
            if len(fields) == len(header) + 1 and _NUMBER.match(fields[0]):
                fields = fields[1:]  # the DataFrame's index
            if len(fields) != len(header):
                break
            rows.append(fields)
            j += 1
        if len(rows) >= 2 and any(_NUMBER.match(c) for r in rows for c in r):
            out.append((i + 1, [header, *rows]))
            i = j
        else:
            i += 1
    return out
