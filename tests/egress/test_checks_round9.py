"""Round 9 of the planted-leak run (leaks13): every leak is caught by its class's check, the
benign research outputs of the same shapes raise no false alarm, and what still passes is
as documented. OCR is on (figures' drawn counts are read from the pixels); PDF is allowed by
the round's policy (the default policy refuses it by type, as before)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from egress_review.checks import CheckContext, CheckResult
from egress_review.checks.figure_pixels import Frame, Word, drawn_labels
from egress_review.checks.ocr import available
from tests.egress.planted_corpus import (
    assert_caught,
    default_policy_without_ocr,
    run_planted,
)
from tests.egress.planted_round9 import BARS, FIGURE, RELEASES, benign, known_limits, leaks
from tests.egress.round_harness import benign_test, earlier_release_context, limits_test
from tre.policy import Policy

LEAKS = {p.name: p for p in leaks()}
BENIGN = {p.name: (p, by_design) for p, by_design in benign()}
LIMITS = {p.name: p for p in known_limits()}
UNCERTAIN = (FIGURE, BARS, RELEASES)  # flagged for the reviewers, not blocked

pytestmark = pytest.mark.skipif(not available(), reason="tesseract is not installed")


@pytest.fixture(scope="module")
def policy() -> Policy:
    """The default policy with OCR on and PDF allowed."""
    base = default_policy_without_ocr()
    files = base.files.model_copy(update={"allowed_types": [*base.files.allowed_types, "pdf"]})
    image = base.image.model_copy(update={"ocr": True})
    return base.model_copy(update={"files": files, "image": image})


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory, policy: Policy) -> CheckContext:
    """The corpus's dataset, and the project's earlier release."""
    return earlier_release_context(tmp_path_factory, policy)


@pytest.fixture(scope="module")
def leak_results(
    tmp_path_factory: pytest.TempPathFactory, policy: Policy, context: CheckContext
) -> Callable[[str], list[CheckResult]]:
    """A leak's check results, run once for the module (the checks are deterministic): the
    reasons test reads the leak tests' results instead of running OCR on them again."""
    folder = tmp_path_factory.mktemp("leaks")
    kept: dict[str, list[CheckResult]] = {}

    def results(name: str) -> list[CheckResult]:
        if name not in kept:
            kept[name] = run_planted(folder, LEAKS[name], policy, context)
        return kept[name]

    return results


@pytest.mark.parametrize("name", sorted(LEAKS))
def test_round9_leak_is_caught_by_its_class(
    name: str, leak_results: Callable[[str], list[CheckResult]]
) -> None:
    assert_caught(leak_results(name), LEAKS[name], UNCERTAIN)


test_round9_benign_output_raises_no_false_alarm = benign_test(BENIGN)


test_round9_known_limits_are_as_documented = limits_test(LIMITS)


def test_the_default_policy_still_refuses_pdf(tmp_path: Path, context: CheckContext) -> None:
    results = run_planted(tmp_path, BENIGN["report.pdf"][0], default_policy_without_ocr(), context)
    assert any(r.check == "file_type" and r.outcome == "block" for r in results)


def test_reasons_shown_to_the_requester_are_fixed_words(
    leak_results: Callable[[str], list[CheckResult]],
) -> None:
    """The figure, bars, PDF and release findings quote nothing the job drew or wrote."""
    for name in ("bars_labelled.png", "legend_n.png", "histogram.png", "total_today.csv", "attachment.pdf"):
        for r in leak_results(name):
            if r.check in ("sdc:figure", "figure:bars", "pdf", "sdc:differencing_releases"):
                for word in ("relapsed", "cells.csv", "patients", "cohort", "(n=3)"):
                    assert word not in r.reason, (name, r.reason)


def test_drawn_labels_outside_the_frame_are_axes_unless_named() -> None:
    frame = Frame(left=40, bottom=280)
    words = [
        Word("50", (20, 50, 35, 58)),  # y ticks, left of the frame
        Word("3", (28, 150, 35, 158)),  # a misread rotated title, left of the frame
        Word("B (n=3)", (100, 285, 140, 293)),  # a category label under the x axis
        Word("4", (150, 120, 156, 128)),  # a label atop a bar, inside
        Word("0", (150, 200, 156, 208)),
    ]
    assert drawn_labels(words, frame, 10) == ["B (n=3)", "4"]


def test_corpus_sizes() -> None:
    """The counts docs/egress-checks.md states."""
    assert len(LEAKS) == 32 and len(BENIGN) == 21 and len(LIMITS) == 1
