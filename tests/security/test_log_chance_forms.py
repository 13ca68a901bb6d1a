"""Identifiers that ordinary logs spell by themselves, a piece a line (round 19's finding).

With every pydicom test file's identifiers in the dataset, every line of an ordinary training
log was withheld: one file's "11111111" was spelt by the "1"s of "acc 0.91" / "lr 1e-4" on
consecutive busy lines, and a counter ("epoch 1 of 20", "epoch 2 of 20", ...) spells
"12345678". Such forms (at most two distinct digits, or counting by one) are no longer chased
across busy lines; whole, separated, reversed or a digit a line, they are still withheld.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from egress_review.digit_chains import spelt_by_chance
from egress_review.logscreen import LogScreen
from tre.policy import load_policy

REPO = Path(__file__).resolve().parents[2]
CHANCE = ["11111111", "00000000", "00000001", "12121212", "12345678", "01234567", "98765432"]


def _screen(identifier: str) -> LogScreen:
    return LogScreen.for_policies([load_policy("default", REPO / "policies")], {identifier, "DOE^JANE"})


def _withheld(screen: LogScreen, text: str) -> list[bool]:
    return [line.withheld for line in screen.screen_log(text.encode(), final=True).lines]


TRAINING = "".join(
    f"epoch {i} step {i * 100} loss {1 / (i + 1):.4f} acc 0.91 lr 1e-4 time 12.3s\n" for i in range(40)
)
COUNTING = "".join(f"epoch {i} of 20\n" for i in range(1, 21))


@pytest.mark.parametrize("identifier", CHANCE)
def test_an_ordinary_log_is_not_withheld_for_an_identifier_it_spells_by_chance(identifier: str) -> None:
    screen = _screen(identifier)
    assert not any(_withheld(screen, TRAINING)), identifier
    assert not any(_withheld(screen, COUNTING)), identifier


@pytest.mark.parametrize("identifier", CHANCE)
def test_such_an_identifier_is_still_withheld_when_a_job_prints_it(identifier: str) -> None:
    screen = _screen(identifier)
    for text in (
        f"patient {identifier}\n",
        "-".join(identifier) + "\n",
        " ".join(identifier) + "\n",
        f"id={identifier[::-1]}\n",
        f"part {identifier[:4]}\npart {identifier[4:]}\n",
        "\n".join(identifier) + "\n",
    ):
        assert all(_withheld(screen, text)), (identifier, text)


def test_other_identifiers_are_still_chased_across_busy_lines() -> None:
    for identifier in ("48213957", "20000101", "19620315"):
        assert not spelt_by_chance(identifier)
        screen = _screen(identifier)
        text = f"step 12345 id-part {identifier[:4]}\nstep 12346 id-part {identifier[4:]}\n"
        assert all(_withheld(screen, text)), identifier
        assert not any(_withheld(screen, TRAINING)), identifier


def test_which_forms_are_spelt_by_chance() -> None:
    assert all(spelt_by_chance(form) for form in CHANCE)
    assert not any(spelt_by_chance(form) for form in ("10203040", "20000102", "13579246", "12345679"))
