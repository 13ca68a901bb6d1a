"""Identifiers and files in the disguises the log screen did not see through.

A planted-leak pass printed a patient's name from the data in forms a person reads at once
but the screen let through: look-alike letters (Cyrillic, fullwidth), terminal colour codes or
accents between the letters, ROT13, percent/octal/``\\u``/HTML escapes, decimal bytes,
base32, ascii85 and base85; and a whole CT slice as ascii85 or base85 lines, whose alphabets
hold punctuation and so never read as one base64 token. Each must now be withheld, while an
honest training log is still shown in full.
"""

from __future__ import annotations

import base64
import codecs
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from egress_review.logscreen import LogScreen
from tre.policy import load_policy

REPO = Path(__file__).resolve().parents[2]
CT = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
NAME = str(CT.PatientName)  # CompressedSamples^CT1


def _screen() -> LogScreen:
    return LogScreen.for_policies([load_policy("default", REPO / "policies")], {NAME, "CompressedSamples"})


def _withheld(screen: LogScreen, lines: list[str]) -> list[bool]:
    screening = screen.screen_log(("\n".join(lines) + "\n").encode(), final=True)
    assert len(screening.lines) == len(lines)
    return [line.withheld for line in screening.lines]


def _look_alike(text: str) -> str:
    """Latin C, o, e, a, p written with the Cyrillic letters that look the same."""
    return text.translate(str.maketrans("Coeap", "\u0421\u043e\u0435\u0430\u0440"))


def _fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


DISGUISES = {
    "look-alike letters": _look_alike(NAME),
    "fullwidth": _fullwidth(NAME),
    "colour codes between letters": "\x1b[0m".join(NAME),
    "accents on every letter": "\u0301".join(NAME),
    "rot13": codecs.encode(NAME, "rot_13"),
    "percent escapes": "".join(f"%{b:02X}" for b in NAME.encode()),
    "octal escapes": "".join(f"\\{b:03o}" for b in NAME.encode()),
    "unicode escapes": "".join(f"\\u{ord(c):04x}" for c in NAME),
    "html entities": "".join(f"&#{ord(c)};" for c in NAME),
    "decimal bytes": " ".join(str(b) for b in NAME.encode()),
    "base32": base64.b32encode(NAME.encode()).decode(),
    "ascii85": base64.a85encode(NAME.encode()).decode(),
    "base85": base64.b85encode(NAME.encode()).decode(),
}


@pytest.mark.parametrize("how", sorted(DISGUISES))
def test_a_name_in_disguise_is_withheld(how: str) -> None:
    line = f"subject: {DISGUISES[how]} done"
    assert _withheld(_screen(), ["epoch 1 loss 0.31", line, "epoch 2 loss 0.29"]) == [False, True, False]


@pytest.mark.parametrize("encode", [base64.a85encode, base64.b85encode], ids=["ascii85", "base85"])
@pytest.mark.parametrize("width", [40, 76])
def test_a_slice_in_an_85_symbol_encoding_is_withheld(encode, width: int) -> None:  # type: ignore[no-untyped-def]
    text = encode(CT.PixelData[:16384]).decode()
    lines = [f"w {text[i : i + width]}" for i in range(0, len(text), width)]
    withheld = _withheld(_screen(), lines)
    # Nearly every line: one that reads like text by chance carries only `width` characters.
    assert sum(withheld) >= 0.99 * len(lines), (sum(withheld), len(lines))


def test_an_honest_training_log_is_shown_in_full() -> None:
    lines = []
    for i in range(60):
        lines += [
            f"2024-05-01T12:{i:02d}:56.789+00:00 epoch {i}/60 loss={0.9 / (i + 1):.4f}",
            f"Epoch[{i}/60]Batch[100/500]Loss:0.{693 - i}(avg:0.701)Acc:{50 + i / 2:.1f}%",
            f"INFO:__main__:wrote /output/series/{i:05d}/vol.nii.gz (12.{i % 10} MiB)",
            '  File "/usr/lib/python3/dist-packages/numpy/core/_methods.py", line 129, in _mean',
            f"mean HU -812.{i % 10}, std 211.3; spacing 0.70 0.70 1.25; shape (512, 512, {100 + i})",
        ]
    assert not any(_withheld(_screen(), lines))


WRAPS = {
    "cut in two": lambda n, c: [n[:c], n[c:]],
    "cut, spaced out": lambda n, c: [" ".join(n[:c]), " ".join(n[c:])],
    "cut, reversed": lambda n, c: [n[::-1][:c], n[::-1][c:]],
    "cut, rot13": lambda n, c: [codecs.encode(n, "rot13")[:c], codecs.encode(n, "rot13")[c:]],
    "cut in three": lambda n, c: [n[:c], n[c : c + 4], n[c + 4 :]],
}


@pytest.mark.parametrize("how", sorted(WRAPS))
@pytest.mark.parametrize("cut", [3, 6, 10, 13])
def test_a_name_wrapped_across_lines_is_withheld_live_and_whole(how: str, cut: int) -> None:
    """redteam13: "CompressedSa" on one line and "mples^CT1" on the next passed the log screen
    (the file check joined lines, the log screen did not), and so did an MRN or a patient ID
    wrapped at its dash. Now every line an identifier runs across is withheld, and in a running
    job's log a line ending with three or more letters of an identifier's start waits for the
    next line, so a follower never reads a part that is withheld once the rest arrives."""
    screen = _screen()
    lines = ["epoch 1 done", *WRAPS[how](NAME, cut), "epoch 2 done"]
    assert _withheld(screen, lines) == [False, *([True] * (len(lines) - 2)), False]
    raw = ("\n".join(lines) + "\n").encode()
    at = 0
    for line in lines:
        at += len(line.encode()) + 1
        live = screen.screen_log(raw[:at], final=False)
        shown = [x.text for x in live.lines if not x.withheld]
        assert all(x in ("epoch 1 done", "epoch 2 done") for x in shown), (raw[:at], shown)


def test_identifiers_wrapped_at_a_dash_are_withheld() -> None:
    policy = load_policy("default", REPO / "policies")
    screen = LogScreen.for_policies([policy], {"MRN-0048213", "PAT-123456"})
    for lines in (["id PAT-123", "456 ok"], ["MRN-0048", "213 done"], ["patient PAT12", "3456"]):
        assert _withheld(screen, ["start", *lines, "end"]) == [False, True, True, False], lines
    # An honest log with the same prefixes is shown, and waits for no more than a line.
    honest = ["loaded PAT files", "mrn column dropped", "epoch 1 loss 0.48", "done"]
    assert _withheld(screen, honest) == [False] * 4
