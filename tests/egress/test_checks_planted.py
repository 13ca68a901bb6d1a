"""The planted-leak run of issue 10: no leak passes, at most one harmless control is flagged."""

from __future__ import annotations

from pathlib import Path

import pytest

from egress_review.checks import CheckContext, CheckResult, ocr, worst
from tests.egress.planted_corpus import Planted, build_dataset, check_context, controls, leaks, run_planted
from tre.policy import Policy, load_policy

POLICIES = Path(__file__).resolve().parents[2] / "policies"
pytestmark = pytest.mark.skipif(not ocr.available(), reason="needs Debian tesseract-ocr")


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy("default", POLICIES)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_dataset(tmp_path_factory.mktemp("dataset"))


@pytest.fixture(scope="module")
def context(dataset: Path, policy: Policy) -> CheckContext:
    return check_context(dataset, policy)


@pytest.fixture(scope="module")
def leak_results(
    tmp_path_factory: pytest.TempPathFactory, dataset: Path, policy: Policy, context: CheckContext
) -> list[tuple[Planted, list[CheckResult]]]:
    """Every planted leak with the checks' results, run once for the module's tests (the
    checks are deterministic; two tests running the same leaks again cost ~10 s on CI)."""
    folder = tmp_path_factory.mktemp("leaks")
    return [(planted, run_planted(folder, planted, policy, context)) for planted in leaks(dataset)]


def test_corpus_has_every_leak_class(dataset: Path) -> None:
    names = [p.name for p in leaks(dataset)]
    assert len(names) == len(set(names)) and len(names) >= 56
    assert len(controls(dataset)) >= 12


def test_no_planted_leak_passes(leak_results: list[tuple[Planted, list[CheckResult]]]) -> None:
    missed: list[str] = []
    wrong_reason: list[str] = []
    for planted, results in leak_results:
        fired = [r.check for r in results if r.outcome != "pass"]
        if worst(results) == "pass":
            missed.append(planted.name)
        elif not any(f.startswith(planted.caught_by) for f in fired):
            wrong_reason.append(f"{planted.name}: expected {planted.caught_by}, got {fired}")
    assert not missed, f"leaks that passed: {missed}"
    assert not wrong_reason, "\n".join(wrong_reason)


def test_at_most_one_control_flagged(
    tmp_path: Path, dataset: Path, policy: Policy, context: CheckContext
) -> None:
    flagged = {}
    for planted in controls(dataset):
        results = run_planted(tmp_path, planted, policy, context)
        # a bar chart's "check bar heights" note (leaks13) is by design on dice.png, not an alarm
        notes = [r for r in results if r.outcome != "pass" and r.check != "figure:bars"]
        if worst(notes) != "pass":
            flagged[planted.name] = [f"{r.check}: {r.reason}" for r in notes]
    assert len(flagged) <= 1, flagged


def test_every_finding_says_what_and_where(leak_results: list[tuple[Planted, list[CheckResult]]]) -> None:
    for planted, results in leak_results:
        for r in results:
            if r.outcome != "pass":
                assert len(r.reason) > 30, (planted.name, r)
