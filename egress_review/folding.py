"""Text folded to what it looks like: for finding identifiers written in look-alike letters.

A job that wants a patient's name out of the screened log (or an output name) prints it so
that it reads the same to a person but not to a matcher: Cyrillic or Greek letters that look
Latin ("Сompressed" with a Cyrillic С), fullwidth or mathematical letters, terminal escape
sequences or invisible characters between the letters. `fold` undoes that: terminal escape
sequences, control/format characters and combining marks (accents) are removed,
compatibility forms are normalised (NFKC: fullwidth, ligatures, mathematical alphabets),
every decimal digit of another script (Arabic-Indic ``١٩٦٢``, Devanagari, Bengali, ...: NFKC
keeps them) is read as its ASCII digit (redteam15: a birth date printed in Arabic-Indic digits
passed the log screen), and each remaining non-ASCII character that Unicode's confusables data (TR39, via
``confusable_homoglyphs``) lists as looking like an ASCII letter or digit is replaced by it.
The identifier matchers then see the plain text.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

# ESC-introduced sequences: CSI (colours, cursor moves), OSC (titles, links), and two-character ones.
_TERMINAL_ESCAPES = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")
_INVISIBLE = frozenset({"Cc", "Cf", "Mn", "Me", "Zl", "Zp"})
# Unicode tag characters (U+E0020-U+E007E) mirror printable ASCII and render as nothing:
# "ASCII smuggling" writes a whole name in them (redteam9). They are read as the ASCII they
# mirror, not dropped as invisible.
_TAGS = re.compile("[\U000e0020-\U000e007e]")


@lru_cache(maxsize=1)
def _look_alikes() -> dict[str, str]:
    """Non-ASCII character -> the ASCII letter or digit it is confusable with."""
    from confusable_homoglyphs.confusables import confusables_data

    table: dict[str, str] = {}
    for ascii_char in "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz":
        for glyph in confusables_data.get(ascii_char, []):
            char = glyph.get("c", "")
            if len(char) == 1 and not char.isascii():
                table.setdefault(char, ascii_char)
    return table


def needs_folding(line: str) -> bool:
    """Whether folding could change ``line`` (plain printable ASCII is already folded)."""
    return not (line.isascii() and line.isprintable())


# ASCII control characters (tab aside) are invisible (category Cc): dropped.
_ASCII_CONTROLS = {code: None for code in [*range(32), 127] if code != 9}


_FOLDED_KEPT = 1 << 16


class _FoldedChars(dict[int, str | None]):
    """One character's fold (after normalisation), computed once per character and kept:
    `str.translate` then folds a whole line in C (a generator over the characters cost
    ~6 CPU-s on a 1 MB radiomics table)."""

    def __missing__(self, code: int) -> str | None:
        char = chr(code)
        if unicodedata.category(char) in _INVISIBLE:
            folded: str | None = None
        else:
            folded = _ascii_digit(char) or _look_alikes().get(char, char)
        if len(self) < _FOLDED_KEPT:  # bounded: a log may hold every character there is
            self[code] = folded
        return folded


_FOLDED = _FoldedChars()


def fold(line: str) -> str:
    """``line`` as it looks: escapes and invisible characters gone, look-alikes made ASCII.
    Tabs become spaces; the result holds no line breaks (one line in, one line out)."""
    if not needs_folding(line):
        return line
    if line.isascii() and "\x1b" not in line:
        # ASCII is its own normal form and look-alike; only controls change (a tab-separated
        # table's every line is here).
        return line.replace("\t", " ").translate(_ASCII_CONTROLS)
    text = _TERMINAL_ESCAPES.sub("", line).replace("\t", " ")
    text = _TAGS.sub(lambda m: chr(ord(m.group()) - 0xE0000), text)
    # Compatibility forms to plain letters, then accents and marks apart and dropped.
    text = unicodedata.normalize("NFD", unicodedata.normalize("NFKC", text))
    return text.translate(_FOLDED)


def _ascii_digit(char: str) -> str:
    """The ASCII digit a non-ASCII decimal digit stands for ("٣" is "3"), else ""."""
    if char.isascii():
        return ""
    value = unicodedata.decimal(char, None)
    return "" if value is None else str(value)
