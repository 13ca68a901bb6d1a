"""Round 14 of the planted-leak run (leaks18): shares of the dataset's own cohort (counted from
its distinct PatientIDs), shares of people named as a measured change, a breakdown's group
shares in JSON/YAML, percentages with a decimal comma. Each leak is caught by its class's check,
the benign look-alikes (shares of voxels and slices, a mean change beside a model's metrics, a
signed change column, large groups) raise no false alarm, and what still passes is as
documented. OCR is off."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from egress_review.checks import CheckContext
from egress_review.checks.derived_counts import _all_percent
from egress_review.checks.identifiers import dataset_patients
from egress_review.checks.released import extract_aggregates
from egress_review.checks.shares import is_metric, is_percent_string
from egress_review.checks.tables import classify
from tests.egress import planted_round14
from tests.egress.planted_corpus import (
    run_planted,
)
from tests.egress.planted_round14 import (
    COHORT,
    RELEASED_SHARE,
    REQUEST_SHARE,
    build_cohort,
)
from tests.egress.round_harness import (
    benign_test,
    by_name,
    earlier_release_context,
    fixed_words,
    leak_test,
    limits_test,
    round_fixtures,
)
from tre.policy import Policy

LEAKS, BENIGN, LIMITS = by_name(planted_round14)
policy = round_fixtures()[0]
UNCERTAIN = (REQUEST_SHARE, RELEASED_SHARE)  # flagged for the reviewers, not blocked


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_cohort(tmp_path_factory.mktemp("cohort"))


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory, policy: Policy, cohort: Path) -> CheckContext:
    """The 33-patient dataset, and the project's earlier release (round 9's)."""
    return earlier_release_context(tmp_path_factory, policy, cohort)


test_round14_leak_is_caught_by_its_class = leak_test(
    LEAKS, UNCERTAIN, fixed_words("sdc:request_share", ("withdr", "relaps", "dose", "6.1", "33"))
)


test_round14_benign_output_raises_no_false_alarm = benign_test(BENIGN)


test_round14_known_limits_are_as_documented = limits_test(LIMITS)


def test_corpus_sizes() -> None:
    """The counts docs/egress-checks.md states."""
    assert len(LEAKS) == 24 and len(BENIGN) == 18 and len(LIMITS) == 1


def test_the_cohort_is_the_distinct_patient_ids(cohort: Path, tmp_path: Path) -> None:
    """Counted from the DICOM headers (a patient's second series is no second patient)."""
    assert len(dataset_patients(cohort)) == COHORT
    two_series = build_cohort(tmp_path / "two", patients=3)
    build_cohort(tmp_path / "two" / "again", patients=3)  # the same PatientIDs again
    assert len(dataset_patients(two_series)) == 3


def test_the_dataset_cohort_is_read_only_where_no_whole_is_stated(
    tmp_path: Path, policy: Policy, context: CheckContext
) -> None:
    """Without the counted cohort the same share passes: the finding is the dataset's whole."""
    bare = dataclasses.replace(context, cohort_size=None)
    planted = LEAKS["withdrew_dataset.txt"]
    assert not [r for r in run_planted(tmp_path, planted, policy, bare) if r.outcome != "pass"]


@pytest.mark.parametrize(
    ("name", "siblings", "metric"),
    [
        ("dose_reduction_pct", (), False),  # people whose dose was reduced
        ("weight_loss_pct", (), False),  # "loss" is also a model's word
        ("volume_change_pct", ("arm", "n"), True),  # leaks19: a change with no direction
        ("hu_shift_pct", (), True),  # is a measurement's (`shares.undirected_change`)
        ("mean_dose_reduction_pct", (), True),  # a statistic of a measurement
        ("relative_volume_change", (), True),
        ("volume_change_pct", ("dice_pct", "n"), True),  # beside a model's metric
        ("volume_change_pct", ("diameter_mm",), True),  # beside a measurement in a unit
        ("size_reduction_pct", ("relapsed_pct",), False),
        ("voxels_pct", (), True),  # shares of things
        ("lesion_volume_pct", (), True),
        ("slices", (), True),
        ("lesions_progressed_pct", (), True),  # what happened to lesions
        ("patients_with_progressed_lesions", (), False),  # a noun for people wins
        ("test_pct", (), True),  # a data split's share
        ("validation_fraction", (), True),
        ("test_positive_pct", (), False),  # people who tested positive
        ("pct", (), False),  # a bare share column: of the row's people
        ("relapsed", ("voxels_pct",), False),
        ("patients_with_dose_reduction", ("dice",), False),  # a people word wins
    ],
)
def test_a_measured_change_is_a_metric_by_its_name_or_its_table(
    name: str, siblings: tuple[str, ...], metric: bool
) -> None:
    assert is_metric(name, siblings) is metric


@pytest.mark.parametrize(
    ("cell", "share"),
    [
        ("3.0%", True),
        ("6,1%", True),  # a decimal comma: a table's cell rule refused it before leaks18
        (" 15,2 % ", True),
        ("-2.5%", False),  # a signed change: the cell rule took it before leaks18
        ("+3.0%", False),
        ("1200%", False),
        ("3.0", False),
        ("n/a", False),
    ],
)
def test_one_rule_reads_a_percentage_string(cell: str, share: bool, policy: Policy) -> None:
    """The JSON string's rule and a table column's rule are one."""
    assert is_percent_string(cell) is share
    table = classify([["arm", "x"], ["a", cell]], policy.sdc)
    assert _all_percent(table, 1) is share


def test_a_group_share_is_of_the_group(tmp_path: Path, policy: Policy) -> None:
    """``{"by_site": {"A": "6.8%"}}`` is a share of site A's people (``share@a``), and a
    group's own row states its counts (``n@a``), not a share of the cohort."""
    path = tmp_path / "g.json"
    path.write_text('{"by_site": {"A": "6.8%", "B": {"n": 12, "relapse": "8.3%"}}}')
    got = extract_aggregates(path, "g.json", policy)
    assert got["pct1:share@a"] == 6.8 and got["n@b"] == 12 and got["relapse@b"] == 1
    assert not [k for k in got if k.endswith("@total")]


def test_the_request_context_counts_the_datasets_patients_once(tmp_path: Path) -> None:
    """`checking.make_context` gives the checks the union of the datasets' PatientIDs: two
    datasets of the same 3 patients are 3 people, not 6 (a dataset of clinical tables only:
    round 15)."""
    from egress_review.checking import make_context
    from tre.store.models import Dataset

    first = Dataset(id="d1", name="d1", path=str(build_cohort(tmp_path / "first", patients=3)))
    again = Dataset(id="d2", name="d2", path=str(build_cohort(tmp_path / "again", patients=3)))
    assert make_context(set(), 1, 0, [first, again]).cohort_size == 3
