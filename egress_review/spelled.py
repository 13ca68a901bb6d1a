"""Identifiers spelled out a character a word: NATO alphabet, Morse code, digits as words.

A job can print a name as "charlie oscar mike papa ...", in Morse ("-.-. --- -- .--."), or a
birth date as "one nine six two ..." in English, French, German, Spanish, Italian, Dutch or
Portuguese (log screen round 22: every one passed). `spelled` writes each run of
`MIN_RUN_WORDS` or more such words as the characters they stand for; a run may hold plain
digits and a word for the dot or the dash ("1 dot 3 dot 6": a UID), but not digits alone
(`egress_review.disguised.digits_joined` reads those). Ordinary text holds no such runs
but by chance ("one two three" spells 123, no identifier), so the identifier matchers read
what the runs spell.
"""

from __future__ import annotations

import re
from functools import cache

from egress_review.folding import fold

_NATO = (
    "alfa alpha bravo charlie delta echo foxtrot golf hotel india juliett juliet kilo lima mike "
    "november oscar papa quebec romeo sierra tango uniform victor whiskey x-ray xray yankee zulu"
)
_MORSE = (
    ".- -... -.-. -.. . ..-. --. .... .. .--- -.- .-.. -- -. --- .--. --.- .-. ... - ..- ...- "
    ".-- -..- -.-- --.. ----- .---- ..--- ...-- ....- ..... -.... --... ---.. ----."
)
# Digits 0-9 in words, one language a line (accents are folded away before lookup).
_DIGIT_WORDS = (
    "zero one two three four five six seven eight nine",
    "zero un deux trois quatre cinq six sept huit neuf",
    "null eins zwei drei vier funf sechs sieben acht neun",
    "cero uno dos tres cuatro cinco seis siete ocho nueve",
    "zero uno due tre quattro cinque sei sette otto nove",
    "nul een twee drie vier vijf zes zeven acht negen",
    "zero um dois tres quatro cinco seis sete oito nove",
)
_MARKS = {"dot": ".", "point": ".", "punkt": ".", "punto": ".", "dash": "-", "hyphen": "-", "caret": "^"}
# A run of this many spelled words at least is read.
MIN_RUN_WORDS = 3
_WORD = re.compile(r"[^\s,;/|]+")


@cache
def _table() -> dict[str, str]:
    table: dict[str, str] = dict(_MARKS)
    for words in _DIGIT_WORDS:
        for digit, word in enumerate(words.split()):
            table.setdefault(word, str(digit))
    for word in _NATO.split():
        table[word] = "x" if word in ("x-ray", "xray") else word[0]
    for char, code in zip("abcdefghijklmnopqrstuvwxyz0123456789", _MORSE.split(), strict=True):
        table[code] = char
    return table


# What separates words besides white space, for `_may_spell`'s quick look (. and - are Morse).
_SEPARATORS = str.maketrans({c: " " for c in ",;/|:!?()[]'\""})


def _may_spell(line: str) -> bool:
    """Whether ``line`` holds a word of the table that is no digit (what a run needs), read
    quickly: split in C, each word looked up once (most lines hold none). A line that is not
    ASCII is always read (folding may make one)."""
    if not line.isascii():
        return True
    table = _table()
    return any(
        (w in table or w.rstrip(".") in table) and not w.isdigit()
        for w in line.lower().translate(_SEPARATORS).split()
    )


def spelled_char(word: str) -> str | None:
    """The character one spelled word stands for (``word`` folded and in lower case first),
    else None."""
    return _table().get(fold(word).lower())


def spelled(line: str) -> str:
    """What the runs of spelled words in ``line`` spell, one space between runs ("" when
    there is none). Words are read folded and in lower case, one or more of white space,
    commas, semicolons, slashes and bars between them (Morse separates words with "/")."""
    if not _may_spell(line):
        return ""
    table = _table()
    runs: list[str] = []
    run: list[str] = []
    worded = False
    for match in [*_WORD.finditer(fold(line).lower().replace("\u00b7", ".")), None]:
        token = match.group(0).strip(".:!?()[]'\"") if match is not None else ""
        raw = match.group(0) if match is not None else ""
        char = table.get(raw) if raw and set(raw) <= set(".-") else table.get(token)
        if char is None and token.isdigit():
            char = token
        if char is not None:
            worded = worded or not token.isdigit()
            run.append(char)
            continue
        if len(run) >= MIN_RUN_WORDS and worded:
            runs.append("".join(run))
        run, worded = [], False
    return " ".join(runs)
