"""The CLI for people and scripts (issue 12): help, exit statuses, one-line errors, ids usable
as printed, JSON, token from stdin. A real `tre` subprocess against a live API (no worker:
nothing here runs a job)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.worlds import job_body
from tre.api.app import create_app
from tre.server import BackgroundServer


def tre(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tre.cli.main", *args],
        env=env,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_line_error(proc: subprocess.CompletedProcess[str], status: int, *words: str) -> str:
    assert proc.returncode == status, (proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def offline(settings) -> dict[str, str]:  # type: ignore[no-untyped-def]
    env = {**os.environ, "TRE_HOME": str(settings.home), "TRE_API_URL": "http://127.0.0.1:9"}
    env.pop("TRE_TOKEN", None)
    return env


@pytest.fixture
def live(settings, engine, world, token_for):  # type: ignore[no-untyped-def]
    with BackgroundServer(create_app(settings, engine)) as server:
        env = {**os.environ, "TRE_HOME": str(settings.home), "TRE_API_URL": server.url}
        env.pop("TRE_TOKEN", None)
        yield env, token_for("alice", "researcher")


def test_bare_tre_prints_help_and_succeeds(offline) -> None:  # type: ignore[no-untyped-def]
    proc = tre(offline)
    assert proc.returncode == 0, proc.stderr
    assert "Usage" in proc.stdout and "error" not in proc.stderr
    helped = tre({**offline, "COLUMNS": "120"}, "-h")
    assert helped.returncode == 0
    # Grouped by who uses them (item 8).
    for panel in ("Researchers", "Airlock", "Auditors", "Admins"):
        assert panel in helped.stdout, helped.stdout
    version = tre(offline, "--version")
    assert version.returncode == 0 and version.stdout.startswith("tre ")


def test_usage_mistakes_exit_2_errors_exit_1(offline) -> None:  # type: ignore[no-untyped-def]
    one_line_error(tre(offline, "jobs", "--bogus"), 2, "--bogus")
    one_line_error(tre(offline, "jobs", "--state", "sleeping"), 2, "sleeping")
    one_line_error(tre(offline, "jobs"), 1, "not logged in")


def test_corrupt_credentials_and_bad_api_url_are_one_line(offline, settings) -> None:  # type: ignore[no-untyped-def]
    creds = Path(settings.home) / "credentials.json"
    for content in ("{not json", "[1, 2]", '{"token": 5}'):
        creds.write_text(content)
        one_line_error(tre(offline, "jobs"), 1, "credentials.json", "tre login")
    creds.unlink()
    env = {**offline, "TRE_API_URL": "127.0.0.1:8765", "TRE_TOKEN": "x"}
    one_line_error(tre(env, "jobs"), 1, "TRE_API_URL")
    env["TRE_API_URL"] = "http://127.0.0.1:9"
    one_line_error(tre(env, "jobs"), 1, "cannot reach", "TRE_API_URL")


def test_login_reads_the_token_from_stdin_not_argv(live) -> None:  # type: ignore[no-untyped-def]
    env, token = live
    proc = tre(env, "login", stdin=token + "\n")
    assert proc.returncode == 0, proc.stderr
    assert "alice" in proc.stdout and token not in proc.stdout + proc.stderr
    assert tre(env, "whoami").returncode == 0
    warned = tre(env, "login", "--token", token)
    assert warned.returncode == 0 and "shell history" in warned.stderr
    # One line on stderr, piped too (rich folded it at 80 columns).
    assert len(warned.stderr.splitlines()) == 1 and "paste it at the prompt" in warned.stderr, warned.stderr
    one_line_error(tre(env, "login", stdin="not-a-jwt\n"), 1, "tre login")


def test_ids_print_whole_and_any_unique_prefix_works(live, app_client, world) -> None:  # type: ignore[no-untyped-def]
    env, token = live
    env = {**env, "TRE_TOKEN": token}
    ids = [
        app_client.post("/api/v1/jobs", headers=world.headers["alice"], json=job_body()).json()["id"]
        for _ in range(3)
    ]
    listed = tre(env, "jobs")  # piped: tab-separated, nothing cut
    assert listed.returncode == 0, listed.stderr
    printed = [line.split("\t")[0] for line in listed.stdout.splitlines()[1:]]
    assert sorted(printed) == sorted(ids)
    as_json = json.loads(tre(env, "jobs", "--json").stdout)
    assert sorted(j["id"] for j in as_json) == sorted(ids)
    paged = [
        j["id"]
        for p in (1, 2, 3)
        for j in json.loads(tre(env, "jobs", "--json", "--limit", "1", "--page", str(p)).stdout)
    ]
    assert sorted(paged) == sorted(ids)
    # The shortest prefix that is unique among the three (ids are random hex).
    target = ids[0]
    n = next(k for k in range(4, 33) if sum(i.startswith(target[:k]) for i in ids) == 1)
    outputs = tre(env, "outputs", target[:n], "--json")
    assert outputs.returncode == 0, outputs.stderr
    assert json.loads(outputs.stdout) == []
    cancelled = tre(env, "cancel", target[:n])
    assert cancelled.returncode == 0 and target in cancelled.stdout


PASTES = ("Bearer {t}", "Authorization: Bearer {t}", '"{t}"', "'{t}'", ' "Bearer {t}" ', "bearer '{t}'")


def test_a_token_pasted_with_its_wrapping_signs_in(live) -> None:  # type: ignore[no-untyped-def]
    """Round 20 (newcomer): a token copied from a curl line (`Bearer eyJ...`) or a quoted
    string was refused as "malformed token: Invalid header padding", and the CLI then said to
    get a new token, though it was fine. The wrapping is taken off; a token that is not one is
    still refused, saying what a token looks like."""
    env, token = live
    for paste in PASTES:
        proc = tre(env, "login", stdin=paste.format(t=token) + "\n")
        assert proc.returncode == 0 and "alice" in proc.stdout, (paste, proc.stderr)
    line = one_line_error(tre(env, "login", stdin="Bearer not-a-jwt\n"), 1, "malformed token")
    assert "copied whole" in line


def test_the_panel_takes_a_token_pasted_with_its_wrapping(settings, engine, world, token_for) -> None:  # type: ignore[no-untyped-def]
    """The same pastes on the panel's sign-in page (egress_review.panel), for a DAC member."""
    import re

    from fastapi.testclient import TestClient

    from tre.api.app import create_app

    app = create_app(settings, engine)
    token = token_for("dana", "dac")
    for paste in PASTES:
        with TestClient(app) as c:
            page = c.get("/panel/login")
            csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
            assert csrf is not None
            r = c.post(
                "/panel/login",
                data={"token": paste.format(t=token), "csrf": csrf.group(1)},
                follow_redirects=False,
            )
            assert r.status_code == 303 and r.headers["location"] == "/panel/", (paste, r.text[:300])
