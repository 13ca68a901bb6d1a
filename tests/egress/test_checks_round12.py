"""Round 12 of the planted-leak run (leaks16): shares whose count was never released, counting
idioms, long tables mixing counts with measurements. Each leak is caught by its class's check,
the benign outputs of the same shapes (long tables by month and outcome among them) raise no
false alarm, and what still passes is as documented. OCR is off."""

from __future__ import annotations

import pytest

from egress_review.checks.number_words import words_to_digits
from egress_review.checks.released import Released, small_shares
from egress_review.checks.tables import _measured_label
from egress_review.checks.text_counts import prose_counts
from tests.egress import planted_round12
from tests.egress.planted_corpus import (
    default_policy_without_ocr,
)
from tests.egress.planted_round12 import PROSE, RELEASED_SHARE, RELEASES
from tests.egress.round_harness import (
    benign_test,
    by_name,
    fixed_words,
    leak_test,
    limits_test,
    round_fixtures,
)

LEAKS, BENIGN, LIMITS = by_name(planted_round12)
UNCERTAIN = (RELEASED_SHARE, RELEASES, PROSE)  # flagged for the reviewers, not blocked


policy, context = round_fixtures()


test_round12_leak_is_caught_by_its_class = leak_test(
    LEAKS, UNCERTAIN, fixed_words("sdc:released_share", ("withdr", "died", "3.8", "cohort"), earlier=True)
)


test_round12_benign_output_raises_no_false_alarm = benign_test(BENIGN)


test_round12_known_limits_are_as_documented = limits_test(LIMITS)


def test_corpus_sizes() -> None:
    """The counts docs/egress-checks.md states."""
    assert len(LEAKS) == 26 and len(BENIGN) == 17 and len(LIMITS) == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Half a dozen patients", "6 patients"),
        ("a half-dozen cases", "6 cases"),
        ("A dozen patients", "12 patients"),
        ("two dozen cases", "24 cases"),
        ("a dozen of the patients", "12 of the patients"),  # "of" stays: it is not the idiom's
        ("A couple of patients withdrew", "2 patients withdrew"),
        ("a pair of patients", "2 patients"),
        ("A score of patients", "20 patients"),
        ("a Gleason score of 7", "a Gleason score of 7"),  # a score, not twenty
        ("a score of the test", "a score of the test"),
        ("Dozens of patients", "Dozens of patients"),  # no number
        ("a couple\nof patients", "a couple\nof patients"),  # lines stay
    ],
)
def test_counting_idioms_are_read_as_digits(text: str, expected: str) -> None:
    assert words_to_digits(text) == expected


@pytest.mark.parametrize(
    ("label", "measured"),
    [
        ("median_months", True),
        ("time_to_event_months", True),
        ("age_mean", True),
        ("relapsed", False),
        ("relapsed_within_6_months", False),  # people, counted at a time point
        ("6_months", False),
        ("3", False),
    ],
)
def test_a_long_tables_label_names_a_measurement_or_people(label: str, measured: bool) -> None:
    assert _measured_label(label) is measured


def test_a_share_of_a_released_total_is_a_count_only_where_one_whole_count_fits() -> None:
    """3.0 % of 100 is 3; 11.1 % of 100 fits no whole count (a share of another total); a
    metric's share is no count; a share of site B is of site B's released count."""
    released = {"n@total": [Released(100.0, "r1")], "n@b": [Released(52.0, "r1")]}
    assert list(small_shares({"pct1:withdrawn@total": 3.0}, released, 10)) == [("pct1:withdrawn@total", "r1")]
    assert list(small_shares({"pct1:withdrawn@total": 11.1}, released, 10)) == []
    assert list(small_shares({"pct1:withdrawn@total": 15.0}, released, 10)) == []
    assert list(small_shares({"pct1:sensitivity@total": 5.0}, released, 10)) == []
    assert list(small_shares({"pct1:died@b": 3.8}, released, 10)) == [("pct1:died@b", "r1")]
    assert list(small_shares({"pct1:died@c": 3.8}, released, 10)) == []  # nothing released for C


def test_a_percentage_of_a_one_digit_total_in_prose() -> None:
    rules = default_policy_without_ocr().sdc
    assert prose_counts("Withdrawal: 12.5 % (of 8).", rules)
    assert prose_counts("12.5 % of 8 eligible patients", rules)
    assert not prose_counts("In 80 % of 5 cross-validation folds the model converged.", rules)
    assert not prose_counts("Response: 33.3 % (of 7).", rules)  # 2.33: no whole count fits
    assert not prose_counts("a dose of 2.5 % of 120.5 ml", rules)
