"""Statistical disclosure control on CSV/TSV outputs, with ACRO's rules and defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from egress_review.checks import CheckContext, CheckResult, run_checks, worst
from egress_review.checks.tables import nk_fails, p_percent_fails
from tre.policy import Policy, load_policy

POLICIES = Path(__file__).resolve().parents[2] / "policies"


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy("default", POLICIES)


def check(tmp_path: Path, policy: Policy, text: str, name: str = "table.csv") -> list[CheckResult]:
    path = tmp_path / name
    path.write_text(text)
    return run_checks(path, name, policy, CheckContext())


def only(results: list[CheckResult], name: str) -> CheckResult:
    (found,) = [r for r in results if r.check == name]
    return found


def checks_fired(results: list[CheckResult]) -> set[str]:
    return {r.check for r in results if r.outcome != "pass"}


def test_count_of_three_blocks(tmp_path: Path, policy: Policy) -> None:
    results = check(
        tmp_path, policy, "diagnosis,sex,n\nadenocarcinoma,F,45\nadenocarcinoma,M,3\nsquamous,F,20\n"
    )
    assert worst(results) == "block"
    threshold = only(results, "sdc:threshold")
    assert threshold.outcome == "block"
    cell = threshold.evidence["reviewer_only"]["cells"][0]
    assert (cell["row"], cell["column"], cell["value"]) == (3, "n", "3")
    assert cell["label"] == "adenocarcinoma / M"
    # the requester sees where, not what: the blocked count and its label are the reviewers'
    assert threshold.evidence["cells"][0] == {"row": 3, "column": "n"}
    assert "3" not in threshold.reason.split("row 3")[1] and "adenocarcinoma" not in threshold.reason


def test_safe_frequency_table_passes(tmp_path: Path, policy: Policy) -> None:
    results = check(
        tmp_path, policy, "diagnosis,sex,n\nadenocarcinoma,F,45\nadenocarcinoma,M,30\nsquamous,F,20\n"
    )
    assert worst(results) == "pass", [r for r in results if r.outcome != "pass"]
    assert only(results, "sdc").evidence["count_columns"] == ["n"]


def test_threshold_is_strictly_below_ten(tmp_path: Path, policy: Policy) -> None:
    assert "sdc:threshold" in checks_fired(check(tmp_path, policy, "g,count\na,9\nb,50\n"))
    assert "sdc:threshold" not in checks_fired(check(tmp_path, policy, "g,count\na,10\nb,50\n"))


@pytest.mark.parametrize(
    "header", ["n", "Count", "frequency", "n_patients", "nodule_count", "Number of scans"]
)
def test_count_columns_recognised_by_name(tmp_path: Path, policy: Policy, header: str) -> None:
    results = check(tmp_path, policy, f"group,{header}\na,4\nb,50\n")
    assert only(results, "sdc:threshold").outcome == "block"


def test_zeros_are_flagged(tmp_path: Path, policy: Policy) -> None:
    results = check(tmp_path, policy, "group,n\na,0\nb,50\nc,35\n")
    assert only(results, "sdc:zeros").outcome == "flag"
    assert worst(results) == "flag"


def test_unrounded_small_counts_flagged_and_rounding_base(tmp_path: Path, policy: Policy) -> None:
    results = check(tmp_path, policy, "group,n\na,13\nb,50\nc,35\n")
    rounding = only(results, "sdc:rounding")
    assert rounding.outcome == "flag" and rounding.evidence["reviewer_only"]["cells"][0]["value"] == "13"
    assert "sdc:rounding" not in checks_fired(check(tmp_path, policy, "group,n\na,15\nb,51\n"))
    lidc = load_policy("lidc-demo", POLICIES)
    assert "sdc:rounding" in checks_fired(check(tmp_path, lidc, "group,n\na,15\nb,51\n"))


def test_tsv_and_semicolon_tables(tmp_path: Path, policy: Policy) -> None:
    assert (
        only(check(tmp_path, policy, "group\tn\na\t2\nb\t50\n", "t.tsv"), "sdc:threshold").outcome == "block"
    )
    assert only(check(tmp_path, policy, "group;n\na;2\nb;50\n", "s.csv"), "sdc:threshold").outcome == "block"


def test_suppressed_cells_are_not_counts(tmp_path: Path, policy: Policy) -> None:
    results = check(tmp_path, policy, "group,n\na,<10\nb,50\nc,*\n")
    assert "sdc:threshold" not in checks_fired(results)


def test_unlabelled_integer_column_with_small_values_is_flagged(tmp_path: Path, policy: Policy) -> None:
    results = check(tmp_path, policy, "site,patients_seen_by_x\nA,3\nB,50\n")
    unclassified = only(results, "sdc:unclassified")
    assert unclassified.outcome == "flag"
    assert unclassified.evidence["columns"][0]["column"] == "patients_seen_by_x"


def test_pandas_index_and_category_codes_are_not_counts(tmp_path: Path, policy: Policy) -> None:
    index_only = check(tmp_path, policy, ",site,mean_volume\n0,A,12.5\n1,B,11.0\n2,C,9.1\n")
    assert "sdc:unclassified" not in checks_fired(index_only)
    coded = check(tmp_path, policy, "smoker,stage,n\n0,1,45\n1,1,30\n0,2,25\n1,2,20\n")
    assert worst(coded) == "pass", [r for r in coded if r.outcome != "pass"]


def test_p_percent_and_nk_rules_match_acro() -> None:
    # ACRO: p = (total - x1 - x2) / x1; disclosive below 0.10.
    assert p_percent_fails([100, 50, 5], 0.1)  # (155-150)/100 = 0.05
    assert not p_percent_fails([100, 50, 15], 0.1)  # 0.15
    assert p_percent_fails([100, 50], 0.1)  # two contributors: each knows the other's value
    # (2, 0.9): top two above 90% of the total is dominance.
    assert nk_fails([90, 5, 1, 1, 1, 1, 1], 2, 0.9)  # 95/100
    assert not nk_fails([30, 20, 10, 10, 10, 10, 10], 2, 0.9)  # 50/100
    # all-zero cell: not an (n,k) failure in ACRO, but p-percent (zeros_are_disclosive) reports it
    assert not nk_fails([0, 0, 0], 2, 0.9)
    assert p_percent_fails([0, 0, 0], 0.1)
    assert p_percent_fails([7], 0.1)


def test_magnitude_table_with_contributors(tmp_path: Path, policy: Policy) -> None:
    dominated = ";".join(["1000"] + ["1"] * 11)
    spread = ";".join(str(v) for v in [12, 11, 10, 10, 9, 9, 8, 8, 7, 7, 6])
    few = "5;6;7"
    text = f"region,total_volume_ml,contributors\nnorth,1011,{dominated}\nsouth,97,{spread}\neast,18,{few}\n"
    results = check(tmp_path, policy, text)
    dominance = only(results, "sdc:dominance")
    assert dominance.outcome == "block"
    # east: p = (18-7-6)/7 = 0.71 and top-2 share 13/18 = 0.72, so not dominated, only too few
    assert [c["label"] for c in dominance.evidence["reviewer_only"]["cells"]] == ["north"]
    threshold = only(results, "sdc:threshold")
    assert [c["label"] for c in threshold.evidence["reviewer_only"]["cells"]] == ["east"]
    assert threshold.evidence["reviewer_only"]["cells"][0]["value"] == "3 contributors"


def test_negative_contributors_flagged(tmp_path: Path, policy: Policy) -> None:
    values = ";".join(["-5"] + ["10"] * 12)
    results = check(tmp_path, policy, f"group,sum,contributors\na,115,{values}\n")
    assert only(results, "sdc:negative").outcome == "flag"


def test_magnitude_without_contributor_information_is_flagged(tmp_path: Path, policy: Policy) -> None:
    results = check(tmp_path, policy, "region,mean_dose\nnorth,12.5\nsouth,11.0\n")
    assert only(results, "sdc:magnitudes").outcome == "flag"


def test_sparse_and_record_level_tables_flagged(tmp_path: Path, policy: Policy) -> None:
    sparse = check(tmp_path, policy, "g,n\na,0\nb,0\nc,0\nd,40\n")
    assert only(sparse, "sdc:sparse").outcome == "flag"
    rows = "\n".join(f"P{i:05d},{i % 90 + 18},{i % 2}" for i in range(1500))
    big = check(tmp_path, policy, "pid,age,smoker\n" + rows + "\n")
    assert only(big, "sdc:record_level").outcome == "flag"


def test_policy_threshold_is_honoured(tmp_path: Path) -> None:
    strict = Policy.model_validate({"name": "s", "version": "1", "sdc": {"threshold": 20}})
    assert only(check(tmp_path, strict, "g,n\na,15\nb,45\n"), "sdc:threshold").outcome == "block"
