"""The CLI as a user runs it (a subprocess against a live API): the researcher flow, and
errors that are one line on stderr with a non-zero exit and no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from tests.ports import free_port
from tests.worlds import IMAGE
from tre.api.app import create_app
from tre.jobs.worker import Worker
from tre.server import BackgroundServer


def _tre(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tre.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def _one_line_error(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    for w in words:
        assert w in lines[0], lines[0]


@pytest.fixture
def live(settings, engine, world, token_for):  # type: ignore[no-untyped-def]
    app = create_app(settings, engine)
    worker = Worker(settings, engine)
    t = threading.Thread(target=worker.serve_forever, daemon=True)
    t.start()
    with BackgroundServer(app) as server:
        env = {
            **os.environ,
            "TRE_HOME": str(settings.home),
            "TRE_API_URL": server.url,
            "TRE_TOKEN": token_for("alice", "researcher"),
            "COLUMNS": "200",
        }
        yield env
    worker.stop()
    t.join(timeout=10)


@pytest.mark.skipif(not os.path.exists("/usr/bin/bwrap"), reason="bubblewrap not installed")
def test_researcher_flow(live):
    proc = _tre(live, "whoami")
    assert proc.returncode == 0 and "alice" in proc.stdout and "p1" in proc.stdout
    proc = _tre(
        live,
        "submit",
        "-p",
        "p1",
        "-d",
        "ct1",
        "--image",
        IMAGE,
        "--wait",
        "--",
        "python3",
        "-c",
        "import os; print('files:', sorted(os.listdir('/data'))); "
        "open('/output/n.txt','w').write(str(len(os.listdir('/data'))))",
    )
    assert proc.returncode == 0, proc.stderr
    assert "files: ['CT_small.dcm', 'MR_small.dcm']" in proc.stdout and "succeeded" in proc.stdout
    job_id = proc.stdout.split("submitted job ")[1].split()[0]
    out = _tre(live, "outputs", job_id)
    assert out.returncode == 0 and "n.txt" in out.stdout
    assert job_id in _tre(live, "jobs").stdout
    assert "files:" in _tre(live, "logs", job_id).stdout


def test_admission_denial_is_one_line(live):
    proc = _tre(live, "submit", "-p", "p1", "-d", "ct1", "--image", "docker.io/evil:latest", "--", "true")
    _one_line_error(proc, "Job not admitted", "allowlist")


def test_unknown_job_is_one_line(live):
    _one_line_error(_tre(live, "logs", "doesnotexist"), "no job 'doesnotexist'")


def test_not_logged_in_is_one_line(settings):
    env = {**os.environ, "TRE_HOME": str(settings.home)}
    env.pop("TRE_TOKEN", None)
    _one_line_error(_tre(env, "jobs"), "not logged in")


def test_unreachable_api_is_one_line(settings):
    env = {
        **os.environ,
        "TRE_HOME": str(settings.home),
        "TRE_TOKEN": "x",
        "TRE_API_URL": "http://127.0.0.1:9",
    }
    _one_line_error(_tre(env, "jobs"), "cannot reach the tre API")


def test_bad_token_is_one_line(live):
    _one_line_error(_tre({**live, "TRE_TOKEN": "not-a-jwt"}, "whoami"), "Unauthorized")


@pytest.mark.skipif(not os.path.exists("/usr/bin/bwrap"), reason="bubblewrap not installed")
def test_tre_serve_runs_api_and_worker(settings, world, token_for):
    """`tre serve` as started by hand: the API answers and its in-process worker runs jobs."""
    import time

    import httpx

    port = free_port()
    env = {
        **os.environ,
        "TRE_HOME": str(settings.home),
        "TRE_POLICIES_DIR": str(settings.resolved_policies_dir),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "tre.cli.main", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/openapi.json", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline and proc.poll() is None, "tre serve did not start"
                time.sleep(0.2)
        cli_env = {**env, "TRE_API_URL": base, "TRE_TOKEN": token_for("alice", "researcher")}
        done = _tre(
            cli_env, "submit", "-p", "p1", "--image", IMAGE, "--wait", "--", "python3", "-c", "print(6*7)"
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "42" in done.stdout and "succeeded" in done.stdout
    finally:
        proc.terminate()
        proc.wait(timeout=15)


@pytest.mark.parametrize(
    ("name", "options"),
    [("serve", []), ("hub serve", []), ("witness serve", ["--name", "w.example", "--log", "x"])],
)
def test_a_server_on_a_taken_port_is_one_line(settings, tmp_path, name, options):  # type: ignore[no-untyped-def]
    """A second `tre serve` (or a demo's server already on the port): one line naming the
    address and what to do, exit 1, before a worker or anything else has started."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "TRE_HOME": str(settings.home), "HOME": str(tmp_path)}
        proc = _tre(env, *name.split(), *options, "--port", str(port), timeout=60)
    _one_line_error(proc, f"cannot listen on 127.0.0.1:{port}", "already in use", f"`tre {name}`", "--port")


def test_an_address_not_on_this_host_is_one_line(settings, tmp_path):  # type: ignore[no-untyped-def]
    """`tre serve --host` with an address this machine does not have (TEST-NET-1, RFC 5737)."""
    env = {**os.environ, "TRE_HOME": str(settings.home), "HOME": str(tmp_path)}
    proc = _tre(env, "serve", "--host", "192.0.2.1", "--port", "8765", timeout=60)
    _one_line_error(proc, "cannot listen on 192.0.2.1:8765", "Cannot assign requested address")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["submit", "-p", "p1", "--image", "x", "--cpu", "lots", "--", "true"], "Invalid value for '--cpu'"),
        (["logs"], "Missing argument"),
        (["no-such-command"], "No such command"),
        (["egress", "vote", "abc", "maybe"], "'maybe' is neither approve nor reject"),
        (["submit", "-p", "p1", "--image", "x"], "Missing argument '-- COMMAND'"),  # says where it goes
        (["egress", "resolve", "abc", "ok", "-m", "why"], "'ok' is neither approve nor reject"),
    ],
)
def test_usage_mistakes_are_one_line(settings, args, words):
    proc = _tre({**os.environ, "TRE_HOME": str(settings.home)}, *args)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in proc.stderr


def test_api_commands_start_without_the_store_libraries() -> None:
    """Every `tre` call pays its imports first; the store (SQLAlchemy, Alembic) and the DICOM
    reader (pydicom, through the registry) are for the local admin commands, which import
    them themselves. A module-level import of them in any CLI module fails here."""
    heavy = ("sqlalchemy", "alembic", "pydicom")
    probe = f"import sys, tre.cli.app; print(','.join(m for m in {heavy!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "", loaded.stdout
