"""Round 6 of the planted-leak run (leaks10): every leak is caught by its class's check, the
benign research outputs raise no false alarm, what the job wrote stays with the reviewers, and
the same files through the real egress API are blocked or flagged. OCR is off: no leak here
needs it, and it is slow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from egress_review import checking
from egress_review.checks import CheckContext, ocr, worst
from tests.egress.planted_corpus import (
    Planted,
    build_dataset,
    check_context,
    default_policy_without_ocr,
    run_planted,
)
from tests.egress.planted_round6 import IDS, PROSE, benign, leaks, ocr_leaks
from tests.worlds import WorldFactory
from tre.policy import Policy, load_policy
from tre.store.db import session_scope

POLICIES = Path(__file__).resolve().parents[2] / "policies"
LEAKS = {p.name: p for p in leaks()}
BENIGN = {p.name: (p, by_design) for p, by_design in benign()}


@pytest.fixture(scope="module")
def policy() -> Policy:
    return default_policy_without_ocr()


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory, policy: Policy) -> CheckContext:
    return check_context(build_dataset(tmp_path_factory.mktemp("dataset")), policy)


@pytest.mark.parametrize("name", sorted(LEAKS))
def test_round6_leak_is_caught_by_its_class(
    name: str, tmp_path: Path, policy: Policy, context: CheckContext
) -> None:
    planted = LEAKS[name]
    results = run_planted(tmp_path, planted, policy, context)
    fired = [r.check for r in results if r.outcome != "pass"]
    assert worst(results) != "pass", f"{name} passed"
    assert any(f.startswith(planted.caught_by) for f in fired), (
        f"{name}: expected {planted.caught_by}, got {fired}"
    )
    if planted.caught_by not in (PROSE,):
        # a count in a table or a named value, an identifier, hidden bytes: blocked, not only flagged
        assert worst(results) == "block", f"{name}: {fired}"


@pytest.mark.parametrize("name", sorted(BENIGN))
def test_round6_benign_output_raises_no_false_alarm(
    name: str, tmp_path: Path, policy: Policy, context: CheckContext
) -> None:
    planted, by_design = BENIGN[name]
    fired = [r.check for r in run_planted(tmp_path, planted, policy, context) if r.outcome != "pass"]
    assert [f for f in fired if f not in by_design] == [], f"{name}: {fired}"
    assert not by_design or fired, f"{name}: expected {by_design}"


def test_corpus_sizes() -> None:
    """The counts docs/egress-checks.md states."""
    assert len(LEAKS) == 69 and len(BENIGN) == 31 and len(ocr_leaks()) == 4
    assert sum(1 for p in LEAKS.values() if p.caught_by == IDS) == 19


@pytest.mark.parametrize(
    ("name", "job_text"),
    [
        ("summary_colon.txt", "relapse"),
        ("run.log", "site=B"),
        ("results.md", "relapse"),
        ("percent_prose.txt", "120 patients"),
        ("table1.csv", "2.5%"),
        ("differencing.csv", "<10"),
    ],
)
def test_what_the_job_wrote_stays_with_the_reviewers(
    name: str, job_text: str, tmp_path: Path, policy: Policy, context: CheckContext
) -> None:
    """The requester sees line or row numbers and fixed words; the names, values and sentences
    the job wrote are reviewer-only evidence."""
    results = run_planted(tmp_path, LEAKS[name], policy, context)
    found = [r for r in results if r.check.startswith(("sdc:threshold", "sdc:prose", "sdc:differencing"))]
    assert found, [r.check for r in results]
    shown = json.dumps(checking.for_requester([r.model_dump() for r in found]))
    assert job_text not in shown, shown
    assert job_text in json.dumps([r.evidence.get("reviewer_only") for r in found])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("epoch=3 batch_size=8 num_workers=4 n_classes=3 fold=2 loss=0.3\n", []),
        ("Number of GPUs: 4\nNumber of parameters: 7\nBatch size: 8\n", []),
        ("cohort A n=4\n", ["sdc:threshold"]),
        ("lung cases: 7\n", ["sdc:threshold"]),
        ("Table 2 patients characteristics. Stage 3 patients (n = 96).\n", []),
        ("We excluded 3 patients with motion artefacts.\n", ["sdc:prose"]),
        ("one of the patients moved\n", []),
        ("about 2 seconds per patient; 5 folds of 120 patients\n", []),
        ("1,234 patients were screened\n", []),
        ("Sensitivity 91.2% (95% CI 88.0-94.1) at 1 false positive per scan\n", []),
        ("Response in 5% of 100 patients\n", ["sdc:prose"]),
        ("Response in 50% of 100 patients\n", []),
    ],
)
def test_text_counts_read_names_and_sentences_not_settings(
    text: str, expected: list[str], tmp_path: Path, policy: Policy, context: CheckContext
) -> None:
    results = run_planted(tmp_path, Planted("notes.txt", text.encode()), policy, context)
    assert [r.check for r in results if r.outcome != "pass"] == expected


def test_round6_files_through_the_egress_api(app_client, world, engine, settings) -> None:  # type: ignore[no-untyped-def]
    """The real request path: a finished job's outputs, an egress request by the researcher,
    the checks the server runs. Each leak is blocked (or, for a sentence, flagged) and the
    requester's view does not quote what the job wrote."""
    names = ["summary_kv.txt", "run.log", "results.md", "differencing.csv", "nested.json", "weights_tail.npy"]
    outputs = {n: LEAKS[n].data for n in names}
    with session_scope(engine) as s:
        job_id = WorldFactory(s).finished_job(settings, "p1", "alice", ["ct1"], outputs)
    body = {"job_id": job_id, "files": names, "justification": "round 6"}
    made = app_client.post("/api/v1/egress/requests", headers=world.headers["alice"], json=body)
    assert made.status_code == 201, made.text
    seen = app_client.get(f"/api/v1/egress/requests/{made.json()['id']}", headers=world.headers["alice"])
    assert seen.status_code == 200, seen.text
    files = {f["path"]: f for f in seen.json()["files"]}
    for name in names:
        outcomes = {c["check"]: c["outcome"] for c in files[name]["checks"]}
        wanted = "flag" if LEAKS[name].caught_by == PROSE else "block"
        assert wanted in outcomes.values(), (name, outcomes)
    assert "relapse" not in seen.text and "site=B" not in seen.text and "HOSP" not in seen.text


@pytest.mark.skipif(not ocr.available(), reason="needs Debian tesseract-ocr")
@pytest.mark.parametrize("planted", ocr_leaks(), ids=lambda p: p.name)
def test_identifiers_burned_in_small_faint_slanted_or_upside_down_are_read(
    planted: Planted, tmp_path: Path, context: CheckContext
) -> None:
    """OCR on (the default policy): each picture is also a copy of the input slice, which
    blocks on its own, so the OCR finding itself is asserted."""
    policy = load_policy("default", POLICIES)
    results = run_planted(tmp_path, planted, policy, context)
    assert "ocr:identifiers" in [r.check for r in results if r.outcome == "block"], [r.check for r in results]


def test_an_archive_a_policy_allows_is_judged_by_its_counts(
    tmp_path: Path, policy: Policy, context: CheckContext
) -> None:
    """The default policy refuses archives unread; one that allows zip reads the member's
    `name=value` count and blocks it."""
    files = policy.files.model_copy(
        update={"archives": "allow", "allowed_types": [*policy.files.allowed_types, "zip"]}
    )
    allowing = policy.model_copy(update={"files": files})
    results = run_planted(tmp_path, LEAKS["counts.zip"], allowing, context)
    assert ("member:sdc:threshold", "block") in [(r.check, r.outcome) for r in results]
