"""Numbers written in words, as digits: "ninety-nine patients" is "99 patients".

The count readers match digits and the words one to nineteen. A report that spells its
total ("Ninety-nine patients were included", leaks15) passed the release comparison, and
"One hundred patients" was read as a count of one. Only compound numbers are rewritten
(with a tens word, "hundred" or "thousand"): a lone "three" is already read as 3, and
rewriting it would change what the other readers quote.

Since leaks16 the counting idioms are read too: "a dozen" (12), "half a dozen" (6), "two
dozen" (24), "a couple of" and "a pair of" (2), "a score of" (20). "Half a dozen patients
relapsed" is a count of six as surely as "6 patients relapsed". No well-kept parser reads
them (tried in leaks16: number-parser 0.3.2 and text2num 3.1.0 leave them as words,
numerizer 0.2.4 writes "1 dozen", word2number 1.1 reads one phrase, not a text, and "two
dozen" as 2), and text2num, the best of them, reads compound numbers in a text as this module
does, so the reader stays here. "A score of" is a number only before a word ("a score of patients"): "a
Gleason score of 7" is a score.
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


_MULTIPLIER = rf"(?:a|one|{'|'.join(_UNITS[1:])}|{'|'.join(_TEENS)})"
# an idiom is found by its noun, then read back from the words before it (a pattern with no
# literal to start from is tried at every position: 17 MB of log took 7 CPU-s)
_IDIOM_NOUN = re.compile(
    r"\b(?:(?P<dozen>dozen)\b(?!s)|(?P<two>couple|pair)[ \t-]+of(?=[ \t]+[A-Za-z])"
    r"|(?P<score>score)[ \t-]+of(?=[ \t]+(?!the\b|a\b|an\b)[A-Za-z]))",
    re.IGNORECASE,
)
_BEFORE = re.compile(
    rf"(?:\b(?P<half>half{_SEP}(?:a{_SEP})?|a{_SEP}half{_SEP})|\b(?P<times>{_MULTIPLIER}){_SEP})$",
    re.IGNORECASE,
)
_A_BEFORE = re.compile(rf"\ba{_SEP}$", re.IGNORECASE)
# the words an idiom needs, past their first letter, in lower and upper case: a text without
# any is not searched (str.find runs at memory speed; a lower-cased copy of each text cost more)
_IDIOM_WORDS = ("ozen", "ouple of", "air of", "core of", "OZEN", "OUPLE OF", "AIR OF", "CORE OF")
_WINDOW = 24  # characters before the noun that can hold "half a", "a half-" or "fifteen "


def _idiom(text: str, m: re.Match[str]) -> tuple[int, str] | None:
    """(where the idiom starts, its digits) for the noun ``m``, or None if the words before
    make it no number ("dozens", "the score of")."""
    window = text[max(0, m.start() - _WINDOW) : m.start()]
    if m.group("two"):
        a = _A_BEFORE.search(window)
        return m.start() - (len(a.group(0)) if a else 0), "2"
    before = _BEFORE.search(window)
    if before is None or (m.group("score") and before.group("half")):
        return None
    start = m.start() - len(before.group(0))
    if before.group("half"):
        return start, "6"
    times = before.group("times").lower()
    each = 12 if m.group("dozen") else 20
    return start, str(each * (1 if times in ("a", "one") else VALUES[times]))


def idioms_to_digits(text: str) -> str:
    """``text`` with each counting idiom ("a dozen", "a couple of") replaced by its digits."""
    if not any(word in text for word in _IDIOM_WORDS):
        return text
    out: list[str] = []
    done = 0
    for m in _IDIOM_NOUN.finditer(text):
        found = _idiom(text, m)
        if found is None or found[0] < done:
            continue
        out += [text[done : found[0]], found[1]]
        done = m.end()
    out.append(text[done:])
    return "".join(out)


def words_to_digits(text: str) -> str:
    """``text`` with each compound number in words, and each counting idiom, replaced by its
    digits; lines stay."""
    text = idioms_to_digits(text)
    if not _COMPOUND.search(text):
        return text

    def digits(m: re.Match[str]) -> str:
        whole = m.group(0)
        if not _COMPOUND.search(whole) or "\n" in whole:
            return whole
        return str(value_of(whole))

    return _NUMBER.sub(digits, text)
