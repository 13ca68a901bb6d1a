"""Docs cannot drift from the CLI: every `tre ...` command README.md, SECURITY.md and docs/
show exists, with the options and number of arguments they show; so does every command the
program's own messages tell users to run.

Newcomers and each kind of user (researcher, DAC member, auditor, admin) type the commands
of the walk-throughs literally; a renamed option or a command that was never written fails
here rather than in front of them. The commands are read from the fenced code blocks and the
inline code of the Markdown files and resolved against the Typer application itself (its click
command tree); every command's ``--help`` is rendered too. Runs in about a second.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer

from tre.cli.app import app

REPO = Path(__file__).resolve().parent.parent
DOCS = [
    REPO / "README.md",
    REPO / "SECURITY.md",
    REPO / "policies" / "SCHEMA.md",
    *sorted((REPO / "docs").glob("*.md")),
]

SOURCES = [*sorted((REPO / "tre").rglob("*.py")), *sorted((REPO / "egress_review").rglob("*.py"))]

# Inline code that starts with "tre " but is not a command: the catalogue title's default
# value (README's configuration table), a list of groups in a module's docstring.
NOT_COMMANDS = {"tre node catalogue", "tre project/dataset/grant ..."}


@dataclass(frozen=True)
class DocCommand:
    """One `tre ...` command as a page shows it."""

    page: str
    line: int
    text: str
    in_block: bool  # a code block's line (a full command) rather than inline code (a mention)


def _shell_commands(line: str) -> Iterator[str]:
    """The `tre` commands of one shell line: comments dropped, split at `&&`, `||`, `;`, ` | `,
    `sudo`, `$ `, `.venv/bin/` and leading VAR=value assignments removed, as are notes set off
    by two spaces and parentheses."""
    line = re.split(r"\s#\s|^#", line, maxsplit=1)[0]
    line = re.sub(r"\s{2,}\(.*\)\s*$", "", line)  # docs/egress.md's "   (who runs it)" notes
    line = re.sub(r"\s[<>]\s+\S+", "", line)  # redirections: `> log.vkey`, `< token.txt` (not <ref>)
    for part in re.split(r"&&|\|\||;|\s\|\s", line):  # a pipe has spaces; approve|reject does not
        part = re.sub(r"^(sudo\s+|\$\s+|\.venv/bin/|[A-Z_][A-Z0-9_]*=\S*\s+)+", "", part.strip())
        if part.startswith("tre "):
            yield part


def _inline_commands(name: str, text: str) -> Iterator[DocCommand]:
    """`tre ...` in backticks: a page's inline code, or a hint in the CLI's and API's messages."""
    for inline in re.finditer(r"(?<!`)`(tre [^`\n]+)`", text):
        if inline.group(1) not in NOT_COMMANDS:
            line_no = text.count("\n", 0, inline.start()) + 1
            for command in _shell_commands(inline.group(1)):
                yield DocCommand(name, line_no, command, in_block=False)


def hint_commands() -> list[DocCommand]:
    """The commands the program's own messages and help tell users to run: in backticks, or
    as an example on a line of its own in a command's help."""
    found: list[DocCommand] = []
    for path in SOURCES:
        name, text = str(path.relative_to(REPO)), path.read_text()
        found.extend(_inline_commands(name, text))
        for example in re.finditer(r"^\s+(tre [a-z][^\n`\"']*)$", text, re.M):
            line_no = text.count("\n", 0, example.start()) + 1
            found.extend(
                DocCommand(name, line_no, c, in_block=True) for c in _shell_commands(example.group(1))
            )
    return found


def doc_commands() -> list[DocCommand]:
    found = []
    for page in DOCS:
        text = page.read_text()
        name = str(page.relative_to(REPO))
        for block in re.finditer(r"^ *```([a-z]*)\n(.*?)^ *```", text, re.S | re.M):
            if block.group(1) not in ("", "bash", "sh", "shell", "console"):
                continue
            first = text.count("\n", 0, block.start(2)) + 1
            for n, line in enumerate(block.group(2).splitlines()):
                for command in _shell_commands(line):
                    found.append(DocCommand(name, first + n, command, in_block=True))
        found.extend(_inline_commands(name, text))
    return found


def _is_placeholder(word: str) -> bool:
    """Words that stand for something the reader fills in: <ref>, JOB, FILE..., …, [--json]."""
    return bool(re.fullmatch(r"<[^>]*>\S*|[A-Z][A-Z0-9_]*(\.\.\.)?|\.\.\.|…", word))


def _words(command: str) -> list[str]:
    # Optional parts in brackets are documented syntax: check what is inside them.
    text = command.replace("[", " ").replace("]", " ")
    text = re.sub(r'"\.\.\."|"…"', '"x"', text)
    return shlex.split(text)


def _options(command: Any) -> dict[str, int]:
    """Option name -> how many values follow it (none for flags; `--spacing 1 1 1` three)."""
    names: dict[str, int] = {"-h": 0, "--help": 0}
    for param in command.params:
        if getattr(param, "param_type_name", "") == "option":
            for name in (*param.opts, *param.secondary_opts):
                names[name] = 0 if (param.is_flag or param.count) else max(param.nargs, 1)
    return names


def check(doc: DocCommand, root: Any) -> list[str]:
    """What is wrong with one documented command (nothing when it matches the CLI)."""
    where = f"{doc.page}:{doc.line}: `{doc.text}`"
    words = _words(doc.text)[1:]
    command, path = root, ["tre"]
    while words and hasattr(command, "commands") and not words[0].startswith("-"):
        sub = command.commands.get(words[0])
        if sub is None:
            if _is_placeholder(words[0]) and not doc.in_block:
                return []  # a mention such as `tre job <state>: ...` or `tre admin ...`
            return [f"{where}: `{' '.join(path)}` has no command {words[0]!r}"]
        command, path = sub, [*path, words.pop(0)]
    if hasattr(command, "commands"):
        return []  # a group named on its own (`tre egress`), or with --help
    options = _options(command)
    positionals: list[str] = []
    problems = []
    while words:
        word = words.pop(0)
        if word == "--":
            positionals.extend(words)
            break
        if word.startswith("-") and len(word) > 1 and not re.fullmatch(r"-\d+(\.\d+)?", word):
            name = word.split("=", 1)[0]
            if name not in options:
                problems.append(f"{where}: `{' '.join(path)}` has no option {name}")
            elif "=" not in word:
                del words[: options[name]]  # the option's values
        elif word not in ("...", "…"):
            positionals.append(word)
    arguments = [p for p in command.params if getattr(p, "param_type_name", "") == "argument"]
    variadic = any(p.nargs == -1 for p in arguments)
    if not variadic and len(positionals) > len(arguments):
        problems.append(
            f"{where}: `{' '.join(path)}` takes {len(arguments)} argument(s), given {positionals}"
        )
    required = sum(1 for p in arguments if p.required)
    if doc.in_block and len(positionals) < required:
        problems.append(f"{where}: `{' '.join(path)}` needs {required} argument(s), given {positionals}")
    return problems


def _leaves(command: Any, ctx: Any) -> Iterator[tuple[Any, Any]]:
    """Every command that is not a group, with a click context whose parents are its groups."""
    for name, sub in command.commands.items():
        sub_ctx = typer.Context(sub, info_name=name, parent=ctx)
        if hasattr(sub, "commands"):
            yield from _leaves(sub, sub_ctx)
        else:
            yield sub, sub_ctx


def test_the_docs_show_tre_commands_from_every_role() -> None:
    """The harness reads what it should: the README's walk-throughs of each role are in it."""
    texts = {d.text.split(" #")[0].strip() for d in doc_commands() if d.page == "README.md" and d.in_block}
    for expected in (
        "tre admin init --user admin",
        "tre login",
        'tre egress vote REQ approve -m "aggregate counts only"',
        "tre audit export bundle.jsonl",
        "tre hub serve",
    ):
        assert expected in texts, sorted(texts)


def test_every_documented_command_and_option_exists() -> None:
    root = typer.main.get_command(app)
    problems = [p for doc in doc_commands() for p in check(doc, root)]
    assert not problems, "\n".join(problems)


def test_every_command_the_program_tells_users_to_run_exists() -> None:
    """Hints in errors and help ("run `tre login`", "an admin runs `tre admin token ...`")
    are followed as literally as the docs."""
    root = typer.main.get_command(app)
    hints = hint_commands()
    assert len(hints) > 50
    problems = [p for hint in hints for p in check(hint, root)]
    assert not problems, "\n".join(problems)


def test_the_checker_catches_a_drifted_command() -> None:
    """A command, an option or an argument the CLI does not have is reported."""
    root = typer.main.get_command(app)
    for text in (
        "tre egress approve REQ",
        "tre jobs --status running",
        "tre logs JOB EXTRA",
        "tre submit -p lung --imagee X -- python3 a.py",
        "tre submit -p lung --image <ref> --codez . -- python3 a.py",  # <ref> is a value, not a redirection
        "tre egress vote REQ approve|reject [--comentary C]",
    ):
        assert check(DocCommand("x.md", 1, text, in_block=True), root), text
    for text in ("tre jobs --state running", "tre submit -p lung --image X --code . --wait -- python3 a.py"):
        assert not check(DocCommand("x.md", 1, text, in_block=True), root), text


def test_every_command_has_help(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`--help` of every command renders (a newcomer's first step) with its full path and a
    description; rendered in process, without a subprocess per command."""
    monkeypatch.setenv("COLUMNS", "120")
    root = typer.main.get_command(app)
    seen = 0
    for command, ctx in _leaves(root, typer.Context(root, info_name="tre")):
        shown = (command.get_help(ctx) or "") + capsys.readouterr().out  # Typer prints rich help
        assert f"Usage: {ctx.command_path} " in " ".join(shown.split()), shown
        assert (command.help or "").strip(), f"{ctx.command_path} has no description"
        seen += 1
    assert seen > 50


def test_the_demo_ends_with_commands_that_exist(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The demo's last words tell a newcomer what to type next; those commands exist too."""
    from tre.config import Settings
    from tre.demo import print_next_steps

    print_next_steps(Settings(home=tmp_path / "state"))
    shown = capsys.readouterr().out
    commands = [c for line in shown.splitlines() for c in _shell_commands(line.strip())]
    assert "tre serve" in commands and "tre login" in commands, shown
    root = typer.main.get_command(app)
    problems = [p for c in commands for p in check(DocCommand("tre demo", 0, c, in_block=True), root)]
    assert not problems, problems
    # A state outside the default place (`TRE_HOME=... tre demo`) is named first: a bare
    # `tre serve` afterwards served the default, empty state.
    assert f"export TRE_HOME={tmp_path / 'state'}" in shown.splitlines()[-5], shown
    from tre.config import default_home

    print_next_steps(Settings(home=default_home()))
    assert "export TRE_HOME" not in capsys.readouterr().out
