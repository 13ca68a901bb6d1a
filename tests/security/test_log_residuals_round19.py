"""Residuals of the log screen closed in round 19, each shown to pass before the round, and a
false alarm.

* a patient name with digits between its letters cut across lines ("C1o2m3p4r5" /
  "e6s7s8e9d0S1a2m3p4l5e6s7"): each line was read for such a name alone;
* a base64 payload's lone first character(s) on the line before it: the payload was withheld,
  its head shown;
* an ordinary line ending with a number ("epoch 1") just before an identifier's digits
  printed a few a line was withheld with them: a chain took "1" from it and a later stretch
  ("3" of "1.3.") from the next line, spelling the same digits.
"""

from __future__ import annotations

import pytest

from tests.security.test_log_residuals_round18 import (
    BIRTH,
    MRN,
    PAYLOAD,
    UID,
    _chunks,
    _digited,
    _screen,
)

UID_DIGITS = UID.replace(".", "")


def _withheld(lines: list[str]) -> list[bool]:
    screening = _screen().screen_log(("\n".join(lines) + "\n").encode(), final=True)
    return [line.withheld for line in screening.lines]


NAME_WITH_DIGITS = {
    "cut in two": [_digited("Compressed"), _digited("Samples")],
    "cut in three, numbers from 1": ["C1o2m3p4r5", "e6s7s8e9d0S1", "a2m3p4l5e6s7"],
    "a letter and a digit a line": [f"{ch}{i % 10}" for i, ch in enumerate("CompressedSamples")],
    "then the rest without digits": [_digited("Compr"), "essedSamples"],
    "reversed, cut in two": [_digited("selpmaS"), _digited("desserpmoC")],
    "digits first": ["1C2o3m4p5r6e", "7s8s9e0d1S2a3m4p5l6e7s"],
}


@pytest.mark.parametrize("how", sorted(NAME_WITH_DIGITS))
def test_a_name_with_digits_between_its_letters_cut_across_lines_is_withheld(how: str) -> None:
    pieces = NAME_WITH_DIGITS[how]
    assert _withheld(["epoch 1 done", *pieces, "epoch 2 done"]) == [False, *[True] * len(pieces), False]


def test_mixed_words_of_an_ordinary_log_are_not_joined_into_names() -> None:
    lines = [
        f"resnet50 block{i % 4 + 1} conv2d_{i} on cuda:{i % 2} 3d{i % 9}x{i % 7} C{i}o{i}" for i in range(60)
    ] + ["Com1", "pressed2", "Sam3 ples"]  # letters of the name, but not all of it joined
    assert not any(_withheld(lines))


HEADS = {
    "one character": [PAYLOAD[0], *_chunks(PAYLOAD[1:], 76)],
    "two characters": [PAYLOAD[:2], *_chunks(PAYLOAD[2:], 76)],
    "one character, a blank line after": [PAYLOAD[0], "", *_chunks(PAYLOAD[1:], 76)],
    "fifteen characters": [PAYLOAD[:15], *_chunks(PAYLOAD[15:], 76)],
}


@pytest.mark.parametrize("how", sorted(HEADS))
def test_a_payloads_lone_head_is_withheld_with_it(how: str) -> None:
    lines = ["epoch 1 done", "saving", *HEADS[how], "epoch 2 done", "ok"]
    withheld = _withheld(lines)
    head = 2
    assert withheld[head], how
    # the words before the head and after the payload say nothing: shown (one line each side)
    assert withheld[:head] == [False, False] and withheld[-2:] == [False, False], how


CHAINS = {
    "UID four characters a line": _chunks(UID, 4),
    "UID eight characters a line": _chunks(UID, 8),
    "UID's digits five a line": _chunks(UID_DIGITS, 5),
    "birth date two digits a line": _chunks(BIRTH, 2),
    "MRN a digit a line": _chunks(MRN, 1),
    "UID reversed four a line": _chunks(UID[::-1], 4),
}
BEFORE = ["epoch 1", "step 1 of 1", "fold 1", "epoch 11", "loss 0.1", "gpu 0", "epoch 5 step 1"]


@pytest.mark.parametrize("before", BEFORE)
@pytest.mark.parametrize("how", sorted(CHAINS))
def test_a_counter_line_before_an_identifiers_pieces_is_not_withheld_with_them(how: str, before: str) -> None:
    pieces = CHAINS[how]
    withheld = _withheld(["start", before, *pieces, "done"])
    assert withheld[1] is False, (how, before)
    assert all(withheld[2 : 2 + len(pieces)]), (how, before)


FRACTIONS = {
    "MRN in two losses": ["epoch 3 loss 0.0048 acc 0.51", "epoch 4 loss 0.213 acc 0.52"],
    "birth date in two losses": ["epoch 3 loss 0.1962 acc 0.51", "epoch 4 loss 0.0315 acc 0.52"],
    "birth date in four timings": [f"step {100 + i} took 12.{p} s" for i, p in enumerate(_chunks(BIRTH, 2))],
    "MRN after decimal commas": ["epoch 3 verlust 0,0048", "epoch 4 verlust 0,213"],
    "UID's digits in fractions": [f"step {500 + i} lr 0.{c}" for i, c in enumerate(_chunks(UID_DIGITS, 6))],
}


@pytest.mark.parametrize("how", sorted(FRACTIONS))
def test_an_identifier_in_decimals_fractions_is_withheld(how: str) -> None:
    pieces = FRACTIONS[how]
    assert _withheld(["start", *pieces, "done"]) == [False, *[True] * len(pieces), False]


REVERSED = {
    "MRN reversed in two parts beside step numbers": ["step 12345 part 3128", "step 12346 part 400"],
    "birth date reversed in pairs beside a timestamp": [
        f"12:00:{s:02d} step {10_000 + s} piece {p}" for s, p in enumerate(_chunks(BIRTH[::-1], 2))
    ],
    "UID's digits reversed, six a line beside a counter": [
        f"step {20_000 + i} chunk {c}" for i, c in enumerate(_chunks(UID_DIGITS[::-1], 6))
    ],
    "MRN reversed in fractions": ["epoch 3 loss 0.3128 acc 0.51", "epoch 4 loss 0.400 acc 0.52"],
}


@pytest.mark.parametrize("how", sorted(REVERSED))
def test_an_identifier_reversed_beside_other_numbers_is_withheld(how: str) -> None:
    pieces = REVERSED[how]
    assert _withheld(["start", *pieces, "done"]) == [False, *[True] * len(pieces), False]


@pytest.mark.parametrize("before", [33, 60, 100])
def test_an_identifiers_pieces_past_a_busy_lines_first_32_numbers_are_withheld(before: int) -> None:
    numbers = " ".join(str(i * 7) for i in range(before))
    pieces = [f"{numbers} {MRN[:4]}", f"{numbers} {MRN[4:]}"]
    assert _withheld(["start", *pieces, "done"]) == [False, True, True, False]
