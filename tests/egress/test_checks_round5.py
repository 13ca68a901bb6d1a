"""Round 5 of the planted-leak run (redteam9): every leak is caught by its class's check, and
realistic research outputs raise no false alarm (a model goes to model-release review by
design). OCR is off: no leak here needs it, and it is slow."""

from __future__ import annotations

from pathlib import Path

import pytest

from egress_review.checks import CheckContext, worst
from tests.egress.planted_corpus import build_dataset, check_context, default_policy_without_ocr, run_planted
from tests.egress.planted_round5 import benign, leaks
from tre.policy import Policy


@pytest.fixture(scope="module")
def policy() -> Policy:
    return default_policy_without_ocr()


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory, policy: Policy) -> CheckContext:
    return check_context(build_dataset(tmp_path_factory.mktemp("dataset")), policy)


def test_every_round5_leak_is_caught_by_its_class(
    tmp_path: Path, policy: Policy, context: CheckContext
) -> None:
    missed, wrong = [], []
    for planted in leaks():
        results = run_planted(tmp_path, planted, policy, context)
        fired = [r.check for r in results if r.outcome != "pass"]
        if worst(results) == "pass":
            missed.append(planted.name)
        elif not any(f.startswith(planted.caught_by) for f in fired):
            wrong.append(f"{planted.name}: expected {planted.caught_by}, got {fired}")
        if planted.caught_by == ("identifiers",):
            assert worst(results) == "block", planted.name
    assert not missed, f"leaks that passed: {missed}"
    assert not wrong, "\n".join(wrong)


def test_split_reason_names_lines_not_the_parts(
    tmp_path: Path, policy: Policy, context: CheckContext
) -> None:
    (split,) = [p for p in leaks() if p.name == "split_mrn.txt"]
    (result,) = [r for r in run_planted(tmp_path, split, policy, context) if r.check == "identifiers:split"]
    assert result.evidence == {"lines": [2], "count": 1}
    assert "0048" not in result.reason and "213" not in result.reason


def test_benign_research_outputs_raise_no_false_alarm(
    tmp_path: Path, policy: Policy, context: CheckContext
) -> None:
    alarms = []
    for planted, by_design in benign():
        fired = [r.check for r in run_planted(tmp_path, planted, policy, context) if r.outcome != "pass"]
        unexpected = [f for f in fired if f not in by_design]
        if unexpected or (by_design and not fired):
            alarms.append(f"{planted.name}: {fired}")
    assert not alarms, "\n".join(alarms)


def test_the_log_screen_withholds_labelled_parts_tag_smuggled_and_leet_names(policy: Policy) -> None:
    """The log is the same channel as a file: what `identifiers:split` blocks in a file is
    withheld from the screened log, every line of it; an honest log with numbers is shown."""
    from egress_review.logscreen import LogScreen

    screen = LogScreen.for_policies([policy], {"DOE^JANE", "DOE", "JANE", "MRN-0048213", "19620315"})
    tags = "".join(chr(0xE0000 + ord(c)) for c in "DOE JANE")
    log = (
        "epoch 1 loss 0.48213 dice 0.0048\n"
        "MRN part 1: 0048\n"
        "note: continuing\n"
        "MRN part 2: 213\n"
        f"done{tags}\n"
        "greetings D03 J4N3\n"
        "year 1962\nmonth 03\nday 15\n"
        "epoch 2 step 1962 loss 0.0315 lr 1.0e-04\n"
    ).encode()
    shown = screen.render(screen.screen_log(log, final=True), 0).decode()
    assert "part 1" not in shown and "part 2" not in shown, shown
    assert "year 1962" not in shown and "month 03" not in shown and "day 15" not in shown, shown
    assert "DOE" not in shown.upper().replace("[TRE]", "") and "J4N3" not in shown
    assert "epoch 1 loss 0.48213 dice 0.0048" in shown and "note: continuing" in shown
    assert "epoch 2 step 1962 loss 0.0315" in shown
