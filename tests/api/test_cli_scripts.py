"""The CLI for scripts (issue 12, items 1, 2 and 4): `--json` on every listing and show
command, unique prefixes of every kind of id, and one-line errors for what the outside world
does wrong (a broken credentials file, a bad address, a server that answers HTML, resets the
connection or sends the wrong shape, an unwritable folder, Ctrl-C, a closed pipe).

Real `tre` subprocesses against the real API on 127.0.0.1 (no worker: jobs stay queued)."""

from __future__ import annotations

import http.server
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import pytest

from tests.api.test_cli_for_people import one_line_error, tre
from tests.worlds import IMAGE, WorldFactory
from tre.api.app import create_app
from tre.cli.client import CliError
from tre.cli.jobs import NOTHING_SUBMITTED
from tre.cli.resolve import pick_unique
from tre.jobs.paths import log_path
from tre.server import BackgroundServer
from tre.store.db import session_scope
from tre.store.models import EgressRequest, Job


@pytest.fixture
def live(settings, engine, world, token_for, app_client):  # type: ignore[no-untyped-def]
    """The core world behind a real server, plus a finished job of alice's with one output,
    an egress request for it, and tokens of every role."""
    with session_scope(engine) as s:
        WorldFactory(s).users({"dave": ["dac"]})  # the default policy wants two reviewers
        WorldFactory(s).committee("ct1", ["dave"])  # ... from ct1's committee (tre.committees)
        job_id = WorldFactory(s).finished_job(
            settings, "p1", "alice", ["ct1"], {"summary.csv": b"group,n\na,40\nb,52\n"}
        )
    req = app_client.post(
        "/api/v1/egress/requests",
        headers=world.headers["alice"],
        json={"job_id": job_id, "files": ["summary.csv"], "justification": "table 1"},
    )
    assert req.status_code == 201, req.text
    with BackgroundServer(create_app(settings, engine)) as server:
        base = {k: v for k, v in os.environ.items() if k != "TRE_TOKEN"}
        base.update(TRE_HOME=str(settings.home), TRE_API_URL=server.url)
        envs = {
            u: {**base, "TRE_TOKEN": token_for(u, r)}
            for u, r in (
                ("alice", "researcher"),
                ("dana", "dac"),
                ("dave", "dac"),
                ("audrey", "auditor"),
                ("root", "admin"),
            )
        }
        yield envs, job_id, req.json()["id"]


def as_json(env: dict[str, str], *args: str) -> object:
    proc = tre(env, *args)
    assert proc.returncode == 0, (args, proc.stderr)
    assert proc.stderr == "" and "Traceback" not in proc.stdout
    return json.loads(proc.stdout)


def test_every_listing_and_show_command_speaks_json(live) -> None:  # type: ignore[no-untyped-def]
    envs, job_id, req_id = live
    alice, root, audrey = envs["alice"], envs["root"], envs["audrey"]
    assert as_json(alice, "whoami", "--json")["user_id"] == "alice"  # type: ignore[index]
    assert job_id in [j["id"] for j in as_json(alice, "jobs", "--json")]  # type: ignore[union-attr, index]
    assert as_json(alice, "job", "show", job_id, "--json")["id"] == job_id  # type: ignore[index]
    assert as_json(alice, "outputs", job_id, "--json")[0]["path"] == "summary.csv"  # type: ignore[index]
    assert [d["id"] for d in as_json(alice, "dataset", "list", "--json")] == ["ct1"]  # type: ignore[union-attr, index]
    assert [g["dataset_id"] for g in as_json(alice, "grant", "list", "--json")] == ["ct1"]  # type: ignore[union-attr, index]
    assert "p1" in [p["id"] for p in as_json(root, "project", "list", "--json")]  # type: ignore[union-attr, index]
    assert as_json(alice, "project", "show", "p1", "--json")["members"] == ["alice"]  # type: ignore[index]
    assert [i["reference"] for i in as_json(alice, "image", "list", "--json")] == [IMAGE]  # type: ignore[union-attr, index]
    assert [r["id"] for r in as_json(alice, "egress", "list", "--json")] == [req_id]  # type: ignore[union-attr, index]
    shown = as_json(alice, "egress", "show", req_id, "--json")
    assert shown["id"] == req_id and shown["files"][0]["path"] == "summary.csv"  # type: ignore[index]
    quota = as_json(root, "project", "set-quota", "p1", "--max-output-mb", "300", "--json")
    assert quota["max_output_mb"] == 300  # type: ignore[index]
    submitted = as_json(alice, "submit", "-p", "p1", "-d", "ct1", "--image", IMAGE, "--json", "--", "true")
    assert submitted["state"] == "queued"  # type: ignore[index]
    # The audit search: one JSON document per line (JSON lines), none wrapped at 80 columns.
    lines = tre(audrey, "audit", "search", "--json", "--action", "egress.requested").stdout.splitlines()
    assert lines and all(json.loads(line)["action"] == "egress.requested" for line in lines)


def _job_with_id(engine, job_id: str, state: str = "succeeded") -> None:  # type: ignore[no-untyped-def]
    with session_scope(engine) as s:
        s.add(
            Job(
                id=job_id,
                project_id="p1",
                submitted_by="alice",
                image=IMAGE,
                command=["true"],
                state=state,
            )
        )


def test_any_unique_prefix_of_any_id_and_ambiguity_names_the_candidates(live, engine) -> None:  # type: ignore[no-untyped-def]
    envs, job_id, req_id = live
    alice, root = envs["alice"], envs["root"]
    # Egress request ids.
    assert as_json(alice, "egress", "show", req_id[:6], "--json")["id"] == req_id  # type: ignore[index]
    # Job ids where a job id is asked for: job show, egress request.
    assert as_json(alice, "job", "show", job_id[:6], "--json")["id"] == job_id  # type: ignore[index]
    again = as_json(alice, "egress", "request", job_id[:6], "#0", "--why", "table 2", "--json")
    assert again["job_id"] == job_id  # type: ignore[index]
    # Two jobs that share a prefix: refused in one line naming both, whole.
    a, b = "feed" + "0" * 27 + "1", "feed" + "0" * 27 + "2"
    _job_with_id(engine, a)
    _job_with_id(engine, b)
    line = one_line_error(tre(alice, "job", "show", "feed00"), 1, "2 jobs", a, b, "more characters")
    assert line.startswith("error: 'feed00' matches")
    assert as_json(alice, "job", "show", a[:-1] + "1", "--json")["id"] == a  # type: ignore[index]
    # Image digests: sha256:PREFIX and a bare hex prefix name the image a project may run.
    digest_hex = IMAGE.split("sha256:")[1]
    for given in (f"sha256:{digest_hex[:10]}", digest_hex[:10]):
        job = as_json(alice, "submit", "-p", "p1", "-d", "ct1", "--image", given, "--json", "--", "true")
        assert job["image"] == IMAGE  # type: ignore[index]
    out = tre(root, "image", "revoke", f"sha256:{digest_hex[:12]}", "-p", "p2")
    assert out.returncode == 0 and "revoked" in out.stdout, out.stderr
    # Grant ids (admin revokes by prefix).
    grant = as_json(root, "grant", "list", "--json")[0]["id"]  # type: ignore[index]
    revoked = tre(root, "grant", "revoke", grant[:8])
    assert revoked.returncode == 0 and grant in revoked.stdout, revoked.stderr


def test_vote_and_resolve_speak_json(live) -> None:  # type: ignore[no-untyped-def]
    envs, _, req_id = live
    first = as_json(envs["dana"], "egress", "vote", req_id[:8], "approve", "-m", "fine", "--json")
    assert (first["id"], first["votes_in"], first["state"]) == (req_id, 1, "awaiting_review")  # type: ignore[index]
    second = as_json(envs["dave"], "egress", "vote", req_id[:8], "reject", "-m", "no", "--json")
    assert (second["votes_in"], second["state"]) == (2, "conflicted")  # type: ignore[index]
    settled = as_json(envs["root"], "egress", "resolve", req_id[:8], "approve", "-m", "aggregate", "--json")
    assert (settled["id"], settled["state"]) == (req_id, "approved")  # type: ignore[index]
    assert settled["resolution"]["comment"] == "aggregate"  # type: ignore[index]


def test_a_request_prefix_resolves_among_more_than_a_page_of_requests(live, engine) -> None:  # type: ignore[no-untyped-def]
    """The listing answers at most 1,000 requests, newest first; the oldest one must still
    resolve from a prefix, and an ambiguous prefix name its candidates."""
    envs, job_id, req_id = live
    twins = ["beef" + "0" * 27 + "1", "beef" + "0" * 27 + "2"]
    newer = [uuid.uuid4().hex for _ in range(1_100)] + twins
    with session_scope(engine) as s:
        s.add_all(
            EgressRequest(
                id=i,
                job_id=job_id,
                project_id="p1",
                requested_by="alice",
                justification="bulk",
                state="rejected",
            )
            for i in newer
            if not i.startswith(req_id[:8])
        )
    assert as_json(envs["alice"], "egress", "show", req_id[:8], "--json")["id"] == req_id  # type: ignore[index]
    one_line_error(tre(envs["alice"], "egress", "show", "beef00"), 1, "2 egress requests", *twins)


def test_prefix_rules() -> None:
    ids = ["abcd1111" + "0" * 24, "abcd2222" + "0" * 24, "ef01" + "0" * 28]
    assert pick_unique("ef01", ids, "job") == ids[2]
    assert pick_unique("abcd1…", ids, "job") == ids[0]  # an ellipsis copied from a cut cell
    assert pick_unique("abc", ids, "job") == "abc"  # too short: the server answers
    assert pick_unique("9999", ids, "job") == "9999"  # no match: the server answers 404
    with pytest.raises(CliError, match=r"'abcd' matches 2 jobs \(abcd1111.*, abcd2222.*\)"):
        pick_unique("abcd", ids, "job")


def test_disclosure_out_creates_its_folder_and_a_file_in_the_way_is_one_line(live, tmp_path) -> None:  # type: ignore[no-untyped-def]
    envs, _, req_id = live
    # Undecided requests have no disclosure record yet: the server says so, in one line.
    one_line_error(tre(envs["alice"], "egress", "disclosure", req_id, "-o", str(tmp_path / "x.json")), 1)
    blocker = tmp_path / "file"
    blocker.write_text("")
    # An approved one: its folder is made; a regular file where a folder must be is one line.
    for user in ("dana", "dave"):
        voted = tre(envs[user], "egress", "vote", req_id[:8], "approve", "-m", "ok")
        assert voted.returncode == 0, voted.stderr
    assert as_json(envs["alice"], "egress", "show", req_id, "--json")["state"] == "approved"  # type: ignore[index]
    target = tmp_path / "new" / "deeper" / "d.json"
    done = tre(envs["alice"], "egress", "disclosure", req_id[:8], "-o", str(target))
    assert done.returncode == 0, done.stderr
    assert json.loads(target.read_text())["request"]["id"] == req_id
    one_line_error(
        tre(envs["alice"], "egress", "disclosure", req_id, "-o", str(blocker / "d.json")), 1, "cannot write"
    )
    one_line_error(
        tre(envs["alice"], "egress", "download", req_id, "--dest", str(blocker / "dl")), 1, str(blocker)
    )


class _Misbehaving(http.server.BaseHTTPRequestHandler):
    """An address that is not a healthy tre API: a proxy's HTML, a crash, a reset, odd JSON."""

    mode = "html500"

    def do_GET(self) -> None:  # noqa: N802 - the http.server protocol
        if self.mode == "reset":
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        status, ctype, body = {
            "html500": (500, "text/html", b"<html>\n<h1>502 Bad Gateway</h1>\n\x1b[31mnginx</html>"),
            "html200": (200, "text/html", b"<html><form>sign in to the proxy</form></html>"),
            "text500": (500, "text/plain", b"Internal\nServer\nError"),
            "shape": (200, "application/json", b'{"unexpected": true}'),
            "redirect": (302, "text/plain", b""),
        }[self.mode]
        self.send_response(status)
        if status == 302:  # a proxy sending the CLI to its sign-in page
            self.send_header("Location", "https://sso.example/login")
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def misbehaving() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Misbehaving)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.parametrize(
    ("mode", "words"),
    [
        ("html500", ("HTTP 500", "HTML page", "TRE_API_URL")),
        ("html200", ("not JSON", "text/html", "TRE_API_URL")),
        ("text500", ("HTTP 500", "Internal Server Error")),
        ("reset", ("failed",)),
        ("shape", ("unexpected",)),
    ],
)
def test_a_server_that_is_not_a_healthy_api_is_one_line(misbehaving, offline, mode, words) -> None:  # type: ignore[no-untyped-def]
    _Misbehaving.mode = mode
    env = {**offline, "TRE_API_URL": misbehaving, "TRE_TOKEN": "t"}
    line = one_line_error(tre(env, "jobs"), 1, *words)
    assert "\x1b" not in line


JOB = "0123456789abcdef0123456789abcdef"  # whole: sent as given, no listing first


@pytest.mark.parametrize("mode", ["html200", "redirect", "shape"])
@pytest.mark.parametrize(
    "argv",
    [
        ["logs", JOB],
        ["logs", JOB, "-f"],
        ["audit", "export", "bundle.jsonl"],
        ["job", "code", JOB, "-o", "code.tar.gz"],
        ["whoami"],
    ],
    ids=["logs", "logs-f", "audit-export", "job-code", "whoami"],
)
def test_an_answer_the_api_never_gives_is_refused_and_nothing_is_written(  # type: ignore[no-untyped-def]
    misbehaving, offline, tmp_path, mode, argv
) -> None:
    """A proxy's sign-in page (HTML with status 200), a redirect (httpx does not follow one)
    or JSON where a log, a bundle or an archive belongs was taken as the answer: `tre logs`
    printed the page as the job's log and exited 0 (with -f, printed it forever), `tre audit
    export` wrote it as the bundle and said "wrote"; a redirect's empty body crashed the JSON
    commands. Each is one line naming TRE_API_URL, exit 1, and a file already at the target
    stays as it was."""
    _Misbehaving.mode = mode
    env = {**offline, "TRE_API_URL": misbehaving, "TRE_TOKEN": "t"}
    cwd = tmp_path / "work"
    cwd.mkdir()
    kept = cwd / "code.tar.gz"
    kept.write_bytes(b"the archive downloaded yesterday")
    proc = subprocess.run(
        [sys.executable, "-m", "tre.cli.main", *argv],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    if mode == "shape" and argv == ["whoami"]:
        words: tuple[str, ...] = ("unexpected",)  # JSON of another shape: a bug or another version
    elif mode == "redirect":
        words = ("HTTP 302", "redirect to https://sso.example/login", "TRE_API_URL")
    else:
        words = ("TRE_API_URL",)
    one_line_error(proc, 1, *words)
    assert proc.stdout == ""
    assert kept.read_bytes() == b"the archive downloaded yesterday"
    assert sorted(p.name for p in cwd.iterdir()) == ["code.tar.gz"]


@pytest.fixture
def offline(settings) -> dict[str, str]:  # type: ignore[no-untyped-def]
    env = {**os.environ, "TRE_HOME": str(settings.home), "TRE_API_URL": "http://127.0.0.1:9"}
    env.pop("TRE_TOKEN", None)
    return env


def test_more_broken_credentials_and_addresses_are_one_line(offline, settings) -> None:  # type: ignore[no-untyped-def]
    creds = Path(settings.home) / "credentials.json"
    for content in (b"null", b"\xff\xfe\x00garbage", b'"a string"', b'{"api_url": 1}'):
        creds.write_bytes(content)
        one_line_error(tre(offline, "whoami"), 1, "credentials.json", "tre login")
    creds.unlink()
    creds.mkdir()
    one_line_error(tre(offline, "whoami"), 1, "credentials.json")
    creds.rmdir()
    for url in ("http://[::1", "http://127.0.0.1:99999", "http://", "ftp://127.0.0.1", "http://h:port"):
        one_line_error(tre({**offline, "TRE_API_URL": url, "TRE_TOKEN": "t"}, "jobs"), 1, "TRE_API_URL")


class _Started:
    """A `tre` subprocess in its own process group, its stdout and stderr read line by line
    as they come (threads), so a test can wait for a line that says how far it got."""

    def __init__(self, env: dict[str, str], *args: str, python_flags: tuple[str, ...] = ()) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, *python_flags, "-m", "tre.cli.main", *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.lines: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._seen: queue.Queue[tuple[str, str]] = queue.Queue()
        self._readers = [
            threading.Thread(target=self._read, args=(name, getattr(self.proc, name)), daemon=True)
            for name in self.lines
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, name: str, stream: TextIO) -> None:
        for line in stream:
            self.lines[name].append(line)
            self._seen.put((name, line))

    def wait_for(self, name: str, needle: str, timeout: float = 120) -> str:
        """The first line on ``name`` holding ``needle`` (a readiness signal, not a sleep)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, (f"no {needle!r} on {name} in {timeout} s", self.lines)
            try:
                where, line = self._seen.get(timeout=min(left, 1.0))
            except queue.Empty:
                done = self.proc.poll() is not None and not any(r.is_alive() for r in self._readers)
                assert not done, (f"ended without {needle!r} on {name}", self.lines)
                continue
            if where == name and needle in line:
                return line

    def interrupt(self) -> tuple[int, str, str]:
        """Ctrl-C (SIGINT to the process group, as a terminal sends it); status, stdout, stderr."""
        os.killpg(self.proc.pid, signal.SIGINT)
        status = self.proc.wait(timeout=60)
        for reader in self._readers:
            reader.join(timeout=10)
        return status, "".join(self.lines["stdout"]), "".join(self.lines["stderr"])


def _stderr_lines(stderr: str) -> list[str]:
    """stderr without the lines of ``python -X importtime``."""
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith("import time:")]


def test_ctrl_c_while_still_importing_is_one_line_and_130(live, engine) -> None:  # type: ignore[no-untyped-def]
    """Python's own handler raised KeyboardInterrupt inside whatever module was importing:
    a traceback, death by the signal, or (in an extension module) an unrelated error."""
    envs, _, _ = live
    job_id = "cafe" + "0" * 28
    _job_with_id(engine, job_id, state="queued")  # one that `logs -f` would follow for ever
    # -X importtime writes a line as each module is imported: httpx is imported by the
    # commands (`tre.cli.app`), after the entry point took over Ctrl-C, well before the end.
    started = _Started(envs["alice"], "logs", job_id[:8], "-f", python_flags=("-X", "importtime"))
    started.wait_for("stderr", " httpx\n", timeout=60)  # "import time: SELF | CUMULATIVE | httpx"
    status, out, err = started.interrupt()
    assert status == 130, (out, err)
    assert _stderr_lines(err) == ["error: interrupted"], err
    assert "Traceback" not in out + err


def _wait_until_open(pid: int, path: Path, timeout: float = 60) -> None:
    """Until process ``pid`` holds ``path`` open (its own file table: no sleep, no guess)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if os.readlink(fd) == str(path):
                    return
            except OSError:
                continue
        time.sleep(0.005)
    raise AssertionError(f"{path} never opened by {pid}")


def test_ctrl_c_while_following_says_the_job_continues(live, settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    envs, _, _ = live
    alice = envs["alice"]
    # Before the job exists (packing the code folder): Ctrl-C says no job was made (newcomer
    # round 22; it read 'error: interrupted', and whether a job ran on was anyone's guess).
    # Pressed from a thread the moment the packer opens the file, while the rest goes on.
    code = tmp_path / "analysis"
    code.mkdir()
    (code / "weights.bin").write_bytes(os.urandom(8 << 20))
    packing = _Started(alice, "submit", "-p", "p1", "--image", IMAGE, "--code", str(code), "--", "true")
    pressed: list[tuple[int, str, str]] = []

    def press() -> None:
        _wait_until_open(packing.proc.pid, code / "weights.bin")
        pressed.append(packing.interrupt())

    presser = threading.Thread(target=press)
    presser.start()
    queued = as_json(alice, "submit", "-p", "p1", "-d", "ct1", "--image", IMAGE, "--json", "--", "true")
    job_id = queued["id"]  # type: ignore[index]
    # `logs -f` (piped: the log as it comes): once its first line is out, it is following.
    # Two lines: while a job runs, its last line may be held back (the start of an identifier
    # the next line could finish, docs/egress-checks.md), so the first is the one shown.
    log = log_path(settings, job_id)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("step 1 of 3\nstep 2 of 3\n")
    following = _Started(alice, "logs", job_id[:8], "-f")
    following.wait_for("stdout", "")
    # `submit --wait`: the job exists once it says so; from then on Ctrl-C names it.
    waiting = _Started(alice, "submit", "-p", "p1", "--image", IMAGE, "--wait", "--", "true")
    submitted = waiting.wait_for("stdout", "submitted job").split()[2]
    for started, job in ((following, job_id), (waiting, submitted)):
        status, out, err = started.interrupt()
        assert status == 130, (out, err)
        assert "Traceback" not in out + err
        (line,) = _stderr_lines(err)
        assert line.startswith("error: interrupted") and "keeps running" in line, line
        assert line.endswith(f"tre logs {job} -f"), line
    presser.join(timeout=120)
    ((status, out, err),) = pressed
    assert status == 130 and "Traceback" not in out + err, (out, err)
    assert _stderr_lines(err) == [f"error: {NOTHING_SUBMITTED}"], err


def test_a_reader_that_stops_early_is_not_an_error(live) -> None:  # type: ignore[no-untyped-def]
    envs, _, _ = live
    proc = subprocess.Popen(
        [sys.executable, "-m", "tre.cli.main", "jobs", "--json"],
        env=envs["alice"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # like `| head -0`: gone before tre writes
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141
    assert err == "", err
