"""Round 13 of the planted-leak run (leaks17): shares whose whole the checks can know (another
output of the request, the same document, a subgroup's size in prose), shares as JSON strings
and fractions, shares of people named with a metric's word. Each leak is caught by its class's
check, the benign look-alikes (metric tables, rates per 1000 person-years, large shares) raise
no false alarm, and what still passes is as documented. OCR is off."""

from __future__ import annotations

import pytest

from egress_review.checks import CheckResult
from egress_review.checks.shares import is_metric, pct_column, pct_value
from egress_review.checks.subgroup_shares import table_subgroup_shares
from tests.egress import planted_round13
from tests.egress.planted_round13 import PROSE, RELEASED_SHARE, REQUEST_SHARE
from tests.egress.round_harness import (
    benign_test,
    by_name,
    fixed_words,
    leak_test,
    limits_test,
    round_fixtures,
)

LEAKS, BENIGN, LIMITS = by_name(planted_round13)
UNCERTAIN = (REQUEST_SHARE, RELEASED_SHARE, PROSE)  # flagged for the reviewers, not blocked


policy, context = round_fixtures()


def _request_share_words(name: str, results: list[CheckResult]) -> None:
    """Fixed words and file names of the request: nothing the file holds."""
    fixed_words("sdc:request_share", ("withdr", "died", "relaps", "6.1", "33"))(name, results)
    for r in results:
        if r.check == "sdc:request_share":
            # which file states the whole (the job's file names): reviewers only
            assert set(r.evidence) == {"threshold", "count", "reviewer_only"}, r.evidence
            assert r.evidence["reviewer_only"]["files"], r.evidence


test_round13_leak_is_caught_by_its_class = leak_test(LEAKS, UNCERTAIN, _request_share_words)


test_round13_benign_output_raises_no_false_alarm = benign_test(BENIGN)


test_round13_known_limits_are_as_documented = limits_test(LIMITS)


def test_corpus_sizes() -> None:
    """The counts docs/egress-checks.md states."""
    assert len(LEAKS) == 24 and len(BENIGN) == 12 and len(LIMITS) == 1


@pytest.mark.parametrize(
    ("name", "metric"),
    [
        ("dice", True),
        ("TPR", True),
        ("fpr", True),
        ("mape", True),
        ("hd95", True),
        ("mean_volume_change", True),  # a measured change (leaks18: by "mean"; round 14: context)
        ("sensitivity", True),
        ("progressed", False),  # the substring "progress" named people who progressed
        ("recalled", False),  # "recall" named people recalled for screening
        ("changed_regimen", False),  # "change"
        ("died", False),
        ("relapse", False),
    ],
)
def test_a_shares_name_is_a_metric_by_its_words(name: str, metric: bool) -> None:
    assert is_metric(name) is metric


@pytest.mark.parametrize(
    ("header", "cell", "share"),
    [
        ("relapse_rate", "0.0303", (3.03, 2)),  # a fraction of the row's people
        ("Relapse rate", "0.25", (25.0, 0)),
        ("rate_per_1000_py", "24.9", None),  # per person-time: no share of anyone
        ("learning_rate", "0.03", None),
        ("heart_rate", "0.9", None),
    ],
)
def test_a_rate_is_a_share_only_as_a_fraction_of_people(
    header: str, cell: str, share: tuple[float, int] | None
) -> None:
    assert (pct_value(cell, header) if pct_column(header) is not None else None) == share


def test_a_subgroup_size_applies_only_to_the_table_right_below_it() -> None:
    table = "| outcome | % |\n|---|---|\n| relapsed | 25.0 |\n"
    assert [s for _, s in table_subgroup_shares(f"Of the 12 women:\n\n{table}", 10)] == ["25.0 % of 12"]
    assert table_subgroup_shares(f"Of the 12 women:\n\nSome text.\n\nMore text.\n\n{table}", 10) == []
    assert table_subgroup_shares(f"Of the 40 women:\n\n{table}", 10) == []  # 10 of 40
    dice = "| metric | % |\n|---|---|\n| dice | 91.7 |\n"
    assert table_subgroup_shares(f"Of the 12 women:\n\n{dice}", 10) == []
