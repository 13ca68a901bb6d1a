"""The shape every planted-leak round's test module shares (leaks18).

Rounds 8-14 each ran their corpus through the same three parametrized tests (each leak caught
by its class, each benign output without a false alarm, each known limit still missed) against
the same context (the corpus's dataset and round 9's earlier release), written out again in
every module. The modules take the tests from here: `leak_test`, `benign_test` and
`limits_test` return a test function, parametrized by the corpus's names, that the module
binds to its own test name (so the test ids stay what they were). Since leaks19 also the
corpus by name (`by_name`) and the `policy` and `context` fixtures (`round_fixtures`: a round
may pass its own policy, allowing more file types, or its own dataset).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

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
    default_policy_without_ocr,
    run_planted,
)
from tre.policy import Policy

ResultsCheck = Callable[[str, list[CheckResult]], None]
"""More a round asserts on a leak's results (its name, the results): fixed words in reasons."""
Corpus = tuple[dict[str, Planted], dict[str, tuple[Planted, tuple[str, ...]]], dict[str, Planted]]


def by_name(round_module: ModuleType) -> Corpus:
    """A planted round's leaks, benign outputs (with the flags each raises by design) and known
    limits, each by its file name: what the parametrized tests take."""
    return (
        {p.name: p for p in round_module.leaks()},
        {p.name: (p, by_design) for p, by_design in round_module.benign()},
        {p.name: p for p in round_module.known_limits()},
    )


def round_fixtures(
    make_policy: Callable[[], Policy] = default_policy_without_ocr,
    dataset: Callable[[Path], Path] | None = None,
) -> tuple[Any, Any]:
    """The module-scoped ``policy`` and ``context`` fixtures of a round module, which binds them
    by those names (``policy, context = round_fixtures()``): the policy (the default, OCR
    off, unless ``make_policy``), and the corpus's dataset (or ``dataset`` built in a fresh
    folder) with round 9's earlier release (`earlier_release_context`)."""

    @pytest.fixture(scope="module", name="policy")
    def policy_fixture() -> Policy:
        return make_policy()

    @pytest.fixture(scope="module", name="context")
    def context_fixture(tmp_path_factory: pytest.TempPathFactory, policy: Policy) -> CheckContext:
        built = dataset(tmp_path_factory.mktemp("cohort")) if dataset is not None else None
        return earlier_release_context(tmp_path_factory, policy, built)

    return policy_fixture, context_fixture


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
