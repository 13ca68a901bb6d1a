"""The operator's e2e script and its inputs stay runnable and cover the plan (no cluster here)."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess

import pytest

from tests.k8s.e2e_bases import BASES, NEGATIVE, ROOT

E2E = ROOT / "k8s" / "e2e"


def test_run_sh_parses_and_is_executable() -> None:
    script = E2E / "run.sh"
    assert script.stat().st_mode & 0o111
    subprocess.run(["bash", "-n", str(script)], check=True, timeout=30)
    if shutil.which("shellcheck"):
        subprocess.run(["shellcheck", str(script)], check=True, timeout=60)


def test_drive_has_every_scenario_of_the_plan() -> None:
    tree = ast.parse((E2E / "drive.py").read_text())
    table = next(
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.AnnAssign) and getattr(n.target, "id", "") == "SCENARIOS"
    )
    assert isinstance(table.value, ast.Dict)
    names = {k.value for k in table.value.keys if isinstance(k, ast.Constant)}
    assert names == {
        "success",
        "failure",
        "cancel",
        "network",
        "collector-hijack",
        "600MiB-output",
        "dropped-exec",
        "watch-410",
        "killed-worker",
        "cuda-gvisor",
    }
    plan = (ROOT / "docs" / "k8s-test-plan.md").read_text()
    assert [n for n in sorted(names) if f"`{n}`" not in plan] == []


@pytest.mark.parametrize("case", sorted(NEGATIVE.glob("*.json")), ids=lambda p: p.stem)
def test_negative_cases_are_well_formed(case) -> None:  # type: ignore[no-untyped-def]
    doc = json.loads(case.read_text())
    required = {"bypass", "issue_item", "base", "operation", "as", "expect_denied_by", "patch"}
    # namespace_labels: the case happens in a namespace carrying these labels (run.sh makes it).
    assert required <= set(doc) <= required | {"namespace_labels"}
    assert (BASES / doc["base"]).exists() and doc["operation"] in ("CREATE", "UPDATE", "DELETE")
    assert doc["expect_denied_by"] in ("tre-job-pods", "tre-worker-claims", "tre-project-namespaces")
    assert doc["as"] == "worker" and doc["issue_item"] in (3, 4, 6, 11)
