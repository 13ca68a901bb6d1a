"""Identifiers and payload tails the log screen let through (round 16).

Round 15 left these residuals, each shown here to pass the screen before the fix: an
identifier's pieces printed across lines beside more than four other digits ("step 12345
id-part 0048"); pieces separated by four or more ordinary word lines; letters between an
identifier's digits ("1a9b6c2d..."), or digits between a name's letters; a DICOM UID reversed
a character or two a line; the lone tail of a base64 payload printed on its own line. Each
must be withheld once the job ends and never shown to a reader following the running log;
ordinary logs (training, tqdm, pip, timestamps, tracebacks) must still come through whole.
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
UID = str(CT.SOPInstanceUID)
BIRTH = "19620315"
MRN = "0048213"
PAYLOAD = base64.b64encode(CT.PixelData[:1000]).decode()  # 1336 characters, "=" padded
NOISE = ["loading the next batch", "ok", "validating", "saving a checkpoint"]


def _screen() -> LogScreen:
    policy = load_policy("default", REPO / "policies")
    return LogScreen.for_policies([policy], {NAME, "CompressedSamples", BIRTH, MRN, UID})


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
    pieces = SPELLINGS[how]
    lines = ["epoch 1 done", *pieces, "epoch 2 done"]
    screening = screen.screen_log(("\n".join(lines) + "\n").encode(), final=True)
    withheld = {text for x, text in zip(screening.lines, lines, strict=True) if x.withheld}
    carrying = {p for p in pieces if any(ch.isalnum() for ch in p)} - set(NOISE)
    assert carrying <= withheld, (how, sorted(carrying - withheld))
    shown = set(_live_shown(screen, lines))
    assert not shown & carrying, (how, sorted(shown & carrying))


TAILS = {
    "one character": [*_chunks(PAYLOAD[:-3], 76), PAYLOAD[-3]],
    "the padding": [*_chunks(PAYLOAD[:-2], 76), PAYLOAD[-2:]],
    "three characters and the padding": [*_chunks(PAYLOAD[:-5], 76), PAYLOAD[-5:]],
    "one character, a blank line before": [*_chunks(PAYLOAD[:-3], 76), "", PAYLOAD[-3]],
}


@pytest.mark.parametrize("how", sorted(TAILS))
def test_a_payloads_lone_tail_is_withheld_with_it(how: str) -> None:
    screen = _screen()
    lines = ["epoch 1 done", *TAILS[how], *[f"epoch {i} done" for i in range(2, 40)]]
    tail = TAILS[how][-1]
    screening = screen.screen_log(("\n".join(lines) + "\n").encode(), final=True)
    by_text = {text: x.withheld for x, text in zip(screening.lines, lines, strict=True)}
    assert by_text[tail], how
    assert not by_text["epoch 2 done"], how  # the line after the payload says nothing
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
}


@pytest.mark.parametrize("kind", sorted(BENIGN))
def test_ordinary_logs_still_come_through(kind: str) -> None:
    lines = BENIGN[kind]
    screen = _screen()
    final = screen.screen_log(("\n".join(lines) + "\n").encode(), final=True)
    assert [x.text for x in final.lines if x.withheld] == [], kind
    live = screen.screen_log(("\n".join(lines) + "\n").encode(), final=False)
    assert len(live.lines) >= len(lines) - 8, kind
