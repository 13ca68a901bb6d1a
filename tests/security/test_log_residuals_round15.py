"""Identifiers spelled so the log screen did not see them (redteam15).

Round 14 left these residuals, each shown here to pass the screen before the fix: a date
printed a digit a line with words between the digits; a DICOM UID cut across lines (UIDs
were left out of the cross-line search); an identifier whose digits are grouped with several
spaces or in pairs ("19 62 03 15"); written in Arabic-Indic or fullwidth digits cut across
lines (only fullwidth in one line was folded); a UID reversed (despacing joined its one-digit
parts first); pieces printed last piece first. Each must be withheld once the job ends, and
never shown to a reader following the running log. An ordinary log must still come through.
"""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from egress_review.logscreen import LogScreen
from tre.policy import load_policy

REPO = Path(__file__).resolve().parents[2]
CT = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
NAME = str(CT.PatientName)  # CompressedSamples^CT1
UID = str(CT.SOPInstanceUID)
BIRTH = "19620315"
MRN = "0048213"
ARABIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
FULLWIDTH = str.maketrans("0123456789", "０１２３４５６７８９")
DEVANAGARI = str.maketrans("0123456789", "०१२३४५६७८९")


def _screen() -> LogScreen:
    policy = load_policy("default", REPO / "policies")
    return LogScreen.for_policies([policy], {NAME, "CompressedSamples", BIRTH, MRN, UID})


def _chunks(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def _between(pieces: list[str], noise: str) -> list[str]:
    return [line for piece in pieces for line in (piece, noise)][:-1]


SPELLINGS = {
    "birth date a digit a line, a word between": lambda: _between(_chunks(BIRTH, 1), "step"),
    "MRN a digit a line, words between": lambda: _between(_chunks(MRN, 1), "loading batch"),
    "birth date two digits a line, a sentence between": lambda: _between(_chunks(BIRTH, 2), "ok, go on"),
    "birth date a digit a line inside words": lambda: [f"item {d} ready" for d in BIRTH],
    "UID four characters a line": lambda: _chunks(UID, 4),
    "UID eight characters a line": lambda: _chunks(UID, 8),
    "UID's digits, five a line": lambda: _chunks(UID.replace(".", ""), 5),
    "UID reversed in one line": lambda: [UID[::-1]],
    "birth date in pairs, spaced": lambda: [" ".join(_chunks(BIRTH, 2))],
    "birth date, two spaces between digits": lambda: ["  ".join(BIRTH)],
    "MRN in groups with tabs": lambda: ["\t".join(_chunks(MRN, 3))],
    "birth date in Arabic-Indic digits": lambda: [BIRTH.translate(ARABIC)],
    "birth date in Arabic-Indic digits, spaced": lambda: [" ".join(BIRTH.translate(ARABIC))],
    "birth date in Arabic-Indic digits, two a line": lambda: _chunks(BIRTH.translate(ARABIC), 2),
    "birth date in Devanagari digits, a digit a line": lambda: _chunks(BIRTH.translate(DEVANAGARI), 1),
    "birth date in fullwidth digits, two a line": lambda: _chunks(BIRTH.translate(FULLWIDTH), 2),
    "MRN, zero-width spaces between, two a line": lambda: _chunks("\u200b".join(MRN), 3),
    "birth date, terminal escapes between, a digit a line": lambda: [
        f"\x1b[3{i}m{d}\x1b[0m" for i, d in enumerate(BIRTH)
    ],
    "birth date, pairs in reverse order": lambda: list(reversed(_chunks(BIRTH, 2))),
    "MRN, digits in reverse order, a word between": lambda: _between(list(reversed(MRN)), "step"),
    "name, pieces in reverse order": lambda: list(reversed(_chunks(NAME, 3))),
}


def _live_shown(screen: LogScreen, lines: list[str]) -> list[str]:
    """Every line text a follower is ever shown while the job writes ``lines`` one by one."""
    raw = ("\n".join(lines) + "\n").encode()
    at, seen = 0, []
    for line in lines:
        at += len(line.encode()) + 1
        live = screen.screen_log(raw[:at], final=False)
        seen += [x.text for x in live.lines if not x.withheld]
    return seen


@pytest.mark.parametrize("how", sorted(SPELLINGS))
def test_an_identifier_so_spelled_is_withheld_live_and_whole(how: str) -> None:
    screen = _screen()
    pieces = SPELLINGS[how]()
    lines = ["epoch 1 done", *pieces, "epoch 2 done"]
    screening = screen.screen_log(("\n".join(lines) + "\n").encode(), final=True)
    withheld = {text for x, text in zip(screening.lines, lines, strict=True) if x.withheld}
    carrying = {p for p in pieces if any(ch.isdigit() or ch.isalpha() for ch in p)}
    carrying -= {"step", "loading batch", "ok, go on"}  # the noise between, if shown, says nothing
    assert carrying <= withheld, (how, sorted(carrying - withheld))
    shown = set(_live_shown(screen, lines))
    assert not shown & carrying, (how, sorted(shown & carrying))


BENIGN = {
    "training": [
        f"epoch {i}/40 loss={0.9 / (i + 1):.4f} acc={50 + i / 2:.1f}% lr 0.00{i % 9 + 1} step {i * 37 % 500}"
        for i in range(40)
    ],
    "one number a line": [str(i * 7 % 1000) for i in range(300)],
    "progress bar": [
        f"{p:3d}%|{'#' * (p // 10):10s}| {p}/100 [00:{p % 60:02d}<00:{(100 - p) % 60:02d}, 3.61it/s]"
        for p in range(0, 101, 3)
    ],
    "timestamps of the researcher's code": [
        f"2026-12-01 12:{m:02d}:{s:02d},{m * s % 1000:03d} INFO step {m * 60 + s} done"
        for m in range(10)
        for s in range(0, 60, 7)
    ],
    "traceback": [
        "Traceback (most recent call last):",
        '  File "/code/train.py", line 196, in <module>',
        "    main()",
        '  File "/code/train.py", line 62, in main',
        "    x = model(batch)  # shape (16, 1, 512, 512)",
        "RuntimeError: CUDA out of memory. Tried to allocate 20.00 MiB (GPU 0; 15.78 GiB total)",
    ],
    "short counters with words": [
        line for i in range(60) for line in (f"epoch {i % 10}", "validating", f"fold {i % 5}")
    ],
    "tables of small numbers": [" ".join(str((i * j) % 97) for j in range(8)) for i in range(60)],
}


@pytest.mark.parametrize("kind", sorted(BENIGN))
def test_ordinary_logs_still_come_through(kind: str) -> None:
    lines = BENIGN[kind]
    screen = _screen()
    final = screen.screen_log(("\n".join(lines) + "\n").encode(), final=True)
    assert [x.text for x in final.lines if x.withheld] == [], kind
    live = screen.screen_log(("\n".join(lines) + "\n").encode(), final=False)
    assert len(live.lines) >= len(lines) - 8, kind
