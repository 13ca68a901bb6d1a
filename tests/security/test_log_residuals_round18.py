"""Identifiers and payload tails the log screen let through, closed without follower lag, and
two false alarms (round 18).

Round 15 left these residuals, each shown to pass the screen before the round: an
identifier's pieces printed across lines beside more than four other digits ("step 12345
id-part 0048"); pieces separated by four or more ordinary word lines; letters between an
identifier's digits ("1a9b6c2d..."), or digits between a name's letters; a DICOM UID reversed
a character or two a line; the lone tail of a base64 payload on its own line. Round 16 closed
them by holding a running log's lines while a chain of digits was open, so a follower of an
ordinary counting log saw nothing (reverted). Now every piece is withheld once the job ends,
the line that completes the identifier is never shown to a reader following the running log,
and that reader still sees every line but the last (`test_log_follower_lag.py`).

The false alarms: class names heavy in capitals (``'ConvNeXtV2Blk3D'``) read as base64, and
``Traceback (most recent call last):`` withheld when a patient's name part is "Last".
"""

from __future__ import annotations

import base64
import dataclasses
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from egress_review.checks.identifiers import identifiers_from_dataset
from egress_review.digit_chains import DigitChains
from egress_review.logscreen import LogScreen
from tre.policy import load_policy

REPO = Path(__file__).resolve().parents[2]
CT = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
NAME = str(CT.PatientName)  # CompressedSamples^CT1
UID = str(CT.SOPInstanceUID)
BIRTH = "19620315"
MRN = "0048213"
PAYLOAD = base64.b64encode(CT.PixelData[:1000]).decode()  # 1336 characters, "=" padded
NOISE = ["loading the next batch", "ok", "validating", "saving a checkpoint"]


def _policy():  # type: ignore[no-untyped-def]
    return load_policy("default", REPO / "policies")


def _screen() -> LogScreen:
    return LogScreen.for_policies([_policy()], {NAME, "CompressedSamples", BIRTH, MRN, UID})


def _chunks(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def _between(pieces: list[str], noise: list[str]) -> list[str]:
    return [line for piece in pieces for line in (piece, *noise)][: -len(noise)]


def _lettered(text: str) -> str:
    """``text`` with a letter after each of its digits ("1962" -> "1a9b6c2d")."""
    return "".join(ch + "abcdefghij"[int(ch)] if ch.isdigit() else ch for ch in text)


def _digited(text: str) -> str:
    """``text`` with a digit after each of its letters ("Comp" -> "C1o2m3p4")."""
    return "".join(f"{ch}{i % 10}" if ch.isalpha() else ch for i, ch in enumerate(text))


UID_DIGITS = UID.replace(".", "")
SPELLINGS: dict[str, list[str]] = {
    # beside more than four other digits
    "MRN in two parts beside step numbers": ["step 12345 id-part 0048", "step 12346 id-part 213"],
    "birth date in pairs beside a timestamp": [
        f"12:00:{s:02d} step {10_000 + s} piece {p}" for s, p in enumerate(_chunks(BIRTH, 2))
    ],
    "UID's digits, six a line beside a counter": [
        f"step {20_000 + i} chunk {c}" for i, c in enumerate(_chunks(UID_DIGITS, 6))
    ],
    "birth date a digit a line beside a counter": [f"step {10_000 + i} d {d}" for i, d in enumerate(BIRTH)],
    "MRN beside a timestamp, two and three digits a line": [
        f"2026-12-01 12:00:{s:02d} INFO part {p} ok" for s, p in enumerate(["00", "482", "13"])
    ],
    "UID in parts of eight beside a counter": [f"{30_000 + i}: {c}" for i, c in enumerate(_chunks(UID, 8))],
    # four or more word lines between the pieces
    "birth date a digit a line, four word lines between": _between(_chunks(BIRTH, 1), NOISE),
    "MRN two digits a line, twelve word lines between": _between(_chunks(MRN, 2), NOISE * 3),
    "UID four characters a line, four word lines between": _between(_chunks(UID, 4), NOISE),
    # letters between the digits, digits between the letters
    "birth date, a letter after each digit": [f"code {_lettered(BIRTH)}"],
    "MRN, a letter after each digit": [_lettered(MRN)],
    "UID, a letter after each digit": [_lettered(UID)],
    "UID's digits, a letter after each": [_lettered(UID_DIGITS)],
    "name, a digit after each letter": [f"tag {_digited('CompressedSamples')}"],
    "birth date lettered, across two lines": _chunks(_lettered(BIRTH), 8),
    "UID's digits lettered, across lines": _chunks(_lettered(UID_DIGITS), 16),
    # a UID reversed across lines
    "UID reversed, a character a line": list(reversed(UID)),
    "UID reversed, two characters a line": _chunks(UID[::-1], 2),
    "UID's digits reversed, three a line": _chunks(UID_DIGITS[::-1], 3),
}


def _live_shown(screen: LogScreen, lines: list[str]) -> set[int]:
    """The line numbers a follower is ever shown while the job writes ``lines`` one by one
    (each read judges the log from its start, as the API does)."""
    raw = ("\n".join(lines) + "\n").encode()
    at, seen = 0, set()
    for line in lines:
        at += len(line.encode()) + 1
        live = screen.screen_log(raw[:at], final=False)
        seen |= {i for i, x in enumerate(live.lines) if not x.withheld}
    return seen


@pytest.mark.parametrize("how", sorted(SPELLINGS))
def test_an_identifier_so_spelled_is_withheld_whole_and_its_last_piece_never_shown(how: str) -> None:
    screen = _screen()
    pieces = SPELLINGS[how]
    lines = ["epoch 1 done", *pieces, "epoch 2 done"]
    screening = screen.screen_log(("\n".join(lines) + "\n").encode(), final=True)
    carrying = [i for i, text in enumerate(lines) if 0 < i <= len(pieces) and any(c.isalnum() for c in text)]
    carrying = [i for i in carrying if lines[i] not in NOISE]
    assert [lines[i] for i in carrying if not screening.lines[i].withheld] == [], how
    assert not screening.lines[-1].withheld, how  # the line after says nothing
    # The line that completes the identifier is withheld the moment it is judged.
    assert carrying[-1] not in _live_shown(screen, lines), how


TAILS = {
    "one character": [*_chunks(PAYLOAD[:-3], 76), PAYLOAD[-3]],
    "the padding": [*_chunks(PAYLOAD[:-2], 76), PAYLOAD[-2:]],
    "three characters and the padding": [*_chunks(PAYLOAD[:-5], 76), PAYLOAD[-5:]],
    "one character, a blank line before": [*_chunks(PAYLOAD[:-3], 76), "", PAYLOAD[-3]],
}


@pytest.mark.parametrize("how", sorted(TAILS))
def test_a_payloads_lone_tail_is_withheld_with_it(how: str) -> None:
    screen = _screen()
    lines = ["epoch 1 done", *TAILS[how], "ok", "done", *[f"epoch {i} done" for i in range(2, 40)]]
    tail = len(TAILS[how])
    screening = screen.screen_log(("\n".join(lines) + "\n").encode(), final=True)
    assert screening.lines[tail].withheld, how
    # the lines after the payload say nothing: shown (one tail line only)
    assert [x.withheld for x in screening.lines[tail + 1 :]] == [False] * (len(lines) - tail - 1), how
    assert tail not in _live_shown(screen, lines), how


def _tqdm(total: int) -> list[str]:
    return [
        f"train: {100 * n // total:3d}%|{'█' * (10 * n // total):10s}| {n}/{total} "
        f"[{n // 60:02d}:{n % 60:02d}<{(total - n) // 60:02d}:{(total - n) % 60:02d}, "
        f"{3.2 + n % 7 / 10:.2f}it/s]"
        for n in range(0, total + 1, 7)
    ]


PIP = [
    "Collecting torch==2.1.0",
    "  Downloading torch-2.1.0-cp311-cp311-manylinux1_x86_64.whl (670.2 MB)",
    "Collecting nvidia-cudnn-cu12==8.9.2.26",
    "  Using cached nvidia_cudnn_cu12-8.9.2.26-py3-none-manylinux1_x86_64.whl (731.7 MB)",
    "Requirement already satisfied: numpy>=1.21.6 in /usr/lib/python3/dist-packages (1.26.4)",
    "Installing collected packages: mpmath, sympy, networkx, nvidia-nccl-cu12, torch",
    "Successfully installed mpmath-1.3.0 networkx-3.2.1 sympy-1.12 torch-2.1.0 triton-2.1.0",
    "Building wheels for collected packages: pydicom",
]

BENIGN = {
    "training, a word line or four between the numbers": [
        line
        for i in range(60)
        for line in (f"epoch {i}", *NOISE[: i % 5], f"loss {0.9 / (i + 1):.4f}", "done")
    ],
    "tqdm bars": _tqdm(500),
    "pip output": PIP * 4,
    "timestamps with step counters": [
        f"2026-12-01T12:{m:02d}:{s:02d}.{(m * 7 + s) % 1000:03d}Z step {m * 60 + s} batch {s % 32} of 32"
        for m in range(20)
        for s in range(0, 60, 3)
    ],
    "tracebacks with line numbers": [
        line
        for i in range(20)
        for line in (
            "Traceback (most recent call last):",
            f'  File "/code/train.py", line {100 + i * 13}, in <module>',
            f'  File "/usr/lib/python3.11/site-packages/torch/nn/modules/module.py", line {1500 + i}, '
            "in _call_impl",
            "    return forward_call(*args, **kwargs)",
            "ModuleNotFoundError: No module named 'monai'" if i % 2 else "During handling:",
            f"RuntimeError: size mismatch at dim {i % 4}: {i * 64} vs {512 + i}",
        )
    ],
    "model names and devices": [
        f"resnet50 block{i % 4 + 1} conv2d_{i} on cuda:{i % 2} x86_64 fp16 3d{i % 9}x{i % 7} sha1 a3f9{i:04x}"
        for i in range(120)
    ],
    "run directories and checkpoints": [
        f"run {i:03d} saved runs/exp{i % 12}/weights/epoch{i % 50:03d}_step{i * 1250}.pt "
        f"(best 0.{i * 37 % 1000:03d})"
        for i in range(200)
    ],
    "counting steps and epochs": [f"step {i} of 40" for i in range(1, 41)]
    + [f"epoch {i} loss {1 / (i + 1):.4f}" for i in range(1, 41)],
}


@pytest.mark.parametrize("kind", sorted(BENIGN))
def test_ordinary_logs_come_through_whole_and_chains_hold_at_most_the_last_line(kind: str) -> None:
    lines = BENIGN[kind]
    screen = _screen()
    final = screen.screen_log(("\n".join(lines) + "\n").encode(), final=True)
    assert [x.text for x in final.lines if x.withheld] == [], kind
    # A follower after every line written: the digit chains make at most the last line wait
    # (round 16's held every line from a chain's first piece). The earlier rounds' waits for
    # an identifier's start wrapped over lines (`SqueezedIndex`) are measured without chains.
    without_chains = dataclasses.replace(screen, chains=DigitChains(()))
    raw = ("\n".join(lines) + "\n").encode()
    at = 0
    for n, line in enumerate(lines[:80], start=1):
        at += len(line.encode()) + 1
        shown = len(screen.screen_log(raw[:at], final=False).lines)
        before = len(without_chains.screen_log(raw[:at], final=False).lines)
        assert shown >= min(before, n - 1), (kind, n, shown, before)


# Model summaries and errors print class names whose capitals come in acronyms and versions.
ACRONYM_NAMES = (
    "ConvNeXtV2Blk3D",
    "SwinUNETRV2Head",
    "SegResNetVAE",
    "MedNeXtBlock",
    "UNETRPlusPlus",
    "HRNetV2W48Head",
    "SENet154Block",
    "SEResNeXt50Encoder",
    "UNETRV2Decoder",
)
MODEL_SUMMARY = [
    line
    for i, name in enumerate(ACRONYM_NAMES)
    for line in (
        f"({i}): building '{name}'",
        f"  in_channels={32 * (i + 1)} out_channels={64 * (i + 1)}",
        "  norm=instance act=gelu",
        f"<class '{name}'> ready",
        "  dropout=0.0",
        f"KeyError: '{name}'" if i % 2 else f"using '{name}',",
        "",
    )
]


def test_class_names_heavy_in_capitals_are_not_encoded_data() -> None:
    screen = _screen()
    screening = screen.screen_log(("\n".join(MODEL_SUMMARY) + "\n").encode(), final=True)
    assert [line for line, x in zip(MODEL_SUMMARY, screening.lines, strict=True) if x.withheld] == []


def test_base64_cut_into_name_length_tokens_is_still_withheld() -> None:
    # The same shape of line as the summary's, the quoted token 15 characters of a payload.
    lines = [f"<class '{PAYLOAD[i : i + 15]}'> ready" for i in range(0, 15 * 40, 15)]
    screening = _screen().screen_log(("\n".join(lines) + "\n").encode(), final=True)
    assert sum(x.withheld for x in screening.lines) >= 0.9 * len(lines)


RTPLAN = pydicom.dcmread(get_testdata_file("rtplan.dcm"))  # a patient named Last^First^mid^pre


def test_a_traceback_is_shown_when_a_patient_is_named_last() -> None:
    identifiers = identifiers_from_dataset(RTPLAN)
    assert "Last" in identifiers
    screen = LogScreen.for_policies([_policy()], identifiers)
    lines = [
        "Traceback (most recent call last):",
        '  File "/code/train.py", line 12, in <module>',
        "ValueError: bad shape",
        "TRACEBACK (MOST RECENT CALL LAST):",
        "Requirement already satisfied: numpy in /usr/lib/python3/dist-packages",
    ]
    screening = screen.screen_log(("\n".join(lines) + "\n").encode(), final=True)
    assert [line for line, x in zip(lines, screening.lines, strict=True) if x.withheld] == []


def test_the_name_part_outside_the_phrase_and_the_full_name_inside_it_are_withheld() -> None:
    identifiers = identifiers_from_dataset(RTPLAN)
    screen = LogScreen.for_policies([_policy()], identifiers)
    patient_id = str(RTPLAN.PatientID)
    lines = [
        "patient Last",
        "the last call",
        "Traceback (most recent call last): First Last",
        f"Traceback (most recent call last): {patient_id}",
        "most recent call Last",
    ]
    screening = screen.screen_log(("\n".join(lines) + "\n").encode(), final=True)
    assert [x.withheld for x in screening.lines] == [True] * len(lines)


def test_a_token_of_capitals_that_is_no_name_is_judged_in_one_pass() -> None:
    # A run of capitals then a digit and a lower-case letter: a name pattern whose alternatives
    # could each take the capitals tried every split of the run (2^60 here) before refusing.
    token = "ABCDEFGHIJKLMNOPQRSTUVWXYZ" * 2 + "ABCDEFGH1a"
    lines = [f"<class '{token}'> ready"] * 3
    screening = _screen().screen_log(("\n".join(lines) + "\n").encode(), final=True)
    assert len(screening.lines) == 3
