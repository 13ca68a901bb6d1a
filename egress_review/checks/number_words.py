"""Numbers written in words, as digits: "ninety-nine patients" is "99 patients".

The count readers match digits and the words one to nineteen. A report that spells its
total ("Ninety-nine patients were included", leaks15) passed the release comparison, and
"One hundred patients" was read as a count of one. Only compound numbers are rewritten
(with a tens word, "hundred" or "thousand"): a lone "three" is already read as 3, and
rewriting it would change what the other readers quote.
"""

from __future__ import annotations

import re

_UNITS = "one two three four five six seven eight nine".split()
_TEENS = "ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
VALUES = {
    **{w: i + 1 for i, w in enumerate(_UNITS)},
    **{w: i + 10 for i, w in enumerate(_TEENS)},
    **{w: (i + 2) * 10 for i, w in enumerate(_TENS)},
}

_SEP = r"(?:[ \t]*-[ \t]*|[ \t]+)"
_UNIT = "(?:" + "|".join(_UNITS) + ")"
_BELOW_100 = rf"(?:(?:{'|'.join(_TENS)})(?:{_SEP}{_UNIT})?|{'|'.join(_TEENS)}|{_UNIT})"
_BELOW_1000 = rf"(?:(?:{_UNIT}|a|one){_SEP}hundred(?:{_SEP}(?:and{_SEP})?{_BELOW_100})?|{_BELOW_100})"
_NUMBER = re.compile(
    rf"\b{_BELOW_1000}(?:{_SEP}thousand(?:{_SEP}(?:and{_SEP})?{_BELOW_1000})?)?\b",
    re.IGNORECASE,
)
# every compound number has one of these; a text without any is returned as it is, unread
_COMPOUND = re.compile(r"ty\b|hundred|thousand", re.IGNORECASE)


def value_of(words: str) -> int:
    """The number a match of ``_NUMBER`` spells ("one hundred and twelve" is 112)."""
    total = current = 0
    for word in re.split(r"[\s\-]+", words.lower()):
        if word == "and" or not word:
            continue
        if word == "hundred":
            current = max(current, 1) * 100
        elif word == "thousand":
            total += max(current, 1) * 1000
            current = 0
        else:
            current += 1 if word == "a" else VALUES[word]
    return total + current


def words_to_digits(text: str) -> str:
    """``text`` with each compound number in words replaced by its digits; lines stay."""
    if not _COMPOUND.search(text):
        return text

    def digits(m: re.Match[str]) -> str:
        whole = m.group(0)
        if not _COMPOUND.search(whole) or "\n" in whole:
            return whole
        return str(value_of(whole))

    return _NUMBER.sub(digits, text)
