"""Round 17 of the planted-leak run (leaks21): the flow's stages in a sentence, shares of a
small cohort in other spellings, a day of the year with no year, quasi-identifiers without an
age, ages in DICOM's and other spellings; an age's mean and disjoint groups' tables are no
leak. OCR is off."""

from __future__ import annotations

import pytest

from egress_review.checks.ages import age_name, text_ages
from egress_review.checks.file_groups import disjoint_groups
from egress_review.checks.prose_flow import flow_gaps
from egress_review.checks.prose_shares import as_percentages
from egress_review.checks.split_dates import text_yearless_days, yearless_days
from egress_review.checks.text_counts import prose_counts
from tests.egress import planted_round17
from tests.egress.planted_round14 import build_cohort
from tests.egress.planted_round17 import FLOW, FLOW_OR_PROSE, PROSE, QUASI, REQUEST, REQUEST_SHARE, SMALL
from tests.egress.round_harness import benign_test, by_name, leak_test, limits_test, round_fixtures
from tre.policy import Policy

LEAKS, BENIGN, LIMITS = by_name(planted_round17)
UNCERTAIN = (
    REQUEST_SHARE,
    PROSE,
    FLOW,
    FLOW_OR_PROSE,
    QUASI,
    REQUEST,
    SMALL,
)  # flagged for the reviewers, not blocked


# round 14's 33-patient dataset, and the project's earlier release (round 9's)
policy, context = round_fixtures(dataset=build_cohort)


test_round17_leak_is_caught_by_its_class = leak_test(LEAKS, UNCERTAIN)


test_round17_benign_output_raises_no_false_alarm = benign_test(BENIGN)


test_round17_known_limits_are_as_documented = limits_test(LIMITS)


def test_corpus_sizes() -> None:
    """The counts docs/egress-checks.md states."""
    assert (len(LEAKS), len(BENIGN), len(LIMITS)) == (30, 27, 1)  # one caught since airlock round 18


@pytest.mark.parametrize(
    ("text", "counts"),
    [
        ("One patient in three relapsed.", []),  # a ratio in words: a share
        ("One patient in eleven relapsed.", []),  # `prose_shares` reads it
        ("2 patients in 33 withdrew.", ["2 patients"]),  # a stated total: a count
        ("2 patients out of 33 withdrew.", ["2 patients"]),
        ("1 patient in 3 relapsed.", ["1 patient", "3 relapsed"]),
    ],
)
def test_a_ratio_in_words_is_no_count(text: str, counts: list[str], policy: Policy) -> None:
    assert [c["count"] for c in prose_counts(text, policy.sdc)] == counts


@pytest.mark.parametrize(
    ("text", "gaps"),
    [
        ("Of 35 patients screened, 33 were enrolled.", 1),
        ("35 screened; 33 enrolled.", 1),
        ("33/35 enrolled", 1),
        ("enrolled: 33/35", 1),
        ("We screened 40 patients and randomised 38.", 1),
        ("screened 35 \u2192 eligible 34 \u2192 enrolled 33", 1),
        ("Of 350 patients screened, 330 were enrolled.", 0),  # far apart
        ("Of 35 slices screened, 33 were included.", 0),  # things
        ("Epoch 33/35 completed, loss 0.21", 0),  # a label's
        ("33/35 sites enrolled patients.", 0),  # sites
        ("Screened 35 mm nodules; 33 mm were included.", 0),  # a unit
        ("Patients screened in 2004 and enrolled in 2005.", 0),  # years
        ("35 patients were enrolled and 33 images analysed.", 0),  # images: things
        ("Enrolled 35 patients.", 0),  # one stage, no fraction
    ],
)
def test_the_flow_in_a_sentence(text: str, gaps: int) -> None:
    assert flow_gaps(text, 10) == gaps


@pytest.mark.parametrize(
    ("text", "written"),
    [
        ("Every eleventh patient relapsed.", "9.091 % of patients relapsed."),
        ("every 11th patient", "9.091 % of patients"),
        ("One patient in eleven relapsed.", "9.091 % of patients relapsed."),
        ("one per eleven patients", "9.091 % of patients"),
        ("0.061 of the patients withdrew", "6.1 % of the patients withdrew"),
        ("Every eleventh slice was sampled.", "Every eleventh slice was sampled."),  # things
        ("0.061 of the variance", "0.061 of the variance"),  # no people
        ("every first patient", "every first patient"),  # no share
    ],
)
def test_more_spellings_are_written_as_percentages(text: str, written: str) -> None:
    assert as_percentages(text) == written


@pytest.mark.parametrize(
    ("name", "other", "disjoint"),
    [
        ("val_by_site.csv", "train_by_site.csv", True),
        ("validation/by_site.csv", "train/by_site.csv", True),
        ("fold1_sites.csv", "fold2_sites.csv", True),
        ("control_counts.json", "treated_counts.json", True),
        ("by_site_v2.csv", "by_site_v1.csv", False),  # a revision
        ("v2/by_site.csv", "v1/by_site.csv", False),
        ("by_site_final.csv", "by_site_train_draft.csv", False),  # draft: not only a group word
        ("by_site.csv", "by_site_train.csv", False),  # the whole and a part: not disjoint
    ],
)
def test_files_of_disjoint_groups(name: str, other: str, disjoint: bool) -> None:
    assert disjoint_groups(name, other) is disjoint


@pytest.mark.parametrize(
    ("text", "age"),
    [
        ("The mean age 91 in the oldest stratum.", False),
        ("Mean (SD) age: 91 (4)", False),
        ("Average age of 92", False),
        ("aged 90 or older", False),  # Safe Harbor's category
        ("mean-centred; the oldest was aged 93", True),  # the sentence's last words only
        ("The patient, aged ninety-two, relapsed.", True),
        ("Case 4: 93 yo woman", True),
        ("93 y/o", True),
        ("Toyota 93 yoke", False),
    ],
)
def test_ages_in_sentences(text: str, age: bool) -> None:
    assert bool(text_ages(text)) is age


def test_a_camel_case_age_is_an_age() -> None:
    assert age_name("PatientAge") and not age_name("PatientAgeGroup") and not age_name("Page")


def test_days_of_the_year_without_a_year() -> None:
    assert list(yearless_days([["subject", "scan_day_of_year"], ["1", "19"]])) == [19]
    assert list(yearless_days([["doy", "n"], ["19", "40"]])) == []  # a calendar's axis
    assert list(yearless_days([["scan_year", "scan_doy"], ["2004", "19"]])) == []  # a date: split_dates
    assert list(text_yearless_days("scan acquired doy=19 site=A\nweather doy=20\n")) == [19]
    assert list(text_yearless_days("Dose on treatment day 19")) == []
