"""The shape every planted-leak round's test module shares (leaks18).

Rounds 8-14 each ran their corpus through the same three parametrized tests (each leak caught
by its class, each benign output without a false alarm, each known limit still missed) against
the same context (the corpus's dataset and round 9's earlier release), written out again in
every module. The modules keep their own `policy` and `context` fixtures (a round may allow
more file types, or add identifiers) and take the tests from here: `leak_test`, `benign_test`
and `limits_test` return a test function, parametrized by the corpus's names, that the module
binds to its own test name (so the test ids stay what they were).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from egress_review.checks import CheckContext, CheckResult
from tests.egress import planted_round9
from tests.egress.planted_corpus import (
    Planted,
    assert_caught,
    assert_no_false_alarm,
    assert_still_missed,
    build_dataset,
    check_context,
    run_planted,
)
from tre.policy import Policy

ResultsCheck = Callable[[str, list[CheckResult]], None]
"""More a round asserts on a leak's results (its name, the results): fixed words in reasons."""


def earlier_release_context(
    tmp_path_factory: pytest.TempPathFactory, policy: Policy, dataset: Path | None = None
) -> CheckContext:
    """The corpus's dataset (or ``dataset``), and the project's earlier release (round 9's)."""
    base = check_context(dataset or build_dataset(tmp_path_factory.mktemp("dataset")), policy)
    return dataclasses.replace(
        base, released=planted_round9.released(tmp_path_factory.mktemp("earlier"), policy)
    )


def leak_test(
    leaks: Mapping[str, Planted],
    uncertain: tuple[tuple[str, ...], ...],
    also: ResultsCheck | None = None,
) -> Callable[..., None]:
    """Each leak is caught by one of its checks: blocked, or flagged where its class is one the
    reviewers judge (``uncertain``); then ``also`` on its results."""

    @pytest.mark.parametrize("name", sorted(leaks))
    def test(name: str, tmp_path: Path, policy: Policy, context: CheckContext) -> None:
        results = run_planted(tmp_path, leaks[name], policy, context)
        assert_caught(results, leaks[name], uncertain)
        if also is not None:
            also(name, results)

    return test


def benign_test(benign: Mapping[str, tuple[Planted, tuple[str, ...]]]) -> Callable[..., None]:
    """Each benign output raises nothing but the flags it raises by design."""

    @pytest.mark.parametrize("name", sorted(benign))
    def test(name: str, tmp_path: Path, policy: Policy, context: CheckContext) -> None:
        planted, by_design = benign[name]
        assert_no_false_alarm(run_planted(tmp_path, planted, policy, context), name, by_design)

    return test


def limits_test(limits: Mapping[str, Planted]) -> Callable[..., None]:
    """Each documented known limit still passes (so the docs change when one is caught)."""

    @pytest.mark.parametrize("name", sorted(limits))
    def test(name: str, tmp_path: Path, policy: Policy, context: CheckContext) -> None:
        assert_still_missed(run_planted(tmp_path, limits[name], policy, context), limits[name])

    return test


def fixed_words(check: str, words: tuple[str, ...], earlier: bool = False) -> ResultsCheck:
    """The reasons of ``check`` quote none of ``words`` (nothing the file holds); with
    ``earlier``, their evidence names round 9's earlier request and no other."""

    def also(name: str, results: list[CheckResult]) -> None:
        for r in results:
            if r.check != check:
                continue
            if earlier:
                assert r.evidence["released_requests"] == [planted_round9.EARLIER_REQUEST]
            for word in words:
                assert word not in r.reason, (name, r.reason)

    return also
