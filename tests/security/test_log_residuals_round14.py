"""Identifiers cut across log lines in pieces the screen did not join (redteam14).

Round 13 left three residuals: a running log showed the first one or two characters of an
identifier printed one or two characters a line (a line waited only once it ended with three
characters of an identifier's start; blank lines between the pieces pushed them out of the
eight lines looked at); an identifier hex- or base64-encoded and cut across lines passed
(each line's chunk decodes to nothing); and so did a numeric identifier (a birth date, an
MRN) printed a few digits a line, its digits apart from any label. Each must now be withheld
once the job ends, and never shown, even in part, to a reader following the running log.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from egress_review.logscreen import LogScreen
from tre.policy import load_policy

REPO = Path(__file__).resolve().parents[2]
CT = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
NAME = str(CT.PatientName)  # CompressedSamples^CT1
BIRTH = "19620315"
MRN = "0048213"


def _screen() -> LogScreen:
    policy = load_policy("default", REPO / "policies")
    return LogScreen.for_policies([policy], {NAME, "CompressedSamples", BIRTH, MRN})


def _chunks(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _interleave(pieces: list[str], noise: str) -> list[str]:
    return [line for piece in pieces for line in (piece, noise)][:-1]


CUTS = {
    "one letter a line": lambda: _chunks(NAME, 1),
    "two letters a line": lambda: _chunks(NAME, 2),
    "two letters a line, blank lines between": lambda: _interleave(_chunks(NAME, 2), ""),
    "one letter a line, twelve blank lines between": lambda: [line for c in NAME for line in (c, *[""] * 12)],
    "hex, 4 a line": lambda: _chunks(NAME.encode().hex(), 4),
    "hex, 8 a line, upper case": lambda: _chunks(NAME.encode().hex().upper(), 8),
    "base64, 4 a line": lambda: _chunks(base64.b64encode(NAME.encode()).decode(), 4),
    # (unpadded: a last line of one character and "=" holds a few bits, below any screen)
    "base64 after one byte, 6 a line": lambda: _chunks(_b64(b"x" + NAME.encode()), 6),
    "base64 after two bytes, 7 a line": lambda: _chunks(_b64(b"xy" + NAME.encode()), 7),
    "hex, 4 a line, blank lines between": lambda: _interleave(_chunks(NAME.encode().hex(), 4), ""),
    "birth date, one digit a line": lambda: _chunks(BIRTH, 1),
    "birth date, two digits a line": lambda: _chunks(BIRTH, 2),
    "birth date, four digits a line": lambda: _chunks(BIRTH, 4),
    "MRN, one digit a line, blank between": lambda: _interleave(_chunks(MRN, 1), ""),
    "birth date hex, 4 a line": lambda: _chunks(BIRTH.encode().hex(), 4),
    "birth date base64, 4 a line": lambda: _chunks(base64.b64encode(BIRTH.encode()).decode(), 4),
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


@pytest.mark.parametrize("how", sorted(CUTS))
def test_an_identifier_cut_across_lines_is_withheld_live_and_whole(how: str) -> None:
    screen = _screen()
    pieces = CUTS[how]()
    lines = ["epoch 1 done", *pieces, "epoch 2 done"]
    screening = screen.screen_log(("\n".join(lines) + "\n").encode(), final=True)
    carrying = [x.withheld for x, text in zip(screening.lines, lines) if text.strip()]
    assert carrying == [False, *([True] * sum(1 for p in pieces if p.strip())), False], how
    shown = _live_shown(screen, lines)
    assert all(text in ("epoch 1 done", "epoch 2 done", "") for text in shown), (how, shown)


def test_an_honest_training_log_still_comes_through() -> None:
    """Numbers on every line, tracebacks with line numbers, one value a line: all shown once
    the job ends, and while it runs every line but the last few is shown."""
    lines = ["Traceback (most recent call last):", '  File "/code/train.py", line 196, in <module>']
    lines += ["    main()", "ValueError: bad shape (512, 512, 3)"]
    for i in range(40):
        lines += [f"epoch {i}/40 loss={0.9 / (i + 1):.4f} acc={50 + i / 2:.1f}%", f"{i * 7 % 13}", "step"]
        lines += [f"lr 0.00{i % 9 + 1}", f"batch {i * 31 % 500}/500", f"{1962 + i}", f"{i % 10}"]
    screen = _screen()
    final = screen.screen_log(("\n".join(lines) + "\n").encode(), final=True)
    assert not any(x.withheld for x in final.lines)
    live = screen.screen_log(("\n".join(lines) + "\n").encode(), final=False)
    assert len(live.lines) >= len(lines) - 8
