"""An all-digit identifier printed as a number in another notation (round 20): a date or an
MRN as ``1.9620315e7`` or ``19.620315`` (its digits around a decimal point, an exponent
after), as ``0x12b61db`` or ``12b61db`` (hex), or as ``0o112660733`` or ``112660733``
(octal). Each is a reading a researcher undoes in one step, and none of them spells the
identifier's digits in a row, so the whole-token matcher missed them.

Round 21 added the spellings a number takes when a program prints it as a number:

* its value, leading zeros dropped (``48213`` for MRN ``0048213``, as ``int()`` prints it,
  also in hex or octal);
* in scientific notation with five significant digits or more, rounded as ``%e`` and
  ``%g`` print it (``1.962032e+07`` for 19620315, ``4.8213e+04`` for 0048213);
* a date split over two or three numbers of a list, tuple or numpy repr, a part after the
  first without its leading zeros (``[1962, 315]``, ``(1962, 3, 15)``, ``[19 62 315]``; split
  where no part had any, the digits joined are read as the identifier, `disguised`).

Only identifiers with as many significant digits as the policy's shortest all-digit
identifier (five by default, `MIN_SIGNIFICANT_DIGITS`) are compared: ``PAT0000123``'s
"0000123" is the number 123, and read as an identifier it withheld ``lr 0.000005``
(``0000005`` of ``PAT0000005``) in round 20's rule. A benign number is withheld only when one of its
readings equals an identifier exactly.

Not read here: an identifier as the sum, difference or any other arithmetic of a line's
numbers (any function of them would have to be searched; round 21 priced sums and
differences of two numbers of a line: docs/egress-checks.md).
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from itertools import accumulate, combinations

# Hex and octal tokens long enough to hold a six-digit identifier (0xf4240 is 1,000,000; with
# its prefix, a five-digit one: 0xbc55 is 48213), and short enough to be one (16 decimal
# digits fit in 14 hex digits and 19 octal ones).
_DECIMAL = r"[0-9]+\.[0-9]+(?:[eE][+-]?[0-9]+)?|[0-9]+[eE][+-]?[0-9]+"
_HEX = r"0[xX][0-9a-fA-F]{4,14}|[0-9a-fA-F]{5,14}"
_OCTAL = r"(?:0[oO])?[0-7]{6,19}"
_EDGE_BEFORE = r"(?<![0-9A-Za-z.])"
_EDGE_AFTER = r"(?![0-9A-Za-z])(?!\.[0-9])"
_DECIMAL_OR_HEX = re.compile(rf"{_EDGE_BEFORE}(?:(?P<decimal>{_DECIMAL})|(?P<hex>{_HEX})){_EDGE_AFTER}")
_OCTAL_TOKEN = re.compile(rf"{_EDGE_BEFORE}{_OCTAL}{_EDGE_AFTER}")
_EXPONENT = re.compile(r"[eE][+-]?[0-9]+$")
# A number in normalised scientific notation: one digit, a point, its decimals, an exponent.
_SCIENTIFIC = re.compile(rf"{_EDGE_BEFORE}([0-9])\.([0-9]+)[eE]([+-]?[0-9]+){_EDGE_AFTER}")
# Two or three whole numbers in a row with only a comma, semicolon or spaces between: the
# repr of a list, tuple or numpy array.
_INTEGER = r"[0-9]{1,16}"
_LISTED = re.compile(
    rf"{_EDGE_BEFORE}{_INTEGER}(?:(?:[^\S\n]*[,;][^\S\n]*|[^\S\n]+){_INTEGER}{_EDGE_AFTER})+"
    rf"{_EDGE_AFTER}"
)
_WHOLE = re.compile(r"[0-9]+")
# An identifier compared here has this many digits at least besides leading zeros: the
# policy's default shortest all-digit identifier (`text.min_numeric_identifier_length`).
MIN_SIGNIFICANT_DIGITS = 5
# Rounded readings keep this many significant digits at least (one fewer than ``%e``'s six).
MIN_ROUNDED_DIGITS = 5
# Split and rounded readings are looked for only for values this long at most (dates, MRNs:
# a UID's digits are its own root's and too many to split; a float holds 15 digits).
MAX_VALUE_DIGITS = 15
MAX_LIST_PARTS = 3
# Split readings are of dates (YYYYMMDD) only: their month and day lose a zero in a list; an
# MRN's cuts are arbitrary, and with 2,000 random MRNs they withheld 4 of 7,014 benign lines.
_DATE = re.compile(r"(18|19|20|21)[0-9][0-9](0[1-9]|1[0-2])(0[1-9]|[12][0-9]|3[01])")


@dataclass(frozen=True)
class Targets:
    """The all-digit identifiers as this module compares them: ``exact``, the digits as
    written (a decimal's or an exponent's reading of them); ``values``, without leading
    zeros (what a number's value prints); ``rounded``, their ``%e`` readings of five
    significant digits or more, as (mantissa digits, exponent); ``split``, each value cut
    into two or three numbers, as the tuple of those numbers."""

    exact: frozenset[str]
    values: frozenset[str]
    rounded: frozenset[tuple[str, int]]
    split: frozenset[tuple[int, ...]]
    # each value in scientific notation to its last non-zero digit: its readings with more
    # digits only add zeros ("4.821300e+04")
    scaled: frozenset[tuple[str, int]] = frozenset()


@lru_cache(maxsize=16)
def targets(digit_identifiers: frozenset[str], least: int = MIN_SIGNIFICANT_DIGITS) -> Targets:
    """`Targets` of the all-digit identifiers with ``least`` significant digits or more;
    cached (a log screen compares every read of a log with the same ones)."""
    exact = frozenset(d for d in digit_identifiers if len(d.lstrip("0")) >= least)
    values = frozenset(d.lstrip("0") for d in exact)
    rounded: set[tuple[str, int]] = set()
    split: set[tuple[int, ...]] = set()
    scaled: set[tuple[str, int]] = set()
    for value in values:
        if len(value) > MAX_VALUE_DIGITS:
            continue
        for decimals in range(MIN_ROUNDED_DIGITS - 1, len(value) - 1):
            rounded.add(_normalised(f"{int(value):.{decimals}e}"))
        scaled.add((value.rstrip("0"), len(value) - 1))
        if not _DATE.fullmatch(value):
            continue
        for parts in range(2, MAX_LIST_PARTS + 1):
            for cuts in combinations(range(1, len(value)), parts - 1):
                if all(value[cut] != "0" for cut in cuts):
                    continue  # every part as written: the digits joined are the identifier's
                bounds = (0, *cuts, len(value))
                split.add(tuple(int(value[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)))
    return Targets(exact, values, frozenset(rounded), frozenset(split), frozenset(scaled))


def _normalised(scientific: str) -> tuple[str, int]:
    """``1.962032e+07`` as ("1962032", 7)."""
    mantissa, _, exponent = scientific.lower().partition("e")
    return mantissa.replace(".", ""), int(exponent)


def _decimal_or_hex(match: re.Match[str]) -> tuple[str, ...]:
    """A decimal's digits as written (the mantissa's, whatever the exponent: "1.9620315e7"
    and "19.620315" alike; a fraction's alone after "0.") or a hex number's value."""
    decimal = match.group("decimal")
    if decimal is not None:
        digits = _EXPONENT.sub("", decimal)
        whole, _, fraction = digits.partition(".")
        joined = whole + fraction
        return (joined, fraction) if whole.strip("0") == "" and fraction else (joined,)
    token = match.group("hex")
    return ("=" + str(int(token[2:] if token[:2] in ("0x", "0X") else token, 16)),)


def _octal(match: re.Match[str]) -> tuple[str, ...]:
    token = match.group(0)
    return ("=" + str(int(token[2:] if token[:2] in ("0o", "0O") else token, 8)),)


def _integer(match: re.Match[str]) -> tuple[str, ...]:
    return ("=" + match.group(0).lstrip("0"),)


# A whole number long enough to be an identifier's value (`MIN_SIGNIFICANT_DIGITS`; a policy
# asking for fewer reads fewer values: a reading, not a bound on the identifiers).
_INTEGER_TOKEN = re.compile(rf"{_EDGE_BEFORE}[0-9]{{{MIN_SIGNIFICANT_DIGITS},}}{_EDGE_AFTER}")
_READINGS = (
    (_DECIMAL_OR_HEX, _decimal_or_hex),
    (_OCTAL_TOKEN, _octal),
    (_INTEGER_TOKEN, _integer),
)


def _hits(text: str, found: Targets) -> Iterator[int]:
    """Offsets in ``text`` of the numbers that, read in one of the notations, are one of
    ``found`` (one pass of each pattern over the whole text: a pass a line cost three times
    as much on the benchmark's ordinary log)."""
    for pattern, read in _READINGS:
        for match in pattern.finditer(text):
            for reading in read(match):
                # "=": a value (leading zeros gone); else digits as written
                if reading[1:] in found.values if reading[:1] == "=" else reading in found.exact:
                    yield match.start()
    if found.scaled:
        for match in _SCIENTIFIC.finditer(text):
            lead, decimals, exponent = match.groups()
            digits, power = lead + decimals, int(exponent)
            if len(digits) >= MIN_ROUNDED_DIGITS and (
                (digits, power) in found.rounded or (digits.rstrip("0"), power) in found.scaled
            ):
                yield match.start()
    if found.split:
        for match in _LISTED.finditer(text):
            numbers = [int(n) for n in _WHOLE.findall(match.group(0))]
            for size in range(2, MAX_LIST_PARTS + 1):
                for at in range(len(numbers) - size + 1):
                    if tuple(numbers[at : at + size]) in found.split:
                        yield match.start()


def lines_with(
    lines: list[str], digit_identifiers: frozenset[str], least: int = MIN_SIGNIFICANT_DIGITS
) -> set[int]:
    """0-based numbers of the lines holding a number that, read in one of the notations,
    is one of ``digit_identifiers`` (`IdentifierMatcher.digit_singles`). Compared directly,
    not through the matcher: only all-digit identifiers can be such a number, and a matcher
    pass over each reading of a log cost a quarter of the screen. ``least``: the significant
    digits an identifier compared needs (the policy's `min_numeric_identifier_length`)."""
    if not digit_identifiers:
        return set()
    found = targets(digit_identifiers, least)
    if not found.exact:
        return set()
    starts = list(accumulate((len(line) + 1 for line in lines), initial=0))
    return {bisect_right(starts, at) - 1 for at in _hits("\n".join(lines), found)}
