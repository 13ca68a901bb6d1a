"""Words of letters and digits read as their digits alone or their letters alone (round 16).

A job hid an identifier by putting a letter after each of its digits ("1a9b6c2d0e3f1g5h" for
19620315) or a digit after each letter of a name ("C1o2m3p4..."): no search saw the number
or the name, the letters breaking the digits and the digits the letters. Each such word is
read both ways; ordinary words holding digits ("resnet50", "cp311") give short pieces that
spell no identifier.
"""

from __future__ import annotations

import re

# A word holding both letters and digits ("1a9b", "P1a2t3", "step12345").
_MIXED = re.compile(r"[0-9A-Za-z]*(?:[0-9][A-Za-z]|[A-Za-z][0-9])[0-9A-Za-z]*")
_LETTERS = re.compile(r"[A-Za-z]+")
_DIGITS = re.compile(r"[0-9]+")


def has_mixed(line: str) -> bool:
    return _MIXED.search(line) is not None


def digits_of_mixed(line: str) -> str:
    """``line`` with each word of letters and digits read as its digits alone ("1a9b6c" is
    "196", "step12345" is "12345")."""
    return _MIXED.sub(lambda m: _LETTERS.sub("", m.group(0)), line)


def letters_of_mixed(line: str) -> str:
    """``line`` with each word of letters and digits read as its letters alone ("C1o2m3" is
    "Com")."""
    return _MIXED.sub(lambda m: _DIGITS.sub("", m.group(0)), line)
