"""Every command's `--help` says what it does and shows an example, and the example is right;
a mistyped command is answered with the closest one.

A newcomer's first step is `tre COMMAND --help`: the options say what may be given, the
example (`tre.cli.examples`) what is usually given. Each example is checked as the docs'
commands are (`tests/test_docs_cli.py`: the command, its options and its arguments exist) and
then parsed by the command itself, so a value of the wrong type (`--overlap 7d` for a number
of hours) or a choice the command does not know fails here rather than in a reader's shell.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer

from tests.test_docs_cli import DocCommand, _shell_commands, check
from tre.cli.app import app
from tre.cli.examples import EXAMPLES


def _groups(command: Any, ctx: Any) -> list[tuple[Any, Any]]:
    """Every command and group below `command`, each with its context (Typer vendors its
    own click: commands are matched by shape, not by class)."""
    found: list[tuple[Any, Any]] = []
    for name, sub in command.commands.items():
        sub_ctx = typer.Context(sub, info_name=name, parent=ctx)
        found.append((sub, sub_ctx))
        if hasattr(sub, "commands"):
            found.extend(_groups(sub, sub_ctx))
    return found


def _root() -> Any:
    root = typer.main.get_command(app)
    assert hasattr(root, "commands")
    return root


def test_every_command_and_group_shows_an_example(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rendered as a user sees it (rich help, in process): a description, then "Example:" and
    a `tre ...` line that starts with the command's own path."""
    monkeypatch.setenv("COLUMNS", "200")
    root = _root()
    missing, seen = [], 0
    for command, ctx in _groups(root, typer.Context(root, info_name="tre")):
        command.get_help(ctx)
        shown = capsys.readouterr().out
        lines = [" ".join(line.split()) for line in shown.splitlines()]
        own = [line for line in lines if f"{line} ".startswith(f"{ctx.command_path} ")]
        if not (command.help or "").strip() or not any(line in ("Example:", "Examples:") for line in lines):
            missing.append(ctx.command_path)
        elif hasattr(command, "commands"):
            assert any(line.startswith("tre ") for line in lines), shown
        else:
            assert own, f"{ctx.command_path}: its example does not call it\n{shown}"
        seen += 1
    assert not missing, f"commands without a description or an example (tre/cli/examples.py): {missing}"
    assert seen > 80


def test_no_example_is_left_for_a_command_that_is_gone() -> None:
    root = _root()
    paths = {ctx.command_path for _, ctx in _groups(root, typer.Context(root, info_name="tre"))}
    assert set(EXAMPLES) <= paths, sorted(set(EXAMPLES) - paths)


def _parse(root: Any, text: str) -> None:
    """Parse one example as the command would, without running it."""
    words = shlex.split(text)[1:]
    command = root
    ctx = root.make_context("tre", [], resilient_parsing=True)
    while hasattr(command, "commands") and words and not words[0].startswith("-"):
        name = words.pop(0)
        sub = command.get_command(ctx, name)
        assert sub is not None, text
        command, ctx = sub, typer.Context(sub, info_name=name, parent=ctx)
    with command.make_context(ctx.info_name, words, parent=ctx.parent) as parsed:
        assert parsed.params is not None


@pytest.mark.parametrize("path", sorted(EXAMPLES))
def test_each_example_is_a_command_the_cli_accepts(
    path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parsed in a folder holding the files the examples read, as a reader's would."""
    for name in ("bundle.jsonl", "log.vkey", "my-analysis.tar", "token.txt"):
        (tmp_path / name).write_text("x")
    monkeypatch.chdir(tmp_path)
    root = _root()
    for example in EXAMPLES[path]:
        for text in _shell_commands(example):
            assert not check(DocCommand("tre/cli/examples.py", 1, text, in_block=True), root)
            try:
                _parse(root, text)
            except typer.TyperException as exc:
                pytest.fail(f"{path}: `{text}` is refused: {exc.format_message()}")


def test_the_checker_catches_a_wrong_example() -> None:
    """The parse above fails on a value of the wrong type and on an unknown choice."""
    root = _root()
    for text in ("tre audit rotate-key --overlap 7d", "tre admin token --user a --role r --ttl soon"):
        with pytest.raises(typer.TyperException):
            _parse(root, text)


def _tre(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRE_")}
    env.update(TRE_HOME=str(tmp_path / "state"), TRE_API_URL="http://127.0.0.1:9", COLUMNS="100")
    return subprocess.run(
        [sys.executable, "-m", "tre.cli.main", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize(
    ("argv", "closest"),
    [
        (["submt", "-p", "lung"], "submit"),
        (["egress", "reqest", "JOB"], "request"),
        (["audit", "verfy", "bundle.jsonl"], "verify"),
        (["projet", "list"], "project"),
        (["admin", "tokn"], "token"),
    ],
)
def test_a_mistyped_command_suggests_the_closest(tmp_path: Path, argv: list[str], closest: str) -> None:
    proc = _tre(tmp_path, *argv)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert f"Did you mean '{closest}'?" in lines[0], lines[0]
    assert "Traceback" not in proc.stderr


def test_a_command_far_from_every_name_is_refused_plainly(tmp_path: Path) -> None:
    proc = _tre(tmp_path, "frobnicate")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "error: No such command 'frobnicate'. (see: python -m tre.cli.main --help)"
    ], proc.stderr


def test_help_of_a_command_shows_its_example_in_a_terminal(tmp_path: Path) -> None:
    """End to end, as typed: `tre egress vote --help` ends with its example, exit 0."""
    proc = _tre(tmp_path, "egress", "vote", "--help")
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())
    assert "Cast your blind vote" in text
    assert "Example: tre egress vote REQ approve -m 'aggregate counts only'" in text
