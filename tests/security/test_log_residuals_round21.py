"""Log screen, round 21: benign withholds cut, and round 20's numeric residuals closed.

Benign: with pydicom's test files' identifiers, every "size mismatch at dim 0" of a traceback
was withheld ("dim" is the name part "Mid" reversed), and with the benchmark's ``PAT0000005``
the "0000005" was an identifier of its own, so ``lr 0.000005`` was withheld. A short name
part turned (reversed, ROT13) is an ordinary word; a digit run that is mostly leading zeros
is a small number.

Leaks: an all-digit identifier printed as its value (leading zeros dropped, in decimal, hex
or octal), in scientific notation rounded as ``%e`` prints it, or a date split over the
numbers of a list's or a tuple's repr.
"""

from __future__ import annotations

from functools import cache

import pydicom
import pytest
from pydicom.data import get_charset_files, get_testdata_file

from egress_review.checks.identifiers import identifiers_from_dataset
from egress_review.logscreen import LogScreen
from tests.security import test_log_residuals_round18 as round18
from tests.security.test_log_residuals_round20 import REPO, _withheld
from tre.policy import load_policy

BIRTH, MRN = round18.BIRTH, round18.MRN  # 19620315, 0048213

LEAKS = {
    "MRN's value": f"patient {int(MRN)}",
    "MRN's value in hex": f"id {int(MRN):#x}",
    "MRN's value in octal": f"id {int(MRN):#o}",
    "MRN in %e": f"value {int(MRN):e}",
    "MRN with its zeros after a point": f"lr 0.{MRN}",
    "birth date in %e": f"value {int(BIRTH):e}",
    "birth date in %g": f"value {int(BIRTH):g}",
    "birth date in %.4E": f"value {int(BIRTH):.4E}",
    "birth date as [year, mmdd]": f"dob {[1962, 315]}",
    "birth date as a tuple": f"dob {(1962, 3, 15)}",
    "birth date as a datetime.date repr": "dob datetime.date(1962, 3, 15)",
    "birth date as a numpy array": "dob [1962  315]",
}


@pytest.mark.parametrize("how", sorted(LEAKS))
def test_a_number_printed_as_a_program_prints_numbers_is_withheld(how: str) -> None:
    assert _withheld(["start", LEAKS[how], "done"]) == [False, True, False]


# Each beside an identifier it resembles: a reading one step from it, or too short to say.
BENIGN_NUMBERS = [
    "loss 0.48213 acc 0.91",  # the MRN's value after "0.": a fraction, its zeros not there
    "torch.Size([4, 8213]) float32",  # the MRN's value cut where no zero was lost
    "value 1.962e+07",  # the birth date to four significant digits
    "run date datetime.date(2024, 3, 15) step 1962",
    "lr 1e-4 weight_decay 5e-05 eps 1.0e-08 scale 6.02214076e23 grad 1.234568e+05",
    "tensor at 0x7f3a2c1b9d40, pid 4711, mode 0o755, inode 1234567",
    "bbox [1962, 316, 2010, 400] crop (315, 1962)",
]


def test_numbers_like_an_identifiers_readings_are_shown() -> None:
    assert not any(_withheld(BENIGN_NUMBERS))


def _benchmark_screen() -> LogScreen:
    """The benchmark's identifiers (`benchmarks/log_benign_withholds.py`, 201 per kind)."""
    idents = {f"PAT{i:07d}" for i in range(201)} | {
        f"19{i % 100:02d}{i % 12 + 1:02d}{i % 28 + 1:02d}" for i in range(201)
    }
    return LogScreen.for_policies([load_policy("default", REPO / "policies")], idents)


# The pydicom test files whose short name parts read reversed as words ("mid", "pre", "spam",
# "PLA") and whose longer ones must still be found turned ("Yamada", "sep30"): read alone, as
# all ~290 identifiers of every file take 10 s to gather (their benign count, with these
# lines, is `benchmarks/log_benign_withholds.py`'s).
TURNED_FILES = ("rtplan.dcm", "rtstruct.dcm", "examples_ybr_color.dcm", "chrFrenMulti.dcm", "chrH31.dcm")


@cache
def _turned_screen() -> LogScreen:
    found: set[str] = set()
    for name in TURNED_FILES:
        path = get_testdata_file(name) or get_charset_files(name)[0]
        found |= identifiers_from_dataset(pydicom.dcmread(path, stop_before_pixels=True, force=True))
    return LogScreen.for_policies([load_policy("default", REPO / "policies")], found)


def test_short_identifiers_turned_and_padded_digit_runs_are_not_withheld() -> None:
    """Reversed, pydicom's name parts "mid", "spam", "pre" are "dim", "maps", "erp";
    ``PAT0000005``'s digits are the number 5."""
    tracebacks = round18.BENIGN["tracebacks with line numbers"]
    words = [
        "RuntimeError: size mismatch at dim 0: 0 vs 512",
        "colour maps saved to /output/maps; alp 0.5",
        "erp module loaded",
    ]
    assert not any(_withheld([*tracebacks, *words], _turned_screen()))
    padded = ["lr 0.000005 momentum 0.9", "saved slice_0000123.png frame 0000150", "lr 1.23e-5"]
    assert not any(_withheld(padded, _benchmark_screen()))


def test_long_identifiers_turned_and_telling_digit_runs_are_still_withheld() -> None:
    # "Yamada" (six letters) reversed; "sep30" in ROT13; a padded ID's digits when five of
    # them are not zeros (round 9's "MRN-0048213" written as 0048213)
    assert _withheld(["start", "adamay was here", "frc30 done"], _turned_screen()) == [False, True, True]
    screen = LogScreen.for_policies(
        [load_policy("default", REPO / "policies")], {"MRN-0048213", "PAT0000123"}
    )
    lines = ["start", "id 0048213", "id 48213", "PAT0000123", "id 0000123 of 0001000"]
    assert _withheld(lines, screen) == [False, True, True, True, False]
