"""Round 10b of the planted-leak run (leaks14b): differencing against the project's earlier
release through shares, prose totals, derived and cumulative counts, rounding and other files:
each leak is flagged for the reviewers with the fixed-vocabulary reason, the benign outputs of
the same shapes raise no false alarm, and what still passes is as documented."""

from __future__ import annotations

from pathlib import Path

from egress_review.checks.released import extract_aggregates
from tests.egress import planted_round10b
from tests.egress.planted_round10b import RELEASES
from tests.egress.round_harness import (
    benign_test,
    by_name,
    fixed_words,
    leak_test,
    limits_test,
    round_fixtures,
)
from tre.policy import Policy

LEAKS, BENIGN, LIMITS = by_name(planted_round10b)


policy, context = round_fixtures()


test_round10b_leak_is_flagged_for_the_reviewers = leak_test(
    LEAKS,
    (RELEASES,),
    fixed_words(
        "sdc:differencing_releases", ("relapsed", "patients", "11.0", "99", "age", "cumulative"), earlier=True
    ),
)


test_round10b_benign_output_raises_no_false_alarm = benign_test(BENIGN)


test_round10b_known_limits_are_as_documented = limits_test(LIMITS)


def test_a_share_with_its_denominator_is_stored_as_the_count(tmp_path: Path, policy: Policy) -> None:
    """So a later release of the count itself compares with it, in either order."""
    path = tmp_path / "t.csv"
    path.write_bytes(b"site,n,relapsed (%)\nA,45,20.0\nB,52,9.6\n")
    assert extract_aggregates(path, "t.csv", policy) == {
        "n@a": 45.0,
        "relapsed@a": 9.0,
        "n@b": 52.0,
        "relapsed@b": 5.0,
        "sum:site@total": 97.0,  # the breakdown's sum (leaks15)
    }
    path.write_bytes(b"cohort,relapsed_pct\nall,11.0\n")
    assert extract_aggregates(path, "t.csv", policy) == {"pct1:relapsed@total": 11.0}


def test_a_count_compares_with_a_released_share(tmp_path: Path, policy: Policy) -> None:
    """Released: 12.0 % of 100 (12 people); now a count of 11 of the same: flagged."""
    from egress_review.checks.released import Released, differences

    released = {
        "pct1:relapsed@total": [Released(12.0, "r1")],
        "patients@total": [Released(100.0, "r1")],
    }
    assert list(differences({"relapsed@total": 11.0}, released, 10)) == [("relapsed@total", "r1")]
    assert list(differences({"relapsed@total": 12.0}, released, 10)) == []
    assert list(differences({"relapsed@total": 40.0}, released, 10)) == []


def test_corpus_sizes() -> None:
    """The counts docs/egress-checks.md states."""
    assert len(LEAKS) == 15 and len(BENIGN) == 8 and len(LIMITS) == 1
