"""A command called in a way it cannot act on is a usage mistake: one line naming the
command's `--help`, exit 2, as README.md ("2 for usage mistakes") and docs/api.md promise.

Options that need each other or a command given nothing to do were raised as failures
(exit 1, no hint), unlike a misspelt option; a script could not tell "you called me wrong"
from "the server refused". Each is run as its own process, as a user types it, with no
server and no login: a usage mistake is found before anything is asked of the API.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The caller's environment without its TRE_ settings, on a state of the test's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRE_")}
    env.update(TRE_HOME=str(tmp_path / "state"), **extra)
    return env


def _tre(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    """One `tre` command as a user types it: its own process, no terminal, nothing on stdin."""
    return subprocess.run(
        [sys.executable, "-m", "tre.cli.main", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


CASES = [
    (["image", "list", "--usable"], "--usable needs --project/-p", "image list --help"),
    (
        ["admin", "user", "alice", "--enable", "--disable"],
        "choose one of --enable and --disable",
        "admin user --help",
    ),
    (["admin", "user", "alice"], "say what to do", "admin user --help"),
    (["project", "set-quota", "lung"], "give at least one quota field", "project set-quota --help"),
    (["job", "code", "abc123"], "-o FILE to download it, --list", "job code --help"),
]


@pytest.mark.parametrize(("argv", "says", "hint"), CASES, ids=[" ".join(c[0][:2]) for c in CASES])
def test_a_usage_mistake_is_one_line_and_exit_2(
    tmp_path: Path, argv: list[str], says: str, hint: str
) -> None:
    proc = _tre(_env(tmp_path, TRE_API_URL="http://127.0.0.1:9", TRE_TOKEN="x.y.z"), *argv)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert says in lines[0] and "(see: " in lines[0] and lines[0].endswith(f" {hint})"), lines[0]
    assert "Invalid value" not in lines[0]  # a plain sentence, not a value's complaint


@pytest.mark.parametrize(
    "argv",
    [
        ["serve", "--port", "99999"],
        ["hub", "serve", "--port", "0"],
        ["witness", "serve", "--log", "k", "--port", "70000"],
    ],
)
def test_a_port_out_of_range_is_a_usage_mistake(tmp_path: Path, argv: list[str]) -> None:
    """`tre serve --port 99999` reached bind() and ended 'unexpected OverflowError ... a bug in tre'."""
    proc = _tre(_env(tmp_path), *argv)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and "'--port'" in proc.stderr and "bug" not in proc.stderr


@pytest.mark.parametrize("argv", [["admin", "doctor"], ["--help"], ["submit", "--help"]])
def test_a_reader_that_stops_early_is_141_for_rich_output_too(tmp_path: Path, argv: list[str]) -> None:
    """`tre admin doctor | head -1` and `tre --help | head -1` (anything printed through a
    rich console, typer's help included) ended with exit 1 and nothing said: rich's own
    broken-pipe handler exits 1, so a script could not tell it from a failed check. The README
    promises 141, as `tre jobs | head -1` already had."""
    env = _env(tmp_path)
    cli = [sys.executable, "-m", "tre.cli.main"]
    assert _tre(env, "admin", "init").returncode == 0
    proc = subprocess.Popen(
        [*cli, *argv], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # like `| head -0`: gone before tre writes
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141, err
    assert err == "", err


@pytest.mark.parametrize(
    ("role", "says"), [("reseacher", "(did you mean 'researcher'?)"), ("Admin", "'admin'?")]
)
def test_a_misspelt_role_is_named_with_the_closest(tmp_path: Path, role: str, says: str) -> None:
    """`tre admin user alice --role reseacher` said "unknown role(s) ['reseacher']" (a Python list)."""
    proc = _tre(_env(tmp_path), "admin", "user", "alice", "--role", role)
    assert proc.returncode == 1 and proc.stdout == "", (proc.stdout, proc.stderr)
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"error: unknown role '{role}' ") and says in line and "[" not in line, line
    assert line.endswith("roles are researcher, dac, auditor, admin"), line


def test_a_token_for_a_role_not_held_says_how_to_give_it(tmp_path: Path) -> None:
    """`tre admin token --user alice --role dac` said "does not hold role(s) ['dac']", and
    `--role reseacher` the same, as if it were a role alice merely lacked."""
    env = _env(tmp_path)
    assert _tre(env, "admin", "user", "alice", "--role", "researcher").returncode == 0
    said = {}
    for role in ("dac", "reseacher"):
        proc = _tre(env, "admin", "token", "--user", "alice", "--role", role)
        assert proc.returncode == 1 and proc.stdout == "", (proc.stdout, proc.stderr)
        (said[role],) = proc.stderr.splitlines()
    assert said["dac"] == (
        "error: user 'alice' does not hold the role dac (roles: researcher); "
        "to give it, keeping the others: tre admin user alice --role dac --role researcher"
    ), said
    assert said["reseacher"].startswith("error: unknown role 'reseacher' (did you mean 'researcher'?)"), said


def test_a_token_under_an_openid_provider_is_refused_saying_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With TRE_AUTH_MODE=oidc the API takes only the provider's tokens: `tre admin token`
    printed one anyway, and `tre login` then refused it as "token algorithm 'EdDSA' is not
    accepted" (newcomer round 23). In process: the refusal comes before the database."""
    from typer.testing import CliRunner

    from tre.cli.app import app
    from tre.config import reset_settings_cache

    for name, value in _env(tmp_path).items():
        if name.startswith("TRE_"):
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("TRE_AUTH_MODE", "oidc")
    monkeypatch.setenv("TRE_OIDC_ISSUER", "https://id.example.org/realms/tre")
    reset_settings_cache()
    try:
        got = CliRunner().invoke(app, ["admin", "token", "--user", "alice", "--role", "researcher"])
    finally:
        monkeypatch.undo()
        reset_settings_cache()
    assert got.exit_code == 1 and got.stdout == "", got.output
    said = " ".join(str(got.exception).split())
    assert said.startswith(
        "TRE_AUTH_MODE=oidc: the API takes tokens from https://id.example.org/realms/tre only"
    )
    assert "tre login --oidc" in said, said


def test_a_token_before_init_names_the_state_directory_and_init(tmp_path: Path) -> None:
    """`tre admin token --user admin --role admin` on a state with no users (before `tre admin
    init`, or init run as root and the token asked for as another user, whose state is
    ~/.tre) said "create it first (tre admin user admin --role ...)": a newcomer made a second
    admin in the wrong place instead of finding the state the first one is in."""
    proc = _tre(_env(tmp_path), "admin", "token", "--user", "admin", "--role", "admin")
    assert proc.returncode == 1 and proc.stdout == "", (proc.stdout, proc.stderr)
    (line,) = proc.stderr.splitlines()
    assert line == (
        f"error: no user 'admin': the state directory {tmp_path / 'state'} has no users yet; "
        "run `tre admin init --user admin` first, or set TRE_HOME to the one it made"
    ), line


def test_admin_init_again_with_another_name_makes_no_second_admin(tmp_path: Path) -> None:
    """`tre admin init` is repeated to migrate a state (docs/deploy.md); run with another
    `--user` (or its default `admin` on a state whose admin is `root`) it created a second admin
    account, audited only as `bootstrap`. Failed before: 'created admin user 'ops''."""
    env = _env(tmp_path)
    assert _tre(env, "admin", "init", "--user", "root").returncode == 0
    again = _tre(env, "admin", "init", "--user", "ops")
    assert again.returncode == 0, again.stderr
    assert "no user created: this state already has its admin ('root')" in again.stdout
    assert "tre admin user ops --role admin" in again.stdout
    assert "--user root --role admin | tre login" in again.stdout  # the next step names root
    token = _tre(env, "admin", "token", "--user", "ops", "--role", "admin")
    assert token.returncode == 1 and "ops" in token.stderr  # no such user
    same = _tre(env, "admin", "init", "--user", "root")
    assert same.returncode == 0 and "user 'root' already exists" in same.stdout
