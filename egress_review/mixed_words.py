"""Words of letters and digits read as their digits alone or their letters alone (round 16).

A job hid an identifier by putting a letter after each of its digits ("1a9b6c2d0e3f1g5h" for
19620315) or a digit after each letter of a name ("C1o2m3p4..."): no search saw the number
or the name, the letters breaking the digits and the digits the letters. Each such word is
read both ways.

Linear in the line (round 18): round 16 found the words with a pattern that backtracked over
every long run of letters (``[0-9A-Za-z]*(?:[0-9][A-Za-z]|...)``), so a 100,000-letter CSV
header took minutes; words are now cut once and each is looked at once.
"""

from __future__ import annotations

import re

# A word of letters and digits that mixes them: its first change of class comes within it.
# Tried at word starts only (the look-behind), each try scans its word once: linear.
_MIXED = re.compile(r"(?<![0-9A-Za-z])(?=[A-Za-z]+[0-9]|[0-9]+[A-Za-z])[0-9A-Za-z]+")
# ... with letters between digits or digits between letters (each start scans to the next
# class change only).
# A line that is one such word alone, space around it ("C1": a name cut a letter a line).
ONE_MIXED_WORD = re.compile(r"\s*(?=[A-Za-z]+[0-9]|[0-9]+[A-Za-z])[0-9A-Za-z]+\s*")
_SANDWICH = re.compile(r"[0-9][A-Za-z]+[0-9]|[A-Za-z][0-9]+[A-Za-z]")
_LETTERS = re.compile(r"[A-Za-z]+")
_DIGITS = re.compile(r"[0-9]+")
# A line is re-read when a word has letters between digits or digits between letters, or
# three words mix them ("1b.3d.6g"): not for a word and a number run together once or twice
# ("resnet50", "3.61it/s", "lr 1e-4"), which hides nothing and is in every log (re-reading
# those lines too cost a third more time on an ordinary log).
MIN_MIXED_WORDS = 3


def has_mixed(line: str) -> bool:
    if _SANDWICH.search(line):
        return True
    found = 0
    for _ in _MIXED.finditer(line):
        found += 1
        if found >= MIN_MIXED_WORDS:
            return True
    return False


def digits_of_mixed(line: str) -> str:
    """``line`` with each such word read as its digits alone ("1a9b6c" is "196")."""
    return _MIXED.sub(lambda m: _LETTERS.sub("", m.group(0)), line)


def letters_of_mixed(line: str) -> str:
    """``line`` with each such word read as its letters alone ("C1o2m3" is "Com")."""
    return _MIXED.sub(lambda m: _DIGITS.sub("", m.group(0)), line)
