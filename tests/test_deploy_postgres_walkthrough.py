"""docs/deploy.md's "The database: PostgreSQL", followed as an operator would on a fresh host.

The two statements are run with `psql` as the server's superuser, exactly as the page shows
them, on a real PostgreSQL server of our own (superuser `postgres`, password authentication
over TCP, as a packaged server is set up); then the page's host block: `tre admin init`,
`tre serve --no-worker` and `tre worker` as processes of their own, and the admin's
`tre admin token ... | tre login`. Only the page's example host and port are replaced by the
test server's. Each long-running process must say at start what it is doing (a newcomer
starting `tre worker` in its own shell saw nothing at all), and a wrong password ends as one
line that names the URL without the password.
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.pg_server import find_pg_bin
from tests.ports import free_port

REPO = Path(__file__).resolve().parent.parent
PAGE = REPO / "docs" / "deploy.md"
TRE = str(REPO / ".venv" / "bin" / "tre")


def section_blocks() -> list[list[str]]:
    """The commands of each ``sh`` block of the PostgreSQL section, comments dropped."""
    text = PAGE.read_text()
    section = text.split("## The database: PostgreSQL", 1)[1].split("\n## ", 1)[0]
    blocks = []
    for block in re.findall(r"```sh\n(.*?)```", section, re.S):
        lines = [re.split(r"\s#\s", line, maxsplit=1)[0].strip() for line in block.splitlines()]
        blocks.append([line for line in lines if line])
    return blocks


class Postgres:
    """A packaged-style server: superuser `postgres` over the socket, passwords over TCP."""

    def __init__(self) -> None:
        bindir = find_pg_bin()
        if bindir is None:
            pytest.skip("PostgreSQL server binaries not installed (run scripts/install-system-deps)")
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="tre-pg-deploy-"))
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # initdb refuses root
            entry = pwd.getpwnam("postgres")
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        elif pwd.getpwuid(os.geteuid()).pw_name != "postgres":
            self.as_user = []

    def run(self, *argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.as_user, *argv], capture_output=True, text=True, env=env, cwd="/")

    def start(self) -> None:
        data = str(self.root / "data")
        init = self.run(
            str(self.bindir / "initdb"), "-D", data, "-U", "postgres", "--auth-local=trust",
            "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync",
        )  # fmt: skip
        assert init.returncode == 0, init.stderr
        started = self.run(
            str(self.bindir / "pg_ctl"), "-D", data, "-w", "-l", str(self.root / "log"),
            "-o", f"-p {self.port} -k {self.root} -h 127.0.0.1 -F", "start",
        )  # fmt: skip
        assert started.returncode == 0, started.stderr

    def stop(self) -> None:
        self.run(str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def postgres() -> Iterator[Postgres]:
    server = Postgres()
    server.start()
    yield server
    server.stop()


def test_the_page_has_the_blocks_this_test_follows() -> None:
    superuser, host = section_blocks()
    assert len(superuser) == 1 and superuser[0].startswith("psql -c ")
    assert [line.split()[:2] for line in host] == [
        ["export", "TRE_DATABASE_URL='postgresql+psycopg://tre:change-me@db.example.org:5432/tre'"],
        ["tre", "admin"],
        ["tre", "serve"],
        ["tre", "worker"],
        ["tre", "admin"],
    ]


@pytest.mark.timeout(300)
def test_postgres_deployment_as_the_page_writes_it(postgres: Postgres, tmp_path: Path) -> None:
    (psql,), (export, init, serve, worker, login) = section_blocks()
    # As PostgreSQL's superuser: the page's two statements, word for word.
    created = postgres.run(
        "bash",
        "-c",
        f"{psql}",
        env={"PGHOST": str(postgres.root), "PGPORT": str(postgres.port), "PATH": os.environ["PATH"]},
    )
    assert created.returncode == 0, created.stderr
    assert created.stdout.split() == ["CREATE", "ROLE", "CREATE", "DATABASE"], created.stdout

    url = shlex.split(export.split("=", 1)[1])[0].replace("db.example.org:5432", f"127.0.0.1:{postgres.port}")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRE_")}
    env.update(
        TRE_DATABASE_URL=url,
        TRE_HOME=str(tmp_path / "state"),
        TRE_API_URL=f"http://127.0.0.1:{port}",
        TRE_POLICIES_DIR=str(REPO / "policies"),
        COLUMNS="200",
        PATH=f"{REPO / '.venv' / 'bin'}:{env['PATH']}",
    )

    def sh(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True, timeout=120)

    first = sh(init)
    assert first.returncode == 0 and "created admin user 'admin'" in first.stdout, first.stderr
    assert sh(init).returncode == 0  # "`tre admin init` may be repeated"

    logs = {name: (tmp_path / f"{name}.log").open("w+") for name in ("serve", "worker")}
    procs = [
        subprocess.Popen(
            ["bash", "-c", f"exec {command}"], env=env, stdout=logs[name], stderr=subprocess.STDOUT
        )
        for name, command in (("serve", f"{serve} --port {port}"), ("worker", worker))
    ]
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            assert all(p.poll() is None for p in procs), [(tmp_path / f"{n}.log").read_text() for n in logs]
            time.sleep(0.5)
        while "tre worker:" not in (tmp_path / "worker.log").read_text():
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()
            time.sleep(0.5)
        said = (tmp_path / "worker.log").read_text()
        assert "local executor" in said and "Ctrl-C stops it" in said and "Traceback" not in said, said
        assert "with no worker" in (tmp_path / "serve.log").read_text()

        signed_in = sh(login)
        assert signed_in.returncode == 0 and "as admin (admin)" in signed_in.stdout, signed_in.stderr
        whoami = sh("tre whoami")
        assert whoami.returncode == 0 and "roles=admin" in whoami.stdout, whoami.stderr
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        for log in logs.values():
            log.close()

    # Refused credentials: one line naming the URL without its password.
    env["TRE_DATABASE_URL"] = url.replace("change-me", "wrong-password")
    refused = sh(init)
    assert refused.returncode == 1 and refused.stdout == "", refused.stdout
    assert len(refused.stderr.strip().splitlines()) == 1 and "wrong-password" not in refused.stderr, (
        refused.stderr
    )
    assert "password authentication failed" in refused.stderr and "tre:***@" in refused.stderr, refused.stderr
