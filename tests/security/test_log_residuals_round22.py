"""Log screen, round 22: an identifier drawn with cursor moves, printed as numbers, spelled
out a word a character, or run down a column of lines.

A hostile job printed CT_small's identifiers (pydicom's test file) as a terminal draws them
but the folded text does not spell them (backspaces over decoys, letters placed by column
in shuffled order); as character codes in hex, octal or ``chr()`` calls; as the bytes of one
big integer, of 32/64-bit integers or of 64-bit floats; in a bytes literal between NUL
escapes (UTF-16); in base58; in the NATO alphabet, Morse code, or digit words of seven
languages; a character a line in a fixed template (``item C`` / ``item o``, a pandas
Series, NATO words, ``\\r`` redraws of a progress bar); character codes in a numpy array's
repr wrapped onto a second line. Each passed before this round; each is withheld now.
Keyed transforms (a Caesar shift but 13, XOR, codes shifted by a constant, a permutation of
the letters) and arithmetic stay residuals (SECURITY.md).
"""

from __future__ import annotations

import base64
import struct

import pytest

from tests.security import test_log_residuals_round18 as round18
from tests.security.test_log_residuals_round20 import _withheld

NAME = "CompressedSamples"  # CT_small's PatientName's family part
RAW = NAME.encode()
BIRTH, MRN, UID = round18.BIRTH, round18.MRN, round18.UID
NATO = dict(
    zip(
        "abcdefghijklmnopqrstuvwxyz",
        "alfa bravo charlie delta echo foxtrot golf hotel india juliett kilo lima mike november "
        "oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu".split(),
        strict=True,
    )
)
MORSE = {"c": "-.-.", "o": "---", "m": "--", "p": ".--.", "r": ".-.", "e": ".", "s": "...", "d": "-.."}
MORSE |= {"a": ".-", "l": ".-..", "1": ".----", "9": "----.", "6": "-....", "2": "..---"}
MORSE |= {"0": "-----", "3": "...--", "5": "....."}


def _words(digits: str, language: str) -> str:
    return " ".join(language.split()[int(d)] for d in digits)


def _shuffled_by_column(text: str) -> str:
    """``text``'s characters each placed at its column with ``ESC [n G``, every third first."""
    order = [*range(0, len(text), 3), *range(1, len(text), 3), *range(2, len(text), 3)]
    return "".join(f"\x1b[{i + 1}G{text[i]}" for i in order)


def _base58(raw: bytes) -> str:
    alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
    value, out = int.from_bytes(raw, "big"), ""
    while value:
        value, digit = divmod(value, 58)
        out = alphabet[digit] + out
    return out


def _words_of(raw: bytes, fmt: str, size: int) -> str:
    chunks = [raw[i : i + size].ljust(size, b" ") for i in range(0, len(raw), size)]
    return " ".join(repr(struct.unpack(fmt, c)[0]) for c in chunks)


ONE_LINE = {
    "backspace over decoys": "".join(f"x\b{c}" for c in NAME),
    "letters placed by column, shuffled": _shuffled_by_column(NAME),
    "codes in hex, a list's repr": repr([hex(b) for b in RAW]),
    "codes in octal": " ".join(f"{b:03o}" for b in RAW),
    "codes as chr() calls": "+".join(f"chr({b})" for b in RAW),
    "one big integer, big-endian": str(int.from_bytes(RAW, "big")),
    "one big integer, little-endian": str(int.from_bytes(RAW, "little")),
    "32-bit integers": _words_of(RAW, "<i", 4),
    "64-bit integers": _words_of(RAW, "<q", 8),
    "64-bit floats' bit patterns": _words_of(RAW, "<d", 8),
    "UTF-16 in a bytes literal": repr(NAME.encode("utf-16-le")),
    "base58": f"id {_base58(RAW)}",
    "birth date in base58": f"key {_base58(BIRTH.encode())}",
    "NATO alphabet": " ".join(NATO[c] for c in NAME.lower()),
    "Morse code": " ".join(MORSE[c] for c in NAME.lower()),
    "birth date in Morse": " / ".join(MORSE[c] for c in BIRTH),
    "birth date in English words": _words(BIRTH, "zero one two three four five six seven eight nine"),
    "birth date in French words": _words(BIRTH, "zéro un deux trois quatre cinq six sept huit neuf"),
    "MRN in German words": _words(MRN, "null eins zwei drei vier fünf sechs sieben acht neun"),
    "MRN in Spanish words": _words(MRN, "cero uno dos tres cuatro cinco seis siete ocho nueve"),
    "UID with its dots as words": UID.replace(".", " dot "),
}


@pytest.mark.parametrize("how", sorted(ONE_LINE))
def test_an_identifier_drawn_coded_or_spelled_on_a_line_is_withheld(how: str) -> None:
    assert _withheld(["start", ONE_LINE[how], "done"]) == [False, True, False]


DOWN_A_COLUMN = {
    "a letter a line in a template": [f"processing item {c}" for c in NAME],
    "a pandas Series of characters": [f"{i:<4} {c}" for i, c in enumerate(NAME)],
    "a NATO word a line": [NATO[c] for c in NAME.lower()],
    "a letter a numbered line": [f"{i}: {c}" for i, c in enumerate(NAME)],
    "a letter a progress bar redraw": ["\r".join(f"frame {i} {c}" for i, c in enumerate(NAME))],
    # not a column: character codes in numpy's repr, wrapped at 75 columns onto a second line
    "codes in a numpy array's repr, wrapped": [
        "ValueError: bad labels array([ 67, 111, 109, 112, 114, 101, 115, 115, 101, 100,  83,  97, 109,",
        "       112, 108, 101, 115], dtype=uint8)",
    ],
}


@pytest.mark.parametrize("how", sorted(DOWN_A_COLUMN))
def test_an_identifier_down_a_column_or_wrapped_is_withheld(how: str) -> None:
    lines = DOWN_A_COLUMN[how]
    assert _withheld(["start", *lines, "done"]) == [False, *[True] * len(lines), False]


# Lines like the readings above that spell nothing of the dataset: progress bars with colours
# and redraws, numbers in lists and reprs, words that are NATO or Morse or digit words, and
# columns of letters and units.
BENIGN = [
    "\x1b[32m  5%|#         | 1/20 [00:00<00:03, 5.1it/s]\r\x1b[32m 10%|##        | 2/20\x1b[0m",
    "loss 0.5\b\b\b0.4 ok\x1b[2K\rdone",
    "codes [67, 97, 115, 101] ids ['0x1f', '0x2e', '0x3d'] perms 755 644 600",
    "epoch time 1733140800 seed 2718281828 hash 9223372036854775807",
    "weights[0] = 0.12345678901234567 bias -1.2345678901234567e-05",
    "b'\\x89PNG\\r\\n\\x1a\\n' header ok, b'\\x00\\x01\\x02'",
    "echo one two three > notes.txt; alpha bravo test passed",
    "Traceback ... -- ---- ... -.- in module",
    "sept. 5 deux essais: un sur trois",
    *[f"grade {g} count {n}" for g, n in zip("ABCDE", (12, 3, 9, 4, 1), strict=True)],
    *[f"fold {i} dice 0.8{i} s" for i in range(5)],
    *[f"{i:<4} {c}" for i, c in enumerate("ACGTTGCA")],
    "counts array([ 12, 4000, 31, 7, 100, 250, 1962, 47, 213, 88, 101,",
    "       17, 9])",
]


def test_lines_like_the_readings_that_spell_nothing_are_shown() -> None:
    assert not any(_withheld(BENIGN))


def test_a_column_of_one_repeated_letter_is_a_unit_not_a_spelling() -> None:
    """pydicom's test files name a patient "Sssssss^Jsssss": the running-log test's batch
    lines end in " s" (seconds), a column of "s" that spelled it."""
    screen = round18.LogScreen.for_policies([round18._policy()], {"Sssssss^Jsssss", "Sssssss"})
    lines = [f"[{i:>3}/120] lr 1e-4 time 0.{i % 10}3 s" for i in range(1, 40)]
    assert not any(_withheld(lines, screen))
    assert all(_withheld([f"{c} step" for c in "qsssssssq"], screen)[1:8])


def test_a_base64_line_is_still_withheld_as_encoded_data() -> None:
    """The new readings skip lines withheld anyway; those keep their own reason."""
    line = base64.b64encode(bytes(range(200))).decode()
    screening = round18._screen().screen_log(f"start\n{line}\n".encode(), final=True)
    assert "encoded" in screening.lines[1].text
