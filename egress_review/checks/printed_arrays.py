"""Counts printed as arrays in a log (airlock round 18): ``confusion matrix:\\n[[25  3]\\n [ 2  3]]``.

A job prints scikit-learn's confusion matrix or a survival curve's numbers at risk with
``print(name, array)``: NumPy writes ``[[25  3]\\n [ 2  3]]``, a list ``[33, 28, 15, 4]``. The
named-value reader (`text_counts.named_counts`) reads one number after a name; an array after
a count's name (on its line, or alone on the next lines under a name that ends a line) is as
many counts, each judged by the threshold like a table's cells. Only whole numbers count: a
normalised matrix (``[[0.88 0.12] ...]``) is shares. An array that holds anything else
(words, ``nan``) is not read.
"""

from __future__ import annotations

import re
from collections.abc import Callable

MAX_ARRAY_CHARS = 64 * 1024  # one printed array
MAX_LINES = 200_000
_ALLOWED = frozenset("0123456789[], \t\n\r")
_INT = re.compile(r"\d+")
_LABEL_CHARS = 80  # the end of the text before an array that may name it
_NAME = re.compile(r"([A-Za-z][\w .()\-]{0,63}?)[\"']?\s*[:=]?\s*$")


def _array_at(text: str, start: int) -> tuple[str | None, int]:
    """The bracketed array that opens at ``text[start]`` ('['), if it holds only whole
    numbers, and where the reading stopped (the caller starts no new array before it: each
    character is read once, however many lines open an array that never closes)."""
    depth = 0
    for i in range(start, min(len(text), start + MAX_ARRAY_CHARS)):
        ch = text[i]
        if ch not in _ALLOWED:
            return None, i
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth == 0:
                return text[start : i + 1], i + 1
    return None, start + MAX_ARRAY_CHARS


def named_arrays(text: str, threshold: int, is_count: Callable[[str], bool]) -> list[dict[str, object]]:
    """Cells of arrays printed after a name ``is_count`` takes for a count's (the named-value
    reader's judge, `text_counts.count_name`) whose value is under ``threshold``."""
    if "[" not in text:
        return []
    found: list[dict[str, object]] = []
    named: dict[str, bool] = {}
    offset, previous, read_to = 0, "", 0
    for line_no, line in enumerate(text.split("\n")[:MAX_LINES], start=1):
        at = line.find("[")
        if at >= 0 and offset + at >= read_to:
            label = line[:at].strip() or (previous if previous.rstrip().endswith(":") else "")
            m = _NAME.search(label.rstrip(": \t")[-_LABEL_CHARS:]) if label else None
            name = m.group(1).strip() if m else ""
            if name and (name in named or len(named) < 10_000):
                if name not in named:
                    named[name] = is_count(name)
                array = None
                if named[name]:
                    array, read_to = _array_at(text, offset + at)
                small = [int(v) for v in _INT.findall(array or "") if 0 < int(v) < threshold]
                if small:
                    cell = {
                        "line": line_no,
                        "name": name[:80],
                        "value": str(small[0]),
                        "text": line.strip()[:160],
                    }
                    found.append(cell)
        if line.strip():
            previous = line
        offset += len(line) + 1
    return found
