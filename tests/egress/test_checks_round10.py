"""Round 10 of the planted-leak run (leaks14): every leak is caught by its class's check with
its fixed-vocabulary reason, the benign outputs of the same shapes raise no false alarm, and
what still passes is as documented. OCR is off (the metadata, header and table checks are
tested); the round's policy allows TIFF, models and archives (flagged) so that their content
checks run rather than the file-type refusal."""

from __future__ import annotations

from pathlib import Path

import pytest

from egress_review.checks import CheckContext
from tests.egress.planted_corpus import (
    assert_caught,
    build_dataset,
    default_policy_without_ocr,
    run_planted,
)
from tests.egress.planted_round10 import RELEASES, benign, known_limits, leaks
from tests.egress.round_harness import benign_test, earlier_release_context
from tre.policy import Policy

BENIGN = {p.name: (p, by_design) for p, by_design in benign()}
LIMITS = {p.name: p for p in known_limits()}
UNCERTAIN = (RELEASES, ("extension",), ("sdc:",))  # flagged for the reviewers, not blocked


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_dataset(tmp_path_factory.mktemp("dataset"))


@pytest.fixture(scope="module")
def policy() -> Policy:
    """The default policy (OCR off) allowing TIFF, models and archives, archives flagged."""
    base = default_policy_without_ocr()
    files = base.files.model_copy(
        update={
            "allowed_types": [*base.files.allowed_types, "tiff", "model", "zip", "gzip", "tar"],
            "archives": "flag",
        }
    )
    return base.model_copy(update={"files": files})


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory, dataset: Path, policy: Policy) -> CheckContext:
    """The corpus's dataset, and the project's earlier release (round 9's)."""
    return earlier_release_context(tmp_path_factory, policy, dataset)


def _names() -> list[str]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return sorted(p.name for p in leaks(build_dataset(Path(tmp))))


@pytest.mark.parametrize("name", _names())
def test_round10_leak_is_caught_by_its_class(
    name: str, tmp_path: Path, dataset: Path, policy: Policy, context: CheckContext
) -> None:
    planted = {p.name: p for p in leaks(dataset)}[name]
    assert_caught(run_planted(tmp_path, planted, policy, context), planted, UNCERTAIN)


test_round10_benign_output_raises_no_false_alarm = benign_test(BENIGN)


# round 10's two known limits are caught since leaks14b: tests/egress/test_checks_round10b.py


def test_reasons_shown_to_the_requester_are_fixed_words(
    tmp_path: Path, dataset: Path, policy: Policy, context: CheckContext
) -> None:
    """The split-date and release findings quote nothing the file holds."""
    planted = {p.name: p for p in leaks(dataset)}
    for name in ("birth_columns.csv", "sites_renamed.csv", "sites_today.md", "sites_today.xlsx"):
        for r in run_planted(tmp_path, planted[name], policy, context):
            if r.check in ("dates:split_columns", "sdc:differencing_releases"):
                for word in ("birth_year", "1962", "S1", "site,", "patients", "45", "51"):
                    assert word not in r.reason, (name, r.reason)


def test_split_dates_need_all_three_parts_of_one_name() -> None:
    from egress_review.checks.split_dates import split_dates

    rows = [["birth_year", "birth_month", "scan_day"], ["1962", "3", "15"]]
    assert list(split_dates(rows)) == []
    rows = [["Birth Year", "birth month", "birth day"], ["1962", "Mar", "15.0"]]
    assert list(split_dates(rows)) == ["1962-03-15"]


def test_corpus_sizes(dataset: Path) -> None:
    """The counts docs/egress-checks.md states."""
    assert len(leaks(dataset)) == 39 and len(BENIGN) == 11 and len(LIMITS) == 0
