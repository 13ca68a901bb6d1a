"""ACRO results.json carried in a request: shown to reviewers, verified, never trusted."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from egress_review.checks import CheckContext, CheckResult, run_checks, worst
from tre.policy import Policy, load_policy

POLICIES = Path(__file__).resolve().parents[2] / "policies"
SAFE = b"histology,n\nadenocarcinoma,45\nsquamous,30\n"
SMALL = b"histology,n\nadenocarcinoma,45\nsmall cell,3\n"


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy("default", POLICIES)


def acro_folder(
    root: Path, files: dict[str, bytes], statuses: dict[str, str], tamper: str = ""
) -> dict[str, Path]:
    """What ``acro.finalise(root, "json")`` leaves: outputs, results.json, checksums/<name>.txt."""
    results = {}
    for i, (name, data) in enumerate(files.items()):
        (root / name).write_bytes(data)
        (root / "checksums").mkdir(exist_ok=True)
        digest = hashlib.sha256(data if name != tamper else SAFE).hexdigest()
        (root / "checksums" / f"{name}.txt").write_text(digest)
        status = statuses[name]
        results[f"output_{i}"] = {
            "uid": f"output_{i}",
            "status": status,
            "type": "table",
            "properties": {"method": "crosstab"},
            "files": [{"name": name, "sdc": {"summary": {"threshold": 0 if status == "pass" else 1}}}],
            "outcome": {},
            "command": "acro.crosstab(df.histology, df.site)",
            "summary": f"{status}; threshold: {0 if status == 'pass' else 1} cells may need suppressing; ",
            "timestamp": "2026-11-29T10:00:00",
            "comments": [],
            "exception": "the small cell is a public figure from the cancer registry"
            if status == "fail"
            else "",
        }
    (root / "results.json").write_text(json.dumps({"version": "0.4.8", "results": results}, indent=4))
    return {f"acro/{p.relative_to(root).as_posix()}": p for p in sorted(root.rglob("*")) if p.is_file()}


def check_all(paths: dict[str, Path], policy: Policy) -> dict[str, list[CheckResult]]:
    ctx = CheckContext(
        file_count=len(paths),
        request_files={n: hashlib.sha256(p.read_bytes()).hexdigest() for n, p in paths.items()},
        request_paths=paths,
    )
    return {n: run_checks(p, n, policy, ctx) for n, p in paths.items()}


def test_acro_results_and_exceptions_are_shown_and_verified(tmp_path: Path, policy: Policy) -> None:
    paths = acro_folder(tmp_path, {"output_0.csv": SAFE, "output_1.csv": SMALL},
                        {"output_0.csv": "pass", "output_1.csv": "fail"})  # fmt: skip
    results = check_all(paths, policy)
    (summary,) = [r for r in results["acro/results.json"] if r.check == "acro:results"]
    assert summary.outcome == "flag" and "1 pass" in summary.reason and "1 fail" in summary.reason
    assert "1 exception request" in summary.reason
    assert summary.evidence["outputs"][0]["files"] == {"output_0.csv": "verified"}
    assert "registry" in summary.evidence["reviewer_only"]["exceptions"]["output_1"]
    (claim,) = [r for r in results["acro/output_1.csv"] if r.check == "acro:claim"]
    assert claim.outcome == "flag" and "'fail'" in claim.reason and "exception" in claim.reason
    # tre re-checks the file ACRO failed: its own threshold rule blocks it, whatever the exception
    assert worst(results["acro/output_1.csv"]) == "block"


def test_acro_pass_is_not_trusted(tmp_path: Path, policy: Policy) -> None:
    paths = acro_folder(tmp_path, {"output_0.csv": SMALL}, {"output_0.csv": "pass"})
    results = check_all(paths, policy)
    assert [r.outcome for r in results["acro/output_0.csv"] if r.check == "acro:claim"] == ["pass"]
    assert "sdc:threshold" in {r.check for r in results["acro/output_0.csv"] if r.outcome == "block"}


def test_file_changed_after_acro_checked_it_blocks(tmp_path: Path, policy: Policy) -> None:
    paths = acro_folder(tmp_path, {"output_0.csv": SMALL}, {"output_0.csv": "pass"}, tamper="output_0.csv")
    results = check_all(paths, policy)
    (mismatch,) = [r for r in results["acro/results.json"] if r.check == "acro:checksum"]
    assert mismatch.outcome == "block" and mismatch.evidence["files"] == [
        {"output": "output_0", "file": "output_0.csv"}
    ]


def test_listed_file_missing_from_the_request_is_unverified(tmp_path: Path, policy: Policy) -> None:
    paths = acro_folder(tmp_path, {"output_0.csv": SAFE}, {"output_0.csv": "pass"})
    del paths["acro/output_0.csv"]
    results = check_all(paths, policy)
    (summary,) = [r for r in results["acro/results.json"] if r.check == "acro:results"]
    assert summary.outcome == "flag" and "could not be verified" in summary.reason
