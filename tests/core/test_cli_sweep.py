"""Every `tre` subcommand, found by walking the Typer app (a command added later is swept
too), run as the console script runs it (`tre.cli.main.run`, in this process for speed) with:

* an option no command has, and (where it has any) none of its required arguments: a usage
  error, one line on stderr, exit 2;
* its required arguments filled with ids nothing has, files that do not exist, against an API
  address where nothing listens: one line, non-zero exit, no traceback;
* against a live API: with an expired token (every command that talks to the API is refused
  in one line naming the expiry), a researcher's token (unknown ids, admin-only commands,
  another project's things): either it works (exit 0) or one line and exit 1.

Commands that start a long-running process (servers, workers, the demo) or prompt get the
usage checks only.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

from tests.api.test_cli_for_people import live as live  # noqa: F401 - the fixture
from tre.cli.app import app
from tre.cli.main import run
from tre.config import get_settings

# Start something that runs until stopped, asks at a terminal, or builds an image for
# minutes (and writes it where it runs): usage checks only.
RUNS_UNTIL_STOPPED = {
    ("serve",),
    ("worker",),
    ("demo",),
    ("login",),
    ("hub", "serve"),
    ("witness", "serve"),
    ("node", "agent"),
    ("audit", "witness", "run"),
    ("admin", "warm-kernels"),
    ("admin", "build-image"),
    ("admin", "build-control-image"),
}
UNKNOWN_ID = "0" * 32
# A value for each argument and required option, by its name: ids nothing has, files that do
# not exist ({tmp} is the test's folder).
VALUES: dict[str, str] = {
    "job_id": UNKNOWN_ID,
    "request_id": UNKNOWN_ID,
    "grant_id": UNKNOWN_ID,
    "dataset_id": "no-such-dataset",
    "dataset": "no-such-dataset",
    "project_id": "no-such-project",
    "project": "no-such-project",
    "fed_project": "no-such-project",
    "user_id": "no-such-user",
    "user": "no-such-user",
    "name": "no-such-name",
    "path": "{tmp}/missing.tar",
    "bundle": "{tmp}/missing-bundle.json",
    "out": "{tmp}/out/missing-dir/file",
    "output": "{tmp}/out/missing-dir/file",
    "log": "{tmp}/missing-log",
    "reference": "registry.tre.local/x@sha256:" + "ab" * 32,
    "image": "registry.tre.local/x@sha256:" + "ab" * 32,
    "decision": "approve",
    "files": "summary.csv",
    "command": "true",
    "index": "0",
    "url": "http://127.0.0.1:9",
    "hub": "http://127.0.0.1:9",
    "vkey": "witness+0badc0de+AAAA",
    "key": "AAAA",
    "audit_key": "AAAA",
    "hub_key": "AAAA",
    "code_hash": "ab" * 32,
    "nodes": "node-a",
    "why": "a reason",
    "comment": "a comment",
    "role": "researcher",
}


def leaf_commands() -> list[tuple[tuple[str, ...], Any]]:
    """(path, click command) of every leaf command of the app."""
    found: list[tuple[tuple[str, ...], Any]] = []

    def walk(cmd: Any, path: tuple[str, ...]) -> None:
        if hasattr(cmd, "commands"):
            for name, sub in sorted(cmd.commands.items()):
                walk(sub, (*path, name))
        else:
            found.append((path, cmd))

    walk(typer.main.get_command(app), ())
    return found


COMMANDS = leaf_commands()


def filled_args(cmd: Any, tmp: Path) -> list[str]:
    """The command's required options and arguments, each given a value from `VALUES`."""
    options: list[str] = []
    arguments: list[str] = []
    for param in cmd.params:
        if param.param_type_name == "argument":
            if not param.required and param.name not in ("command", "files"):
                continue
            value = VALUES[param.name].format(tmp=tmp)
            arguments.append(value)
        elif param.required:
            options += [param.opts[0], VALUES[param.name].format(tmp=tmp)]
    return [*options, "--", *arguments] if arguments else options


@pytest.fixture
def tre_in_process(monkeypatch, capfd, tmp_path) -> Iterator[Callable[..., tuple[int, str, str]]]:  # type: ignore[no-untyped-def]
    """Run ``tre ARGS`` as the console script does, with ``env`` on top of this process's
    environment; (exit status, stdout, stderr). It runs in the test's own folder, so a
    command that writes where it runs (a default ``-o``) never writes into the checkout."""
    monkeypatch.chdir(tmp_path)

    def invoke(env: dict[str, str], *args: str) -> tuple[int, str, str]:
        with monkeypatch.context() as m:
            for name in [k for k in os.environ if k.startswith("TRE_")]:
                m.delenv(name)
            for name, value in env.items():
                m.setenv(name, value)
            m.setenv("COLUMNS", "200")
            m.setattr(sys, "argv", ["tre", *args])
            get_settings.cache_clear()
            capfd.readouterr()
            with pytest.raises(SystemExit) as exited:
                run()
            get_settings.cache_clear()
        out, err = capfd.readouterr()
        code = exited.value.code
        return (code if isinstance(code, int) else (0 if code is None else 1)), out, err

    yield invoke


def one_line(code: int, out: str, err: str, what: Any) -> str:
    """The error's one line (asserting there is exactly one, and no traceback)."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, (what, code, err)
    assert "Traceback" not in out + err, (what, err)
    assert lines[0].startswith("error: "), (what, lines[0])
    return lines[0]


def test_the_sweep_sees_every_command() -> None:
    paths = {p for p, _ in COMMANDS}
    assert len(paths) >= 70 and ("egress", "download") in paths and ("hub", "node", "add") in paths
    assert RUNS_UNTIL_STOPPED <= paths, "a command named here no longer exists"


def test_an_unknown_option_and_missing_arguments_are_one_line_usage_errors(tre_in_process, settings) -> None:  # type: ignore[no-untyped-def]
    env = {"TRE_HOME": str(settings.home), "TRE_API_URL": "http://127.0.0.1:9", "TRE_TOKEN": "x"}
    for path, cmd in COMMANDS:
        code, out, err = tre_in_process(env, *path, "--no-such-option")
        line = one_line(code, out, err, path)
        assert code == 2 and "No such option" in line, (path, code, line)
        assert f"tre {' '.join(path)} --help" in line, (path, line)  # says where to look
        needs = [p for p in cmd.params if p.required]
        if needs:
            code, out, err = tre_in_process(env, *path)
            line = one_line(code, out, err, path)
            assert code == 2 and "Missing" in line, (path, code, line)


def _sweepable() -> list[tuple[tuple[str, ...], Any]]:
    return [(p, c) for p, c in COMMANDS if p not in RUNS_UNTIL_STOPPED]


def test_every_command_against_an_api_that_is_down(tre_in_process, settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {
        "TRE_HOME": str(settings.home),
        "TRE_API_URL": "http://127.0.0.1:9",
        "TRE_HUB_URL": "http://127.0.0.1:9",
        "TRE_TOKEN": "x",
    }
    unreachable = []
    for path, cmd in _sweepable():
        code, out, err = tre_in_process(env, *path, *filled_args(cmd, tmp_path))
        if code == 0:
            continue  # a local command that had nothing to refuse (printing a key, say)
        line = one_line(code, out, err, path)
        if "127.0.0.1:9" in line:  # every kind of call says the same thing when nothing listens
            assert "cannot reach the tre API" in line, (path, line)
            unreachable.append(path)
    # The sweep did reach the network for the commands that use it.
    assert len(unreachable) >= 40, unreachable


def test_every_command_with_an_expired_token_and_as_a_researcher(
    tre_in_process, live, tmp_path, token_for
) -> None:  # type: ignore[no-untyped-def]
    env, alice = live
    base = {k: v for k, v in env.items() if k.startswith("TRE_")}
    expired = token_for("alice", "researcher", ttl_s=-600)
    refused_expired = 0
    for path, cmd in _sweepable():
        if path[0] in ("hub", "node", "witness"):
            continue  # another service (the hub, a node's agent, a witness): not this API
        args = filled_args(cmd, tmp_path)
        code, out, err = tre_in_process({**base, "TRE_TOKEN": expired}, *path, *args)
        if code != 0:
            line = one_line(code, out, err, ("expired", path))
            refused_expired += "expired" in line
        token = token_for("alice", "researcher") if path == ("logout",) else alice  # it signs out
        code, out, err = tre_in_process({**base, "TRE_TOKEN": token}, *path, *args)
        if code != 0:
            one_line(code, out, err, ("alice", path))
            assert code in (1, 2), (path, code, err)  # 2: a file argument that does not exist
    assert refused_expired >= 35  # every command that talks to the API
