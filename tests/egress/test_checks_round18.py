"""Round 18 of the planted-leak run (airlock18): identifiers hashed or split by markup, the flow
across sentences and files, shifted and yearless dates, long "lookup" tables, a report's
support and printed count arrays; a study's weights, metrics, figures, masks and methods are
no leak. OCR is off."""

from __future__ import annotations

import hashlib

import pytest

from egress_review.checks.ages import text_ages
from egress_review.checks.day_months import table_day_months, text_day_months
from egress_review.checks.hashed_ids import hashed_lines
from egress_review.checks.markup_text import shown_text
from egress_review.checks.printed_arrays import named_arrays
from egress_review.checks.prose_flow import flow_gaps
from egress_review.checks.quasi_identifiers import long_form
from egress_review.checks.shifted_dates import stated_shifts
from egress_review.checks.split_dates import iso_form_dates
from egress_review.checks.tables import Table
from egress_review.checks.text_tables import aligned_tables
from tests.egress import planted_round18
from tests.egress.planted_round14 import build_cohort
from tests.egress.planted_round18 import FLOW, QUASI, REPORT, REQUEST
from tests.egress.round_harness import benign_test, by_name, leak_test, limits_test, round_fixtures

LEAKS, BENIGN, LIMITS = by_name(planted_round18)
UNCERTAIN = (FLOW, QUASI, REQUEST)  # flagged for the reviewers, not blocked

# round 14's 33-patient dataset, and the project's earlier release (round 9's)
policy, context = round_fixtures(dataset=build_cohort)


test_round18_leak_is_caught_by_its_class = leak_test(LEAKS, UNCERTAIN)


test_round18_benign_output_raises_no_false_alarm = benign_test(BENIGN)


test_round18_known_limits_are_as_documented = limits_test(LIMITS)


def test_corpus_sizes() -> None:
    """The counts docs/egress-checks.md states."""
    assert (len(LEAKS), len(BENIGN), len(LIMITS)) == (45, 27, 4)


def _digest(text: str, algo: str) -> str:
    return hashlib.new(algo, text.encode()).hexdigest()


@pytest.mark.parametrize(
    ("text", "lines"),
    [
        (f"a {_digest('ZQX-0003', 'md5')} b", [1]),
        (f"x\n{_digest('ZQX-0003', 'sha1').upper()}", [2]),
        (f"{_digest('zqx-0003', 'sha256')},0.9", [1]),  # the ID lower-cased
        (_digest("ZQX-0003", "sha512"), [1]),
        (_digest("ZQX-0003", "sha256") + "0", []),  # a longer hex run: no digest
        ("k" + _digest("ZQX-0003", "md5"), []),  # glued to a word
        (_digest("ZQX-0004", "sha256")[:40], []),  # a prefix that is no digest of it
        (_digest("weights", "sha256"), []),
    ],
)
def test_hashed_identifiers(text: str, lines: list[int]) -> None:
    assert hashed_lines(text, frozenset({"ZQX-0003"})) == lines


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("<text><tspan>Z</tspan><tspan>QX-0003</tspan></text>", " ZQX-0003 "),
        ("Z<b></b>QX", "ZQX"),
        ("VEL<!-- -->03", "VEL03"),
        ("<td>ZQ</td><td>X</td>", " ZQ  X "),  # cells stay apart
        ("a <br/>\n<p>b</p>", "a  \n b "),  # line breaks kept
        ("1 < 2 and 3 > 2", "1 < 2 and 3 > 2"),  # no tag
    ],
)
def test_markup_as_shown(text: str, shown: str) -> None:
    assert shown_text(text) == shown


@pytest.mark.parametrize(
    ("text", "gaps"),
    [
        ("35 patients were screened. Of these, 33 were enrolled.", 1),
        ("35 patients were screened.\nOf whom 33 were randomised.", 1),
        ("35 screened. Among them, 33 enrolled.", 1),
        ("35 patients were screened. 33 were enrolled.", 0),  # nothing ties them
        ("350 patients were screened. Of these, 330 were enrolled.", 0),
        ("35 slices were screened. Of these, 33 were kept.", 0),  # one stage, things
        ("35 patients were screened.\nTable 2.\nOf these, 33 were enrolled.", 0),  # not the one before
    ],
)
def test_the_flow_across_a_back_reference(text: str, gaps: int) -> None:
    assert flow_gaps(text, 10) == gaps


@pytest.mark.parametrize(
    ("text", "shifts"),
    [
        ("All dates shifted by +30 days.", {30}),
        ("date offset of -14 d", {-14}),
        ("shifted by \u22127 days", {-7}),
        ("dates shifted by 4 weeks", {28}),
        ('{"date_shift_days": -30}', {-30}),
        ("offset_weeks = 2", {14}),
        ("Intensities shifted by +30 HU", set()),
        ("shifted by 0 days", set()),
        ("shift of 20000 days", set()),  # no date offset
    ],
)
def test_stated_date_offsets(text: str, shifts: set[int]) -> None:
    assert stated_shifts(text) == shifts


def test_a_shift_column() -> None:
    rows = [["subject", "scan_date", "date_shift_days", "shift_weeks"], ["1", "2004-03-19", "60", "2"]]
    assert stated_shifts("x shift", rows) == {60, 14}


@pytest.mark.parametrize(
    ("text", "pairs"),
    [
        ("Scan acquired 19 January (baseline).", [(1, 19)]),
        ("baseline CT: Jan 19th", [(1, 19)]),
        ("scan: 19th of January", [(1, 19)]),
        ("scan 19-Jan", [(1, 19)]),
        ("Scan acquired 19 January 2004", []),  # a whole date: the plain search's
        ("scan January 19, 2005", []),
        ("Data frozen on 19 January", []),  # no scan on the line
    ],
)
def test_a_day_and_month_beside_a_scan(text: str, pairs: list[tuple[int, int]]) -> None:
    assert list(text_day_months(text)) == pairs


def test_a_day_and_month_in_a_scan_column() -> None:
    assert list(table_day_months([["subject", "scan_day_month", "note"], ["1", "19-Jan", "Feb 2"]])) == [
        (1, 19)
    ]


@pytest.mark.parametrize(
    ("text", "dates"),
    [
        ("Scanned on day 19 of 2004.", ["2004-01-19"]),
        ("day 19 of the year 2004", ["2004-01-19"]),
        ("day 19 of 30", []),
        ("day 400 of 2004", []),
    ],
)
def test_an_ordinal_date_in_words(text: str, dates: list[str]) -> None:
    assert list(iso_form_dates(text)) == dates


def test_a_long_lookup_is_read_as_records() -> None:
    rows = [
        ["c1", "age", "71"],
        ["c1", "sex", "F"],
        ["c2", "age", "64"],
        ["c2", "sex", "M"],
        ["c2", "dice", "0.9"],
    ]
    wide = long_form(Table(["key", "attribute", "value"], rows, [], [], []))
    assert wide is not None and (wide.header, wide.rows) == (["age", "sex"], [["71", "f"], ["64", "m"]])
    metrics = [["unet", "dice", "0.91"], ["unet", "hd95", "3.2"]]
    assert long_form(Table(["model", "metric", "value"], metrics, [], [], [])) is None


def test_a_classification_report_is_a_table() -> None:
    [(line, rows)] = aligned_tables(REPORT.decode())
    assert line == 1 and rows[0] == ["label", "precision", "recall", "f1-score", "support"]
    assert [r[0] for r in rows[1:]] == ["benign", "malignant"]


@pytest.mark.parametrize(
    ("text", "values"),
    [
        ("confusion matrix:\n[[25  3]\n [ 2  3]]\n", ["3"]),
        ("n_at_risk = [33, 28, 15, 4]", ["4"]),
        ("Confusion matrix (test):\n[[25  3]\n [ 2  3]]", ["3"]),
        ("confusion matrix:\n[[0.9 0.1]\n [0.2 0.8]]", []),  # shares
        ("confusion matrix:\n[[250  30]\n [ 20 300]]", []),
        ("kernel: [3, 3, 3]", []),  # no count's name
        ("[INFO] patients [2/3]", []),
    ],
)
def test_printed_count_arrays(text: str, values: list[str]) -> None:
    names = ("confusion", "at_risk")
    found = named_arrays(text, 10, lambda name: any(n in name.lower().replace(" ", "_") for n in names))
    assert [f["value"] for f in found] == values


@pytest.mark.parametrize(
    ("text", "age"),
    [
        ("- oldest patient: 96 y", True),
        ("the eldest was 93 yrs", True),
        ("the oldest was 93 years old", True),
        ("oldest lesion 95 mm", False),
        ("The oldest scanner was 12 years old", False),
    ],
)
def test_the_oldest_patients_age(text: str, age: bool) -> None:
    assert bool(text_ages(text)) is age
