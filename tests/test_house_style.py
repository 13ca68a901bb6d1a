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


# DICOM PS3.15 Annex E names its attributes so ("Physician(s) of Record"): quoted, not ours.
HEDGE_EXEMPT = {"egress_review/checks/annex_e.py"}


def _hedged_plurals() -> list[str]:
    """Every ``word(s)`` in the packages' strings (docstrings and comments aside) and panel
    templates: a message counts with `tre.plural.count` ("1 file", "2 files")."""
    import ast
    import re

    hedge = re.compile(r"[A-Za-z]\((s|es|ies)\)")
    found = []
    for pkg in ("tre", "egress_review"):
        for path in sorted((REPO / pkg).rglob("*.py")):
            rel = str(path.relative_to(REPO))
            source = path.read_text()
            # Parsed only when the text holds a hedge at all: parsing every module took ~4 s.
            if rel in HEDGE_EXEMPT or not re.search(r"\((s|es|ies)\)", source):
                continue
            tree = ast.parse(source, rel)
            docs = {
                id(node.value)
                for node in ast.walk(tree)
                if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            }
            for node in ast.walk(tree):
                if isinstance(node, ast.JoinedStr):  # f"{noun}(s)": the value stands in as "x"
                    text = "".join(v.value if isinstance(v, ast.Constant) else "x" for v in node.values)
                elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
                    text = node.value
                else:
                    continue
                if hedge.search(text.replace("http(s)", "")):
                    found.append(f"{rel}:{node.lineno}: {text.strip()[:60]!r}")
        for path in sorted((REPO / pkg).rglob("*.html")):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if hedge.search(line):
                    found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()[:60]!r}")
    return found


def test_messages_count_in_words_not_hedged_plurals() -> None:
    """'1 file(s)' and '1 able reviewer(s)' (newcomer round 23): say '1 file', '2 files'."""
    assert _hedged_plurals() == []
