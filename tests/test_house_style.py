"""The test command enforces the house style: a change that breaks it fails CI."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_the_test_command_runs_the_linters_before_pytest() -> None:
    script = (REPO / "scripts" / "test").read_text()
    steps = [
        "ruff check tre egress_review tests benchmarks",
        "ruff format --check tre egress_review tests benchmarks",
        "mypy tre egress_review",
        "python -m pytest",
    ]
    positions = [script.find(step) for step in steps]
    assert all(p >= 0 for p in positions), dict(zip(steps, positions, strict=True))
    assert positions == sorted(positions), "the style checks must run before the tests"
    assert "set -euo pipefail" in script  # a failing check stops the command
