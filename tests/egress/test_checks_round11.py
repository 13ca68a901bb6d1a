"""Round 11 of the planted-leak run (leaks15): differencing by subgroups, sample sizes,
numbers in words and captions; small cells in melted, spaced-thousands and bracket-suppressed
tables; dates in EXIF's own form. Each leak is caught by its class's check, the benign outputs
of the same shapes raise no false alarm, and what still passes is as documented. OCR is off;
the round's policy allows archives (flagged) so that their members are checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from egress_review.checks.number_words import words_to_digits
from egress_review.checks.released import extract_aggregates
from egress_review.checks.text_counts import prose_totals
from tests.egress import planted_round11
from tests.egress.planted_corpus import (
    default_policy_without_ocr,
)
from tests.egress.planted_round11 import RELEASES
from tests.egress.round_harness import (
    benign_test,
    by_name,
    fixed_words,
    leak_test,
    limits_test,
    round_fixtures,
)
from tre.policy import Policy

LEAKS, BENIGN, LIMITS = by_name(planted_round11)
UNCERTAIN = (RELEASES, ("member:",))  # flagged for the reviewers, not blocked


def _archives_policy() -> Policy:
    """The default policy (OCR off) allowing archives, flagged."""
    base = default_policy_without_ocr()
    files = base.files.model_copy(
        update={"allowed_types": [*base.files.allowed_types, "zip", "gzip", "tar"], "archives": "flag"}
    )
    return base.model_copy(update={"files": files})


policy, context = round_fixtures(_archives_policy)


test_round11_leak_is_caught_by_its_class = leak_test(
    LEAKS,
    UNCERTAIN,
    fixed_words("sdc:differencing_releases", ("99", "ninety", "arm", "control", "Overall"), earlier=True),
)


test_round11_benign_output_raises_no_false_alarm = benign_test(BENIGN)


test_round11_known_limits_are_as_documented = limits_test(LIMITS)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Ninety-nine patients", "99 patients"),
        ("one hundred and twelve cases", "112 cases"),
        ("a hundred people", "100 people"),
        ("two thousand three hundred and four", "2304"),
        ("two thousand patients", "2000 patients"),
        ("twenty one\nyears", "21\nyears"),
        ("three patients, one of them", "three patients, one of them"),  # lone words stay
        ("plenty of twentysomethings", "plenty of twentysomethings"),
    ],
)
def test_compound_numbers_in_words_are_read_as_digits(text: str, expected: str) -> None:
    assert words_to_digits(text) == expected


def test_a_sample_size_is_a_total_only_where_it_says_so() -> None:
    """N is the whole sample by convention; a small n only after a word for the whole."""
    assert prose_totals("Patients (N = 99) were followed.") == [("patients", 99)]
    assert prose_totals("The cohort (n=140) was followed.") == [("patients", 140)]
    assert prose_totals("At site A (n = 45) follow-up was 24 months.") == []
    assert prose_totals("batch N=512, epochs=50") == [("patients", 512)]  # a total, compared only


def test_a_breakdown_is_stored_with_its_sum_by_dimension(tmp_path: Path) -> None:
    """So a later breakdown of the same dimension, under other category names, compares."""
    policy = default_policy_without_ocr()
    path = tmp_path / "t.csv"
    path.write_bytes(b"Arm,patients\nexperimental,51\nstandard,48\n")
    assert extract_aggregates(path, "t.csv", policy)["sum:arm@total"] == 99.0
    path.write_bytes(b"arm,patients\nexperimental,51\nTotal,99\n")  # a stated total is itself
    assert "sum:arm@total" not in extract_aggregates(path, "t.csv", policy)
    path = tmp_path / "t.json"
    path.write_bytes(b'{"by_arms": {"a": 50, "b": 50}}')
    assert extract_aggregates(path, "t.json", policy)["sum:arm@total"] == 100.0


def test_corpus_sizes() -> None:
    """The counts docs/egress-checks.md states."""
    assert len(LEAKS) == 38 and len(BENIGN) == 20 and len(LIMITS) == 2


def test_a_breakdown_sum_compares_only_with_a_dimension_released_whole() -> None:
    """Arms 50 + 50 of 100 were released: arms summing to 99 leave one out; sites summed to
    127, not a released total, so two new sites summing to 135 are other people."""
    from egress_review.checks.released import Released, differences

    released = {
        "patients@total": [Released(100.0, "r1")],
        "sum:arm@total": [Released(100.0, "r1")],
        "sum:site@total": [Released(127.0, "r1")],
    }
    assert list(differences({"sum:arm@total": 99.0}, released, 10)) == [("sum:arm@total", "r1")]
    assert list(differences({"sum:arm@total": 100.0}, released, 10)) == []
    assert list(differences({"sum:site@total": 135.0}, released, 10)) == []


def test_a_summary_group_is_the_count_of_its_category() -> None:
    """``{"by_site": {"B": 51}}`` compares with a released ``site,n`` table's ``B,52``."""
    from egress_review.checks.released import canonical_key

    assert canonical_key("by_site@b") == canonical_key("n@b") == "n@b"
    assert canonical_key("relapsed_by_site@b") == "relapsed_by_site@b"
    assert canonical_key("sum:site@total") == "sum:site@total"
