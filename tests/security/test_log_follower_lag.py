"""A researcher following a running job's log sees each ordinary line once the next one is
out: the screen may hold back only the last line (it could be the start of an identifier the
next line finishes). A stricter screen (round 16, reverted) held every line of a counting log
while a chain of digits "was open", so `tre logs -f` showed nothing of "step 1 of 3 / step 2
of 3" (CI's test_ctrl_c_while_following_says_the_job_continues timed out).

Round 19: the older waits for an identifier's start wrapped over lines (`SqueezedIndex`,
rounds 14-15) and for a labelled part's next part (`SplitIndex`) still held up to six lines
of ordinary training logs, pip's output, tracebacks and model summaries (measured on the
corpora below, 120 lines each: 134 of 1,237 lines held beyond the last with one series'
identifiers, 239 with those of every pydicom test file; a line waited up to 6 polls)."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from egress_review.checks.identifiers import identifiers_from_dataset
from egress_review.logscreen import LogScreen
from tests.security import test_log_false_alarms_round17 as round17
from tests.security import test_log_residuals_round18 as round18
from tre.policy import load_policy

REPO = Path(__file__).resolve().parents[2]
RUNNING_LOGS = {
    "two steps": ["step 1 of 3", "step 2 of 3"],
    "three epochs": ["epoch 1 loss 0.52", "epoch 2 loss 0.48", "epoch 3 loss 0.45"],
    "steps": [f"step {i} of 12" for i in range(1, 13)],
    "epochs": [f"epoch {i} loss {1 / (i + 1):.4f} val_dice {0.5 + i / 40:.4f}" for i in range(1, 13)],
    "batches": [f"[{i:>3}/120] lr 1e-4 time 0.{i % 10}3 s" for i in range(1, 40)],
    "own dates": [f"2026-11-{d:02d} 10:0{d % 10}:00 checkpoint {d}" for d in range(1, 20)],
}


@pytest.mark.parametrize("name", sorted(RUNNING_LOGS))
def test_a_running_counting_log_shows_all_but_its_last_line(name: str) -> None:
    identifiers = identifiers_from_dataset(pydicom.dcmread(get_testdata_file("CT_small.dcm")))
    screen = LogScreen.for_policies([load_policy("default", REPO / "policies")], identifiers)
    lines = RUNNING_LOGS[name]
    log = "".join(f"{line}\n" for line in lines).encode()
    shown = screen.render(screen.screen_log(log, final=False), 0).decode().splitlines()
    assert shown[: len(lines) - 1] == lines[:-1], shown
    final = screen.render(screen.screen_log(log, final=True), 0).decode().splitlines()
    assert final == lines


# Ordinary logs of rounds 17 and 18 (training with word lines between the numbers, pip, git,
# docker, tracebacks, tqdm, quoted class names, model summaries), as a follower reads them.
BENIGN = {
    **{f"round 18: {k}": v for k, v in round18.BENIGN.items()},
    **{f"round 17: {k}": v for k, v in round17.BENIGN.items()},
    "model summary": round18.MODEL_SUMMARY,
}
FOLLOWED_LINES = 40


def _screens() -> dict[str, LogScreen]:
    return {"planted": round18._screen(), "every test file": round17._screen("every test file")}


@pytest.mark.parametrize("kind", sorted(BENIGN))
def test_no_line_of_a_running_ordinary_log_waits_beyond_the_last(kind: str) -> None:
    lines = BENIGN[kind][:FOLLOWED_LINES]
    raw = ("\n".join(lines) + "\n").encode()
    for which, screen in _screens().items():
        at = 0
        for n, line in enumerate(lines, start=1):
            at += len(line.encode()) + 1
            shown = screen.screen_log(raw[:at], final=False).lines
            assert len(shown) >= n - 1, (kind, which, lines[len(shown) : n])
