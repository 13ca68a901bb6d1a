"""An all-digit identifier printed as a number in another notation (round 20): a date or an
MRN as ``1.9620315e7`` or ``19.620315`` (its digits around a decimal point, an exponent
after), as ``0x12b61db`` or ``12b61db`` (hex), or as ``0o112660733`` or ``112660733``
(octal). Each is a reading a researcher undoes in one step, and none of them spells the
identifier's digits in a row, so the whole-token matcher missed them.

`lines_with` reads each number of a line in those notations as decimal digits (once with
decimals' digits joined and hex read as hex, once with octal read as octal: a run of the
digits 0-7 is both) and compares them with the all-digit identifiers: a benign number is
withheld only when one of its readings equals an identifier exactly.

Not read here: digits split over two numbers of a line (``1962, 315``: a ``list`` or
``numpy`` repr dropping a month's leading zero), or an identifier as the sum or difference
of two numbers (any arithmetic of the line's numbers would have to be searched).
"""

from __future__ import annotations

import re

# Hex and octal tokens long enough to hold a six-digit identifier (0xf4240 is 1,000,000), and
# short enough to be one (16 decimal digits fit in 14 hex digits and 19 octal ones).
_DECIMAL = r"[0-9]+\.[0-9]+(?:[eE][+-]?[0-9]+)?|[0-9]+[eE][+-]?[0-9]+"
_HEX = r"(?:0[xX])?[0-9a-fA-F]{5,14}"
_OCTAL = r"(?:0[oO])?[0-7]{6,19}"
_EDGE_BEFORE = r"(?<![0-9A-Za-z.])"
_EDGE_AFTER = r"(?![0-9A-Za-z])(?!\.[0-9])"
_DECIMAL_OR_HEX = re.compile(rf"{_EDGE_BEFORE}(?:(?P<decimal>{_DECIMAL})|(?P<hex>{_HEX})){_EDGE_AFTER}")
_OCTAL_TOKEN = re.compile(rf"{_EDGE_BEFORE}{_OCTAL}{_EDGE_AFTER}")
_EXPONENT = re.compile(r"[eE][+-]?[0-9]+$")


def _decimal_or_hex(match: re.Match[str]) -> str:
    decimal = match.group("decimal")
    if decimal is not None:
        # the mantissa's digits, whatever the exponent: "1.9620315e7" and "19.620315" alike
        return _EXPONENT.sub("", decimal).replace(".", "")
    token = match.group("hex")
    return str(int(token[2:] if token[:2] in ("0x", "0X") else token, 16))


def _octal(match: re.Match[str]) -> str:
    token = match.group(0)
    return str(int(token[2:] if token[:2] in ("0o", "0O") else token, 8))


_READINGS = ((_DECIMAL_OR_HEX, _decimal_or_hex), (_OCTAL_TOKEN, _octal))


def lines_with(lines: list[str], targets: frozenset[str]) -> set[int]:
    """0-based numbers of the lines holding a number that, read in one of the notations,
    is one of ``targets`` (the all-digit identifiers, `IdentifierMatcher.digit_singles`).
    Compared directly, not through the matcher: only all-digit identifiers can be such a
    number, and a matcher pass over each reading of a log cost a quarter of the screen."""
    hits: set[int] = set()
    if not targets:
        return hits
    for i, line in enumerate(lines):
        for pattern, read in _READINGS:
            if any(read(m) in targets for m in pattern.finditer(line)):
                hits.add(i)
                break
    return hits
