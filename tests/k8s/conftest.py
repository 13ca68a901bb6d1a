"""Shared helpers for the Kubernetes tests: locating checkov and running the validators."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.33.0"
# The Kubernetes versions docs/deploy.md names as supported (ValidatingAdmissionPolicy v1 is
# GA from 1.30): every manifest is validated against each one's schema.
SUPPORTED_K8S_VERSIONS = ("1.30.0", "1.31.0", "1.32.0", "1.33.0")


def checkov_bin() -> str | None:
    local = ROOT / ".tools" / "checkov" / "bin" / "checkov"
    if local.exists():
        return str(local)
    return shutil.which("checkov")


def kubernetes_validate_bin() -> str:
    here = Path(sys.executable).parent / "kubernetes-validate"
    return str(here) if here.exists() else "kubernetes-validate"


def write_docs(path: Path, docs: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def kubernetes_validate(files: list[Path], version: str = K8S_VERSION) -> None:
    """`kubernetes-validate -k <version> --strict`: schema plus no unknown fields."""
    proc = subprocess.run(
        [kubernetes_validate_bin(), "-k", version, "--strict", "--quiet", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def run_checkov(directory: Path) -> dict[str, Any]:
    """checkov on a directory with the project's external checks; returns its JSON report."""
    exe = checkov_bin()
    if exe is None:
        pytest.skip("checkov not installed: run scripts/install-tools (puts it in .tools/checkov)")
    proc = subprocess.run(
        [
            exe,
            "--framework",
            "kubernetes",
            "--skip-download",
            "--external-checks-dir",
            str(ROOT / "k8s" / "checks"),
            "-d",
            str(directory),
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.stdout.strip(), proc.stderr
    report = json.loads(proc.stdout)
    if isinstance(report, list):
        report = next(r for r in report if r.get("check_type") == "kubernetes")
    return report


def failed_checks(report: dict[str, Any]) -> list[str]:
    return [
        f"{c['check_id']} {c['resource']} ({c['file_path']})"
        for c in report.get("results", {}).get("failed_checks", [])
    ]
