"""Numbers written as text outside any table: a slice as one long line, one value a line, or
a space-separated grid. The table rules only see delimited tables, so a text file of numbers
is judged here by how many numbers it holds in number-only stretches and whether they form
a picture."""

from __future__ import annotations

import re

import numpy as np

from egress_review.checks.model import CheckResult, action_outcome
from egress_review.checks.tables import neighbour_correlation
from tre.policy import Policy

_TOKEN = re.compile(r"\S+")
# list punctuation of CSV, JSON and Python reprs: "[12, 13]" is two numbers
_SEPARATORS = str.maketrans({c: " " for c in ",;[](){}"})
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
# A long line is judged in pieces of this many tokens, so a number-only stretch is found inside
# a line that is otherwise prose.
CHUNK_TOKENS = 512
# A stretch counts as numbers only when this share of its tokens are numbers.
DENSE_SHARE = 0.9
# At most this many numbers are read into the picture test (a 2048 x 2048 slice).
MAX_VALUES = 4_194_304
# Leading numbers (a shape or a count) tried before the values start.
MAX_PREFIX = 4


def _pieces(text: str) -> list[list[str]]:
    """The text's tokens by line; a long line in groups of CHUNK_TOKENS tokens."""
    out: list[list[str]] = []
    for line in text.split("\n"):
        tokens = _TOKEN.findall(line.translate(_SEPARATORS))
        out.extend(tokens[i : i + CHUNK_TOKENS] for i in range(0, len(tokens), CHUNK_TOKENS))
    return out


def dense_numbers(text: str) -> list[str]:
    """The numbers of the text's number-only stretches, in order."""
    values: list[str] = []
    for tokens in _pieces(text):
        numbers = [t for t in tokens if _NUMBER.fullmatch(t)]
        if len(numbers) >= DENSE_SHARE * len(tokens):
            values.extend(numbers)
    return values


def _lag_correlation(seq: np.ndarray, lag: int) -> float:
    a, b = seq[:-lag], seq[lag:]
    if len(a) < 4 or a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def _picture(values: np.ndarray, side: int) -> tuple[int, int, float, float] | None:
    """(rows, columns, row and column correlation) of a grid the sequence folds into like an
    image, trying every width that divides it (after up to MAX_PREFIX leading numbers)."""
    for skip in range(MAX_PREFIX + 1):
        seq = values[skip:]
        n = len(seq)
        if n < side * side:
            return None
        for width in range(side, n // side + 1):
            if n % width:
                continue
            grid = seq.reshape(n // width, width)
            across = neighbour_correlation(grid, 1)
            if across < 0.5:
                continue
            down = neighbour_correlation(grid, 0)
            # A picture's value right below is closer than the one half a row on; a smooth curve
            # (a loss per step) correlates at every distance and is no picture.
            if down >= 0.5 and down - _lag_correlation(seq, width // 2) >= 0.1:
                return n // width, width, down, across
    return None


def check_number_text(text: str, policy: Policy) -> list[CheckResult]:
    """Flag record-level amounts of numbers in text; block a text that folds into a picture."""
    rules = policy.sdc
    raw = dense_numbers(text)
    if len(raw) < rules.image_table_min_side**2 and len(raw) <= rules.max_numeric_cells:
        return []
    values = np.array([float(v) for v in raw[:MAX_VALUES]], dtype=np.float64)
    found = _picture(values, rules.image_table_min_side)
    if found is not None:
        rows, cols, down, across = found
        return [
            CheckResult(
                check="sdc:image_table",
                outcome=action_outcome(rules.image_table),
                reason=f"the text's numbers fold into a {rows} x {cols} grid whose neighbouring values are "
                f"correlated like pixels (rows {down:.2f}, columns {across:.2f}): an image or a volume "
                "slice written as numbers, not a summary",
                evidence={"numbers": len(raw), "rows": rows, "columns": cols},
            )
        ]
    if len(raw) > rules.max_numeric_cells:
        return [
            CheckResult(
                check="sdc:record_level",
                outcome=action_outcome(rules.record_level),
                reason=f"the text holds {len(raw)} numbers in number-only stretches, more than "
                f"{rules.max_numeric_cells}: record-level values or raw data written as text, not a summary",
                evidence={"numbers": len(raw), "max_numeric_cells": rules.max_numeric_cells},
            )
        ]
    return []
