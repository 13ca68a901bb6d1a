"""Red team round 18 on the airlock's leaks21 readers: time on hostile text, and the names
and cells that hid a leak.

Each case failed before its fix: the day-of-year and fraction readers were quadratic in a
long line (hours for a MiB); two spellings of one group passed as disjoint groups; one
missing or top-coded age hid an exact-age column. In-process calls only (no server).
"""

from __future__ import annotations

import time

import pytest

from egress_review.checks.file_groups import disjoint_groups
from egress_review.checks.prose_flow import flow_gaps
from egress_review.checks.quasi_identifiers import rare_combinations
from egress_review.checks.split_dates import text_yearless_days
from egress_review.checks.tables import parse_table
from tre.policy import SdcRules

# hostile texts of ~0.5-1 MiB; each took from minutes to hours before (quadratic), under a second now
HOSTILE = {
    "doy then a MiB of blanks": lambda: list(text_yearless_days("scan doy" + " " * 1_000_000 + "x")),
    "a long line of days out of range": lambda: list(text_yearless_days("doy=999 " * 125_000)),
    "a sentence of labelled fractions": lambda: flow_gaps("enrolled " + "epoch 1/2 " * 50_000, 10),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_text_is_read_in_linear_time(name: str) -> None:
    started = time.perf_counter()
    HOSTILE[name]()
    assert time.perf_counter() - started < 3.0


def test_the_readers_still_find_what_they_found() -> None:
    assert list(text_yearless_days("scan acquired doy = 19\nstudy day of year:  200")) == [19, 200]
    assert flow_gaps("Of 35 patients screened, 33/35 enrolled (epoch 1/2 done).", 10) == 1
    assert flow_gaps("epoch 33/35 enrolled", 10) == 0


@pytest.mark.parametrize(
    ("name", "other", "disjoint"),
    [
        ("by_site_male.csv", "by_site_males.csv", False),
        ("by_site_male.csv", "by_site_men.csv", False),
        ("train_by_site.csv", "training_by_site.csv", False),
        ("val/by_site.csv", "validation/by_site.csv", False),
        ("fold1_by_site.csv", "fold01_by_site.csv", False),
        ("control_by_site.csv", "controls_by_site.csv", False),
        # still disjoint: two groups, however spelt
        ("train_by_site.csv", "val_by_site.csv", True),
        ("fold1_by_site.csv", "fold2_by_site.csv", True),
        ("train_male.csv", "validation_men.csv", True),
        ("male/by_site.csv", "female/by_site.csv", True),
    ],
)
def test_two_spellings_of_one_group_are_no_two_groups(name: str, other: str, disjoint: bool) -> None:
    assert disjoint_groups(name, other) is disjoint


_RARE_MAN = "sex,age,dice\nM,71,0.8\n" + "F,50,0.7\n" * 20


@pytest.mark.parametrize(
    "extra",
    ["F,NA,0.7\n", "F,,0.7\n", "F,unknown,0.7\n", "F,90+,0.7\n", "F,>89,0.7\n"],
)
def test_a_missing_or_top_coded_age_does_not_hide_an_exact_age(extra: str) -> None:
    table = parse_table(_RARE_MAN + extra, ",", SdcRules())
    (found,) = rare_combinations(table, 10)
    assert found.check == "sdc:quasi_identifiers"
    assert found.evidence["columns"] == ["age", "sex"]


@pytest.mark.parametrize(
    ("text", "flagged"),
    [
        ("sex,age,dice\nM,71.5,0.8\n" + "F,50.0,0.7\n" * 20, True),  # decimal years
        ("sex,age,dice\nM,70-79,0.8\n" + "F,50-59,0.7\n" * 20, False),  # bands: aggregated
        ("sex,age\n", False),
        ("", False),
        ("sex,age\n\u200b,\u0660\u0667\n", True),  # odd Unicode: read, no crash
    ],
)
def test_exact_ages_and_bands(text: str, flagged: bool) -> None:
    assert bool(rare_combinations(parse_table(text, ",", SdcRules()), 10)) is flagged
