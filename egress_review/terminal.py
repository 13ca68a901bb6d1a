"""A line as a terminal shows it: for finding an identifier drawn with cursor movements.

`egress_review.folding` drops terminal escapes and control characters, which reads a line
as its characters in the order they were written. A terminal does not: a backspace steps
back so the next character overwrites ("x\\bC" shows "C"), and a cursor move puts a
character at any column ("\\x1b[5Gr" writes "r" in column 5). A job can thus write a name's
letters out of order, or under decoys, so that the folded text spells nothing while the
line, once drawn, reads the name (log screen round 22). `rendered` draws the line on one
row the way a terminal would; the identifier matchers read that as one more form of it.
"""

from __future__ import annotations

import re

# CSI: parameters, intermediates, final byte; other ESC sequences (OSC titles, two-character).
_SEQUENCE = re.compile(
    r"\x1b\[([0-?]*)[ -/]*([@-~])"  # CSI
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]"  # OSC, two-character
    r"|[\x00-\x1f\x7f]|[^\x00-\x1f\x7f\x1b]+"  # one control character, or a run of text
)
# Columns past this are not drawn: a move to column 10**9 would otherwise allocate it.
MAX_COLUMNS = 4096
_MOVES = frozenset("GCDKXP@`a")


def needs_rendering(line: str) -> bool:
    """Whether drawing ``line`` could differ from reading it: it moves the cursor."""
    return "\b" in line or "\x1b" in line or "\r" in line


def _count(params: str, default: int = 1) -> int:
    first = params.split(";")[0].lstrip("0")
    if not first.isdigit():
        return default
    # past the row's end is the row's end (and int() of 5,000 digits raises)
    return int(first) if len(first) <= 4 else MAX_COLUMNS


def rendered(line: str) -> str:
    """``line`` as drawn on one terminal row: printable characters overwrite the cell under
    the cursor; backspace, carriage return, tab, and the CSI moves and erases that stay on
    the row (G, `` ` ``, C, a, D, K, X, P, @) move or clear; every other sequence is
    dropped. Unwritten cells are spaces."""
    row: list[str] = []
    col = 0
    for match in _SEQUENCE.finditer(line):
        text = match.group(0)
        final = match.group(2)
        if final is not None:
            if final not in _MOVES:
                continue
            params = match.group(1)
            if final in "G`":
                col = min(_count(params) - 1, MAX_COLUMNS)
            elif final in "Ca":
                col = min(col + _count(params), MAX_COLUMNS)
            elif final == "D":
                col = max(col - _count(params), 0)
            elif final == "K":
                mode = _count(params, 0) if params else 0
                if mode == 0:
                    del row[col:]
                elif mode == 1:
                    row[: col + 1] = [" "] * min(col + 1, len(row))
                else:
                    row = []
            elif final == "X":
                end = min(col + _count(params), len(row))
                row[col:end] = [" "] * max(end - col, 0)
            elif final == "P":
                del row[col : col + _count(params)]
            elif final == "@":
                row[col:col] = [" "] * min(_count(params), MAX_COLUMNS)
                del row[MAX_COLUMNS:]
        elif text == "\b":
            col = max(col - 1, 0)
        elif text == "\r":
            col = 0
        elif text == "\t":
            col = min((col // 8 + 1) * 8, MAX_COLUMNS)
        elif text[0] in "\x1b" or (len(text) == 1 and (text < " " or text == "\x7f")):
            continue
        else:
            for char in text:
                if col >= MAX_COLUMNS:
                    break
                if col >= len(row):
                    row.extend(" " * (col - len(row) + 1))
                row[col] = char
                col += 1
    return "".join(row)
