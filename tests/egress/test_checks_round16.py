"""Round 16 of the planted-leak run (leaks20): shares in other spellings, the flow's stages,
dates as weeks and days of the year, ages over 89, quasi-identifiers, the same table twice in
one request; the data's shares in prose. OCR is off."""

from __future__ import annotations

import pytest

from egress_review.checking import for_requester
from egress_review.checks.ages import age_name
from egress_review.checks.prose_shares import as_percentages, prose_shares
from egress_review.checks.split_dates import iso_form_dates, split_dates
from tests.egress import planted_round16
from tests.egress.planted_corpus import run_planted
from tests.egress.planted_round14 import build_cohort
from tests.egress.planted_round16 import AGE, FLOW, META, PROSE, QUASI, REQUEST, REQUEST_SHARE
from tests.egress.round_harness import benign_test, by_name, leak_test, limits_test, round_fixtures

LEAKS, BENIGN, LIMITS = by_name(planted_round16)
UNCERTAIN = (REQUEST_SHARE, PROSE, FLOW, QUASI, REQUEST, META)  # flagged for the reviewers, not blocked


# round 14's 33-patient dataset, and the project's earlier release (round 9's)
policy, context = round_fixtures(dataset=build_cohort)


test_round16_leak_is_caught_by_its_class = leak_test(LEAKS, UNCERTAIN)


test_round16_benign_output_raises_no_false_alarm = benign_test(BENIGN)


test_round16_known_limits_are_as_documented = limits_test(LIMITS)


def test_corpus_sizes() -> None:
    """The counts docs/egress-checks.md states."""
    assert (len(LEAKS), len(BENIGN), len(LIMITS)) == (32, 29, 1)  # 3 limits caught by round 17
    assert AGE not in UNCERTAIN  # an age over 89 is blocked


@pytest.mark.parametrize(
    ("text", "written"),
    [
        ("One in eleven patients relapsed.", "9.091 % of patients relapsed."),
        ("1 in 11 had a dose reduction", "9.091 % had a dose reduction"),
        ("two out of every 33 withdrew", "6.061 % withdrew"),
        ("Relapse: 61 per mille", "Relapse: 6.1 %"),
        ("6.1 per cent had", "6.1 % had"),
        ("One of every eleven patients", "9.091 % of patients"),
        ("61.5\u2030 relapsed", "6.15 % relapsed"),
        ("12 in 11 runs", "12 in 11 runs"),  # no share: the first is not less
        ("1 in 2019", "0.050 %"),  # a share, but of no one: read only where people follow
    ],
)
def test_other_spellings_are_written_as_percentages(text: str, written: str) -> None:
    assert as_percentages(text) == written


@pytest.mark.parametrize(
    ("text", "shares"),
    [
        ("6.1 % had missing values.", 0),
        ("6.1 % had incomplete or missing records.", 0),
        ("6.1 % had a dose reduction.", 1),
        ("6.1 % had missing teeth.", 1),  # no data noun: people's
        ("Of all records, 6.1 % had no stage.", 0),
        ("6.1 % of patients had missing values.", 1),  # a share of patients
    ],
)
def test_what_the_data_had_is_no_share_of_people(text: str, shares: int) -> None:
    assert len(prose_shares(text)) == shares


def test_weeks_and_days_of_the_year_are_dates() -> None:
    assert list(iso_form_dates("2004-019 and 2004-W04-1")) == ["2004-01-19", *_week_2004_4()]
    assert list(iso_form_dates("2004W041")) == _week_2004_4()
    assert list(iso_form_dates("km_2004-W04.png")) == _week_2004_4()  # a name's separator
    assert list(iso_form_dates("v2004-019.3, 2004-0191, 2004-W54")) == []
    assert list(split_dates([["scan_year", "scan day of the year"], ["2004", "19"]])) == ["2004-01-19"]
    assert list(split_dates([["scan_year", "scan_iso_week"], ["2004", "4"]])) == _week_2004_4()
    assert list(split_dates([["year", "week", "n"], ["2004", "4", "40"]])) == []  # a calendar's axis
    assert list(split_dates([["visit_week", "n"], ["4", "40"]])) == []  # no year


def _week_2004_4() -> list[str]:
    return [f"2004-01-{d}" for d in range(19, 26)]


@pytest.mark.parametrize(
    ("name", "age"),
    [
        ("age", True),
        ("oldest_age", True),
        ("Age at diagnosis", True),
        ("age_max", True),
        ("age_mean", False),
        ("mean age", False),
        ("age_days", False),
        ("gestational_age_weeks", False),
        ("age_group", False),
        ("stage", False),
        ("page", False),
        ("dosage", False),
    ],
)
def test_what_names_an_age_in_years(name: str, age: bool) -> None:
    assert age_name(name) is age


def test_an_undirected_change_parses_its_cells_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """`derived_counts` reads an undirected change's cells once (before leaks20 twice: the
    every-row rule and the share loop each parsed them)."""
    from egress_review.checks import shares
    from egress_review.checks.derived_counts import derived_counts
    from egress_review.checks.tables import classify
    from tests.egress.planted_corpus import default_policy_without_ocr

    parsed: list[str] = []
    real = shares.pct_value

    def counting(cell: str, header: str = "") -> tuple[float, int] | None:
        parsed.append(cell)
        return real(cell, header)

    monkeypatch.setattr(shares, "pct_value", counting)
    rules = default_policy_without_ocr().sdc
    table = classify(
        [["arm", "n", "hu_shift_pct"], ["control", "33", "6.1"], ["treated", "40", "25.0"]], rules
    )
    assert [r.check for r in derived_counts(table, rules) if r.outcome != "pass"] == ["sdc:threshold"]
    assert sorted(parsed) == ["25.0", "6.1"]


def test_the_other_files_names_are_for_reviewers_only(tmp_path, policy, context) -> None:  # type: ignore[no-untyped-def]
    """`sdc:differencing_request` listed the request's other files in the evidence a requester
    sees before review: names the job chose (as `sdc:request_share` already knew, whose
    names are reviewer-only). Failed before: `other_files` in the requester's evidence."""
    results = run_planted(tmp_path, LEAKS["by_site_v2.csv"], policy, context)
    found = [r for r in results if r.check == REQUEST[0]]
    assert found, [r.check for r in results]
    shown = for_requester([{"check": r.check, "evidence": r.evidence} for r in found])
    assert "by_site_v1.csv" not in repr(shown)
    assert "by_site_v1.csv" in repr(found[0].evidence["reviewer_only"])
