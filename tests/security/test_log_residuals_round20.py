"""Residuals of the log screen closed in round 20, each shown to pass (be shown to a reader
after the job ended) before the round.

* an all-digit identifier's pieces at different places among their lines' numbers
  ("step 12345 id 0048" / "epoch 3 step 12346 id 213"): a chain kept to one column;
* pieces separated by lines of other numbers ("id part 0048" / "epoch 3 loss 0.52" / "id part
  213"): every line with digits between two pieces had to give the next one;
* the number in another notation: ``1.9620315e7``, ``19.620315``, hex, octal;
* pieces in a progress bar's ``\\r`` redraws of one line;
* to a follower, an encoded-looking line waited up to 32 lines for its context.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from benchmarks.bench_log_screen import ordinary
from egress_review.logscreen import LogScreen
from tests.security import test_log_false_alarms_round17 as round17
from tests.security.test_log_residuals_round18 import BIRTH, MRN, UID, _chunks, _screen
from tre.policy import load_policy

UID_DIGITS = UID.replace(".", "")
REPO = Path(__file__).resolve().parents[2]


def _withheld(lines: list[str], screen: LogScreen | None = None) -> list[bool]:
    screening = (screen or _screen()).screen_log(("\n".join(lines) + "\n").encode(), final=True)
    return [line.withheld for line in screening.lines]


def _wandering(pieces: list[str]) -> list[str]:
    """Each piece at another place among its line's numbers: first, second, third, ..."""
    lines = []
    for i, piece in enumerate(pieces):
        numbers = [str(1000 + i), f"0.{i + 1}5", str(40 + i)]
        numbers.insert(i % 4, piece)
        lines.append("step " + " ".join(numbers))
    return lines


AT_OTHER_PLACES = {
    "MRN at the second number, then the third": ["step 12345 id 0048 loss 0.51", "epoch 3 step 12346 id 213"],
    "MRN first, then last": ["0048 step 12345 acc 0.5", "step 12346 acc 0.6 213"],
    "birth date's halves in swapped columns": ["a 1962 b 77", "a 5 b 0315"],
    "UID's digits six a line, wandering": _wandering(_chunks(UID_DIGITS, 6)),
    "MRN in JSON records, keys reordered": [
        '{"step": 12345, "part": "0048", "loss": 0.5}',
        '{"loss": 0.4, "step": 12346, "part": "213"}',
    ],
    "MRN reversed, wandering": ["step 12345 part 3128 acc 0.5", "acc 0.6 step 12346 part 400"],
}


@pytest.mark.parametrize("how", sorted(AT_OTHER_PLACES))
def test_pieces_at_different_places_among_a_lines_numbers_are_withheld(how: str) -> None:
    pieces = AT_OTHER_PLACES[how]
    assert _withheld(["start", *pieces, "done"]) == [False, *[True] * len(pieces), False]


def _between(pieces: list[str], template: str) -> list[str]:
    metrics = [f"epoch {i + 3} loss 0.{52 - i}" for i in range(len(pieces))]
    pairs = zip(pieces, metrics, strict=True)
    return [line for piece, between in pairs for line in (template.format(piece), between)]


SEPARATED = {
    "MRN in two labelled parts": _between(["0048", "213"], "id part {}"),
    "birth date two digits a line": _between(_chunks(BIRTH, 2), "piece {}"),
    "UID's digits six a line": _between(_chunks(UID_DIGITS, 6), "chunk {}"),
    "MRN beside a step counter": _between(["0048", "213"], "step 12345 id {}"),
    "birth date reversed": _between(_chunks(BIRTH[::-1], 4), "piece {}"),
}


@pytest.mark.parametrize("how", sorted(SEPARATED))
def test_pieces_separated_by_lines_of_other_numbers_are_withheld(how: str) -> None:
    lines = SEPARATED[how]
    # the pieces' lines withheld, the metrics between them shown
    assert _withheld(["start", *lines]) == [False, *[i % 2 == 0 for i in range(len(lines))]]


NOTATIONS = {
    "scientific": f"value {int(BIRTH) / 1e7:.7f}e7",
    "scientific, capital E": f"value {int(BIRTH):.7E}",
    "decimal point inside": "loss 19.620315",
    "hex": f"id {int(BIRTH):#x}",
    "hex, bare": f"id {int(BIRTH):x}",
    "hex, capitals": f"id {int(BIRTH):#X}",
    "octal": f"id {int(BIRTH):#o}",
    "octal, bare": f"id {int(BIRTH):o}",
}


@pytest.mark.parametrize("how", sorted(NOTATIONS))
def test_a_number_in_another_notation_is_withheld(how: str) -> None:
    assert _withheld(["start", NOTATIONS[how], "done"]) == [False, True, False]


def test_numbers_of_ordinary_logs_in_those_notations_are_shown() -> None:
    lines = [
        "lr 1e-4 weight_decay 5e-05 eps 1.0e-08 scale 6.02214076e23",
        "tensor at 0x7f3a2c1b9d40, device cuda:0, 0o755 /output",
        "commit 4f2a9c1 merged; layer sha 3b7e2d19c0a1 cached",
        "loss 0.019620 acc 0.91 step 1962 of 4000 eta 1.5e3 s",
        "pid 4711 mode 100644 inode 1234567 size 7654321",
    ]
    assert not any(_withheld(lines, round17._screen("every test file")))
    assert not any(_withheld(lines))


REDRAWS = {
    "MRN in three redraws": [f"{i * 10}% step {1000 + i} {c}" for i, c in enumerate(_chunks(MRN, 3))],
    "birth date, two redraws": [f"{50 * i}%|## step {200 + i} {c}" for i, c in enumerate(_chunks(BIRTH, 4))],
}


@pytest.mark.parametrize("how", sorted(REDRAWS))
def test_pieces_in_a_progress_bars_redraws_are_withheld(how: str) -> None:
    assert _withheld(["start", "\r".join(REDRAWS[how]), "done"]) == [False, True, False]


def test_the_benchmarks_ordinary_log_stays_whole_with_a_large_dataset() -> None:
    """The loose pieces of three digits or more, and the shapes, withhold none of the
    benchmark's 4,197 ordinary lines with 606 identifiers (two-digit loose pieces: 38)."""
    idents = (
        {f"1.2.840.113619.2.55.3.{i}.{i * 7}" for i in range(201)}
        | {f"PAT{i:07d}" for i in range(201)}
        | {f"19{i % 100:02d}{i % 12 + 1:02d}{i % 28 + 1:02d}" for i in range(201)}
    )
    screen = LogScreen.for_policies([load_policy("default", REPO / "policies")], idents)
    assert not any(x.withheld for x in screen.screen_log(ordinary(), final=True).lines)


def test_interleaved_ordinary_lines_of_two_shapes_are_shown() -> None:
    lines = [
        line
        for i in range(1, 80)
        for line in (
            f"epoch {i} train loss {1 / (i + 1):.4f} dice 0.{50 + i % 40}",
            f"epoch {i} val loss {1.1 / (i + 1):.4f} dice 0.{48 + i % 41} saved run{i % 7}/ckpt_{i * 125}.pt",
        )
    ]
    for screen in (_screen(), round17._screen("every test file")):
        assert not any(_withheld(lines, screen))


def _followed(screen: LogScreen, lines: list[str]) -> tuple[set[int], int]:
    """(the lines a follower polling after every line read unwithheld, the longest wait in
    lines beyond the last)."""
    raw = ("\n".join(lines) + "\n").encode()
    read: set[int] = set()
    at, wait = 0, 0
    for n, line in enumerate(lines, start=1):
        at += len(line.encode()) + 1
        shown = screen.screen_log(raw[:at], final=False).lines
        wait = max(wait, n - 1 - len(shown))
        read |= {i for i, x in enumerate(shown) if not x.withheld}
    return read, wait


def test_an_encoded_looking_line_is_shown_to_a_follower_once_the_next_is_written() -> None:
    lines = ["start", base64.b64encode(os.urandom(33)).decode(), *[f"step {i} ok" for i in range(40)]]
    screen = _screen()
    assert not any(_withheld(lines))  # alone in its context: shown
    read, wait = _followed(screen, lines)
    assert wait == 0 and read == set(range(len(lines) - 1))


@pytest.mark.parametrize("every", [1, 2, 9, 17, 22, 33])
def test_a_follower_reads_no_more_payload_than_the_ended_log_shows(every: int) -> None:
    """Chunks of 44 base64 characters, one every ``every`` lines: judged with only the lines
    before and the next, a follower read 12 in 200 lines where the ended log shows 7 at most."""
    lines = [
        base64.b64encode(os.urandom(33)).decode() if i % every == 0 else f"step {i} ok" for i in range(160)
    ]
    screen = _screen()
    ended = sum(not w for i, w in enumerate(_withheld(lines, screen)) if i % every == 0)
    read, _ = _followed(screen, lines)
    # the follower's extra: one window's payload (under `log_encoded_min_chars`) at most
    assert len([i for i in read if i % every == 0]) * 44 < ended * 44 + screen.encoded_min_chars, every
