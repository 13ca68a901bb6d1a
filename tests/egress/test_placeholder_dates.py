"""De-identified archives often set every birth date to a placeholder, 1900-01-01 (DICOM
``19000101``). As an Excel serial day that date is 2, so a log's "day 2 of training" or
"time 2" and a table's ``day`` column holding 2 or 3 were read as the birth date after a date
word: the log screen withheld ordinary lines and the airlock flagged ordinary tables. A serial
day is a date only from `MIN_SERIAL_DAY` (5 digits: from 1927-05-18); the real ones of the
planted rounds (births from the 1930s on) are still found."""

from __future__ import annotations

from pathlib import Path

import pytest

from egress_review.checks.dates import MIN_SERIAL_DAY, find_numeric_dates
from egress_review.logscreen import LogScreen
from tre.policy import load_policy

REPO = Path(__file__).resolve().parents[2]
PLACEHOLDER = "19000101"
ORDINARY = [
    "time 2",
    "RuntimeError: size mismatch at dim 2: expected 64 but got 32",
    "day 3 of training: loss 0.41",
    "scan 1 of 4 done",
    "visit 2, study 1: 512 slices",
]


@pytest.mark.parametrize("line", ORDINARY)
def test_small_numbers_after_date_words_are_not_the_placeholder_date(line: str) -> None:
    assert list(find_numeric_dates(line, {PLACEHOLDER})) == []
    screen = LogScreen.for_policies([load_policy("default", REPO / "policies")], {PLACEHOLDER})
    shown = screen.render(screen.screen_log(f"{line}\n".encode(), final=True), 0).decode()
    assert shown == f"{line}\n"


def test_a_table_day_column_of_small_numbers_is_not_a_date() -> None:
    table = "patient_group,day,n\nA,2,40\nB,3,52\n"
    assert list(find_numeric_dates(table, {PLACEHOLDER})) == []


@pytest.mark.parametrize(
    ("text", "date"),
    [
        ("date of birth (excel): 22720", "19620315"),  # 1962-03-15 in Excel's 1900 system
        ("dob_serial 10001", "19270519"),  # among the first 5-digit serials
        ("birth datenum 716680", "19620315"),  # MATLAB
    ],
)
def test_serial_days_of_five_digits_and_more_are_still_dates(text: str, date: str) -> None:
    assert MIN_SERIAL_DAY == 10_000
    assert [found for found, _ in find_numeric_dates(text, {date})] == [date]
