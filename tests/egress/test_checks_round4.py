"""Round 4 of the planted-leak run (redteam8): every leak is caught by its class's check, and
the controls raise none of the new checks. OCR is off: no leak here needs it, and it is slow."""

from __future__ import annotations

from pathlib import Path

import pytest

from egress_review.checks import CheckContext, CheckResult, gather_identifiers, run_checks, worst
from tests.egress.planted_corpus import Planted, build_dataset
from tests.egress.planted_round4 import controls, leaks
from tre.policy import Policy, load_policy

POLICIES = Path(__file__).resolve().parents[2] / "policies"
NEW_CHECKS = (
    "identifiers:disguised",
    "identifiers:parts",
    "image:similar_to_input",
    "model:similar_to_input",
    "model:identifiers",
    "table_binary",
    "sdc:image_table",
)


@pytest.fixture(scope="module")
def policy() -> Policy:
    base = load_policy("default", POLICIES)
    return base.model_copy(update={"image": base.image.model_copy(update={"ocr": False})})


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_dataset(tmp_path_factory.mktemp("dataset"))


@pytest.fixture(scope="module")
def context(dataset: Path, policy: Policy) -> CheckContext:
    ids = gather_identifiers(dataset, identifier_columns=policy.text.identifier_columns)
    return CheckContext(identifiers=ids, file_count=1, total_size=0, dataset_paths=[dataset])


def _run(tmp_path: Path, planted: Planted, policy: Policy, context: CheckContext) -> list[CheckResult]:
    path = tmp_path / planted.name
    path.write_bytes(planted.data)
    return run_checks(path, planted.name, policy, context)


def test_every_round4_leak_is_caught_by_its_class(
    tmp_path: Path, dataset: Path, policy: Policy, context: CheckContext
) -> None:
    missed, wrong = [], []
    for planted in leaks(dataset):
        results = _run(tmp_path, planted, policy, context)
        fired = [r.check for r in results if r.outcome != "pass"]
        if worst(results) == "pass":
            missed.append(planted.name)
        elif not any(f.startswith(planted.caught_by) for f in fired):
            wrong.append(f"{planted.name}: expected {planted.caught_by}, got {fired}")
    assert not missed, f"leaks that passed: {missed}"
    assert not wrong, "\n".join(wrong)


def test_identifier_leaks_block(tmp_path: Path, dataset: Path, policy: Policy, context: CheckContext) -> None:
    """An identifier found is a block under the default policy, not a flag for the reviewers."""
    for planted in leaks(dataset):
        if any("identifiers" in c for c in planted.caught_by):
            assert worst(_run(tmp_path, planted, policy, context)) == "block", planted.name


def test_controls_raise_none_of_the_new_checks(tmp_path: Path, policy: Policy, context: CheckContext) -> None:
    for planted in controls():
        fired = [r.check for r in _run(tmp_path, planted, policy, context) if r.outcome != "pass"]
        assert not [f for f in fired if f.startswith(NEW_CHECKS)], f"{planted.name}: {fired}"


def test_disguised_reason_is_fixed_words(
    tmp_path: Path, dataset: Path, policy: Policy, context: CheckContext
) -> None:
    """The requester sees which lines, never the decoded text."""
    planted = next(p for p in leaks(dataset) if p.name == "rot13.txt")
    hit = next(r for r in _run(tmp_path, planted, policy, context) if r.check == "identifiers:disguised")
    assert "HOSP" not in hit.reason.upper() and "UBFC" not in hit.reason.upper()
    assert hit.evidence == {"lines": [1], "count": 1}
