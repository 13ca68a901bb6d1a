"""Round 8 of the planted-leak run (leaks12): every leak is caught by its class's check, the
benign research outputs of the same shapes raise no false alarm, formats the default policy
refuses by type are read when a policy allows them, and the readers added for the round
(names, glued tokens, figure labels, notebooks, late epoch seconds) behave at their edges.
OCR is off: the figure whose pixels show a count is the OCR tests' (and a documented limit)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from egress_review import checking
from egress_review.checks import CheckContext
from egress_review.checks.dates import find_numeric_dates
from egress_review.checks.figures import drawn_counts, svg_texts
from egress_review.checks.name_counts import name_counts, text_token_counts
from egress_review.checks.notebooks import read_notebook, series_tables
from egress_review.checks.text_counts import prose_counts
from tests.egress.planted_corpus import (
    Planted,
    build_dataset,
    check_context,
    default_policy_without_ocr,
    run_planted,
)
from tests.egress.planted_round8 import (
    FIGURE,
    IDS,
    LATE_BIRTH_EPOCH,
    LATE_DATES,
    PROSE,
    _matplotlib_svg,
    allowed_formats,
    benign,
    known_limits,
    leaks,
)
from tests.egress.round_harness import benign_test, leak_test, limits_test
from tre.policy import Policy

LEAKS = {p.name: p for p in leaks()}
BENIGN = {p.name: (p, by_design) for p, by_design in benign()}
LIMITS = {p.name: p for p in known_limits()}
ALLOWED = {p.name: (p, caught_by) for p, caught_by in allowed_formats()}
UNCERTAIN = (PROSE, FIGURE, ("encoded:", "decoded:"))  # flagged for the reviewers, not blocked


@pytest.fixture(scope="module")
def policy() -> Policy:
    return default_policy_without_ocr()


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory, policy: Policy) -> CheckContext:
    """The corpus's dataset, with a second patient whose dates fall in 1966-1973."""
    base = check_context(build_dataset(tmp_path_factory.mktemp("dataset")), policy)
    return dataclasses.replace(base, identifiers=base.identifiers | LATE_DATES)


@pytest.fixture(scope="module")
def allowing(policy: Policy) -> Policy:
    """A project's policy that lets Arrow/Feather tables and gzip files leave (archives flagged)."""
    files = policy.files.model_copy(
        update={
            "allowed_types": [*policy.files.allowed_types, "arrow", "gzip", "tar", "zip"],
            "archives": "flag",
        }
    )
    return policy.model_copy(update={"files": files})


test_round8_leak_is_caught_by_its_class = leak_test(LEAKS, UNCERTAIN)


test_round8_benign_output_raises_no_false_alarm = benign_test(BENIGN)


test_round8_known_limits_are_as_documented = limits_test(LIMITS)


@pytest.mark.parametrize("name", sorted(ALLOWED))
def test_formats_a_policy_allows_are_read(
    name: str, tmp_path: Path, policy: Policy, allowing: Policy, context: CheckContext
) -> None:
    planted, caught_by = ALLOWED[name]
    # the default policy refuses them by type, whatever they hold
    refused = run_planted(tmp_path, planted, policy, context)
    assert any(r.check == "file_type" and r.outcome == "block" for r in refused), name
    fired = [
        (r.check, r.outcome) for r in run_planted(tmp_path, planted, allowing, context) if r.outcome != "pass"
    ]
    if caught_by:
        assert any(c.startswith(caught_by) and o == "block" for c, o in fired), f"{name}: {fired}"
    else:
        assert [c for c, _ in fired if c != "file_type"] == [], f"{name}: {fired}"


def test_corpus_sizes() -> None:
    """The counts docs/egress-checks.md states."""
    assert len(LEAKS) == 48 and len(BENIGN) == 44 and len(ALLOWED) == 9 and len(LIMITS) == 3


def test_what_the_job_wrote_stays_with_the_reviewers(
    tmp_path: Path, policy: Policy, context: CheckContext
) -> None:
    for name, secret in [
        ("token.txt", "site_A_had_3"),
        ("n3_relapsed.csv", "n3_relapsed"),
        ("bars.svg", "B: 3"),
    ]:
        results = [r for r in run_planted(tmp_path, LEAKS[name], policy, context) if r.outcome != "pass"]
        shown = json.dumps(checking.for_requester([r.model_dump() for r in results]))
        assert secret not in shown, (name, shown)
        assert secret in json.dumps([r.evidence.get("reviewer_only") for r in results]), name


# ---------------------------------------------------------------------- the readers, one by one


@pytest.mark.parametrize(
    ("name", "explicit", "worded"),
    [
        ("relapsed (n=3)", True, False),
        ("N = 4", True, False),
        ("n3_relapsed.csv", True, False),
        ("auc_site_B_n_2", True, False),
        ("site_A_had_3", False, True),
        ("3pts", False, True),
        ("died_2", False, True),
        ("relapsed (n=30)", False, False),  # not small
        ("N3", False, False),  # a nodal stage
        ("t2n1m0", False, False),  # TNM, glued
        ("n4_bias_corrected", False, False),  # N4 bias-field correction
        ("case_3", False, False),  # a pseudonym
        ("resnet3", False, False),
        ("epoch_3", False, False),
    ],
)
def test_counts_in_names(name: str, explicit: bool, worded: bool, policy: Policy) -> None:
    hard, soft = name_counts(name, policy.sdc)
    assert (bool(hard), bool(soft)) == (explicit, worded)


def test_tokens_in_base64_and_paths_are_not_names(policy: Policy) -> None:
    assert text_token_counts("iVBORw0KGgo+n3/AAAN n5+xyz a/n3/b", policy.sdc) == ([], [])
    assert text_token_counts("x" * 200 + "_n3", policy.sdc) == ([], [])  # data, not a name


@pytest.mark.parametrize(
    ("text", "hit"),
    [
        ("Of the 124 patients, 121 completed follow-up.", True),
        ("121 of the 124 patients completed follow-up.", True),
        ("Of the 544 patients, 480 completed follow-up.", False),
        ("Relapse: 3/120 at one year.", True),
        ("Epoch 3/200 loss=0.4", False),
        (" 45%|####5     | 3/120 [00:40<00:49]", False),
        ("Relapsed patients (3) were excluded.", True),
        ("Relapsed patients (30) were excluded.", False),
        ("See Figure 3 (panel 2).", False),
    ],
)
def test_prose_counts_round8(text: str, hit: bool, policy: Policy) -> None:
    assert bool(prose_counts(text, policy.sdc)) is hit


def test_figure_labels_skip_the_axis_ticks() -> None:
    assert drawn_counts(["A", "B", "0", "10", "20", "30", "45", "3", "52"], 10) == ["3"]
    assert drawn_counts(["1", "2", "3", "4", "5"], 10) == []  # a fold axis
    assert drawn_counts(["B: 3", "A: 45"], 10) == ["B: 3"]
    assert drawn_counts(["0.0", "0.5", "1.0", "AUC 0.91"], 10) == []
    labels = svg_texts(_matplotlib_svg([45, 3, 52]).decode())
    assert "3" in labels and "Cases by site" in labels


def test_notebook_reader_and_printed_series() -> None:
    nb = read_notebook(
        {
            "nbformat": 4,
            "cells": [
                {"cell_type": "markdown", "source": ["# Title\n", "text"]},
                {
                    "cell_type": "code",
                    "source": "x",
                    "execution_count": 1,
                    "outputs": [
                        {
                            "output_type": "stream",
                            "text": ["site\n", "A    45\n", "B     3\n", "dtype: int64\n"],
                        },
                        {"output_type": "display_data", "data": {"image/png": "iVBORw0KGgo="}},
                        {"output_type": "error", "ename": "KeyError", "evalue": "'x'", "traceback": []},
                    ],
                },
            ],
        }
    )
    assert "execution_count" not in nb.text and "KeyError" in nb.text and len(nb.images) == 1
    ((line, rows),) = series_tables(nb.text)
    assert rows == [["label", "n"], ["A", "45"], ["B", "3"]]
    assert series_tables("stage\nI    40\nII    3\nName: count, dtype: int64")[0][1][0] == ["label", "count"]
    assert series_tables("mean    0.4\ndtype: float64") == []


@pytest.mark.parametrize(
    ("text", "hit"),
    [
        (f"case,dob\nc1,{LATE_BIRTH_EPOCH}\n", True),
        (f"born {LATE_BIRTH_EPOCH + 86_399}\n", True),
        (f"case,voxels\nc1,{LATE_BIRTH_EPOCH}\n", False),  # not a date column: 7-9 digits are any number
        (f"t={LATE_BIRTH_EPOCH}\n", False),
        (f"case,birth_ms\nc1,{LATE_BIRTH_EPOCH * 1000}\n", True),
    ],
)
def test_epoch_seconds_near_1970_need_a_date_word(text: str, hit: bool) -> None:
    assert bool(list(find_numeric_dates(text, {"19690720"}))) is hit


def test_round8_file_of_its_own_planted_shape() -> None:
    assert all(isinstance(p, Planted) for p in LEAKS.values())
    assert sum(1 for p in LEAKS.values() if p.caught_by == IDS) >= 10
