"""A new researcher follows the README's researcher block, line by line, and nothing else.

The lines are read from README.md (the ``bash`` block holding ``tre submit``) and run in
order as real ``tre`` processes against ``tre serve`` (API and worker in their own process,
real bubblewrap sandbox): ``<ref>``, ``JOB`` and ``REQ`` are replaced by what an earlier
command printed, exactly as printed, once read from a pipe and once from a pseudo-terminal
of 80 columns (rich draws tables, spinners and progress bars there). A DAC member's approval
comes through the API, as the panel sends it. Every command must succeed with nothing on
stderr, and no traceback anywhere.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import shlex
import struct
import subprocess
import sys
import termios
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.ports import free_port as _free_port
from tests.worlds import IMAGE, WorldFactory
from tre.store.db import session_scope

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not os.path.exists("/usr/bin/bwrap"), reason="bubblewrap not installed")

ANALYSIS = """\
import csv, os
names = sorted(os.listdir("/data"))
rows = [{"file": f, "kib": os.path.getsize(os.path.join("/data", f)) // 1024} for f in names]
with open("/output/summary.csv", "w", newline="") as fh:
    w = csv.DictWriter(fh, fieldnames=["file", "kib"])
    w.writeheader()
    w.writerows(rows)
print("wrote summary.csv with", len(rows), "rows")
"""
# The README's later job: it reads the first job's outputs where TRE_INPUTS says they are.
TRAIN = """\
import os
for root in os.environ["TRE_INPUTS"].split(":"):
    rows = open(os.path.join(root, "summary.csv")).read().splitlines()
    print("trained on", root, "with", len(rows) - 1, "rows")
"""
# CSI and OSC sequences, and the carriage returns a spinner redraws its line with.
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][A-Za-z0-9]|\r")
HEX32 = r"[0-9a-f]{32}"


def researcher_lines() -> list[list[str]]:
    """The README's researcher block: each command line as argv (comments dropped)."""
    text = (REPO / "README.md").read_text()
    block = next(b for b in re.findall(r"```bash\n(.*?)```", text, re.S) if "\ntre submit " in "\n" + b)
    lines = []
    for line in block.splitlines():
        argv = shlex.split(line, comments=True)
        if argv:
            assert argv[0] == "tre", line
            lines.append(argv[1:])
    return lines


@dataclass
class Ran:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    def ok(self) -> Ran:
        """Succeeded, said nothing on stderr, and no traceback anywhere."""
        everything = self.stdout + self.stderr
        assert "Traceback" not in everything, everything
        assert self.returncode == 0, (self.argv, everything)
        assert self.stderr.strip() == "", (self.argv, self.stderr)
        return self


class Researcher:
    """A newcomer's shell: fresh state folder, only TRE_API_URL set (the README's table)."""

    def __init__(self, api_url: str, home: Path, work: Path) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TRE_") and k != "COLUMNS"}
        self.env.update(TRE_API_URL=api_url, TRE_HOME=str(home / ".tre"), HOME=str(home), TERM="xterm")
        self.work = work

    def piped(self, argv: list[str], stdin: str | None = None, cwd: Path | None = None) -> Ran:
        proc = subprocess.run(
            [sys.executable, "-m", "tre.cli.main", *argv],
            env=self.env,
            cwd=cwd or self.work,
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=300,
        )
        return Ran(argv, proc.returncode, proc.stdout, proc.stderr)

    def on_pty(self, argv: list[str], answer: str | None = None, cwd: Path | None = None) -> Ran:
        """Run with stdin and stdout on an 80x24 pseudo-terminal (stderr kept apart); type
        ``answer`` at the first prompt."""
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        proc = subprocess.Popen(
            [sys.executable, "-m", "tre.cli.main", *argv],
            env=self.env,
            cwd=cwd or self.work,
            stdin=slave,
            stdout=slave,
            stderr=subprocess.PIPE,
            preexec_fn=_own_terminal,
        )
        os.close(slave)
        err: list[bytes] = []
        reader = threading.Thread(target=lambda: err.append(proc.stderr.read() if proc.stderr else b""))
        reader.start()
        out = b""
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
            # click writes "Token:", then getpass turns echo off (discarding typed-ahead
            # input) and writes the " " after it: type only then, as a person would.
            if answer is not None and out.endswith(b": "):
                time.sleep(0.2)
                os.write(master, answer.encode() + b"\n")
                answer = None
        os.close(master)
        if proc.poll() is None and time.monotonic() >= deadline:
            proc.kill()
        code = proc.wait(timeout=30)
        reader.join(timeout=30)
        text = ANSI.sub("", out.decode("utf-8", "replace"))
        return Ran(argv, code, text, b"".join(err).decode("utf-8", "replace"))

    def both(self, argv: list[str]) -> tuple[Ran, Ran]:
        """The same read-only command piped and on the terminal."""
        return self.piped(argv).ok(), self.on_pty(argv).ok()


def _own_terminal() -> None:
    """In the child: a session of its own whose controlling terminal is the pty on stdin, so
    that /dev/tty (where a hidden prompt reads) is that terminal, as in a user's shell."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


@pytest.fixture
def server(settings, engine, dicom_dir):  # type: ignore[no-untyped-def]
    """What the admin block of the README sets up, then `tre serve` in its own process."""
    with session_scope(engine) as s:
        make = WorldFactory(s, actor="root")
        make.users({"alice": ["researcher"], "dana": ["dac"], "dave": ["dac"], "root": ["admin"]})
        make.project("lung", "Lung", members=["alice"])
        make.dataset("lidc", dicom_dir, name="LIDC sample")
        make.grant("lung", "lidc", days=90)
        make.approve_image("lung")
    port = _free_port()
    env = {
        **os.environ,
        "TRE_HOME": str(settings.home),
        "TRE_POLICIES_DIR": str(settings.resolved_policies_dir),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "tre.cli.main", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{url}/openapi.json", timeout=2)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline and proc.poll() is None, "tre serve did not start"
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        _, server_err = proc.communicate(timeout=30)
    assert "Traceback" not in server_err, server_err[-4000:]


@pytest.mark.timeout(1200)
def test_a_new_researcher_follows_the_readme(server, settings, token_for, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lines = researcher_lines()
    verbs = [" ".join(a[:2]) for a in lines]
    assert verbs == [
        "login",
        "whoami",
        "dataset list",
        "grant list",
        "image list",
        "submit -p",
        "jobs --state",
        "logs JOB",
        "outputs JOB",
        "egress request",
        "egress show",
        "egress download",
        "preprocess -p",
        "preprocess -p",
        "submit -p",
        "catalogue count",
        "logout",
    ], verbs
    work = tmp_path / "analysis"
    work.mkdir()
    (work / "analysis.py").write_text(ANALYSIS)
    (work / "train.py").write_text(TRAIN)
    me = Researcher(server, tmp_path / "alice", work)
    seen: dict[str, str] = {}

    def filled(argv: list[str]) -> list[str]:
        return [seen.get(a, a) for a in argv]

    for argv in lines:
        verb = " ".join(argv[:2])
        if verb == "login":  # the token typed at the hidden prompt of a terminal
            saved_token = token_for("alice", "researcher")
            done = me.on_pty(argv, answer=saved_token).ok()
            assert "logged in" in done.stdout and "alice" in done.stdout
            assert saved_token[:20] not in done.stdout
        elif verb == "image list":
            piped, shown = me.both(argv)
            seen["<ref>"] = piped.stdout.splitlines()[0].strip()
            assert seen["<ref>"] == IMAGE and seen["<ref>"] in shown.stdout
        elif verb == "submit -p" and "--input-job" in argv:
            done = me.on_pty(filled(argv)).ok()
            assert f"trained on /inputs/{seen['JOB']} with 2 rows" in done.stdout, done.stdout
            assert "succeeded" in done.stdout
            later = re.search(rf"submitted job ({HEX32})", done.stdout)
            assert later, done.stdout
            shown = me.piped(["job", "show", later.group(1), "--json"]).ok()
            assert json.loads(shown.stdout)["input_job_ids"] == [seen["JOB"]]
            assert json.loads(shown.stdout)["lineage_dataset_ids"] == ["lidc"]
        elif verb == "submit -p":
            done = me.on_pty(filled(argv)).ok()
            job = re.search(rf"submitted job ({HEX32})", done.stdout)
            assert job, done.stdout
            seen["JOB"] = job.group(1)
            assert "wrote summary.csv with 2 rows" in done.stdout and "succeeded" in done.stdout
            # The id as `tre jobs` prints it, piped (whole, first column) and on the terminal.
            listed, table = me.both(["jobs"])
            assert listed.stdout.splitlines()[1].split("\t")[0] == seen["JOB"]
            assert seen["JOB"] in table.stdout  # on one line of an 80-column table, not folded
        elif verb == "logs JOB":
            for ran in me.both(filled(argv)):
                assert "wrote summary.csv with 2 rows" in ran.stdout and "succeeded" in ran.stdout
            prefix = me.piped([argv[0], seen["JOB"][:7], *argv[2:]]).ok()
            assert "wrote summary.csv" in prefix.stdout
        elif verb == "outputs JOB":
            piped, shown = me.both(filled(argv))
            assert "summary.csv" in piped.stdout and "summary.csv" in shown.stdout
        elif verb == "egress request":
            done = me.piped(filled(argv)).ok()
            req = re.search(rf"Request ({HEX32})", done.stdout)
            assert req, done.stdout
            seen["REQ"] = req.group(1)
            assert "blocked" not in done.stdout, done.stdout
        elif verb == "egress show":
            piped, shown = me.both(filled(argv))
            assert "summary.csv" in piped.stdout and "awaiting_review" in shown.stdout
            # The committee decides (in the panel; here its API calls, as two DAC members).
            for member in ("dana", "dave"):
                vote = httpx.post(
                    f"{server}/api/v1/egress/requests/{seen['REQ']}/votes",
                    headers={"Authorization": f"Bearer {token_for(member, 'dac')}"},
                    json={"vote": "approve", "comment": "aggregate, fine"},
                    timeout=60,
                )
                assert vote.status_code == 201, vote.text
            state = json.loads(me.piped([*filled(argv), "--json"]).ok().stdout)["state"]
            assert state == "approved"
        elif verb == "egress download":
            release = tmp_path / "release"
            release.mkdir()
            done = me.on_pty(filled(argv), cwd=release).ok()
            assert "hashes verified" in done.stdout
            produced = settings.jobs_dir / seen["JOB"] / "output" / "summary.csv"
            assert (release / "summary.csv").read_bytes() == produced.read_bytes()
            record = json.loads((release / f"disclosure-{seen['REQ']}.json").read_text())
            assert record["request"]["id"] == seen["REQ"] and record["outcome"] == "approved"
            again = me.piped(filled(argv), cwd=release)  # nothing is overwritten silently
            assert again.returncode == 1 and "--force" in again.stderr and "Traceback" not in again.stderr
        elif verb == "preprocess -p":
            # Needs the platform's CPU job image (built by `tre admin build-image`, minutes);
            # tests/kernels/test_cli_preprocess.py runs this line's options. Here: it is well formed.
            helped = me.piped([argv[0], "--help"]).ok()
            options = [a for a in argv if a.startswith("-")]
            assert options and all(opt in helped.stdout for opt in options), (options, helped.stdout)
        elif verb == "logout":  # last: the saved token is signed out and forgotten
            bearer = {"Authorization": f"Bearer {saved_token}"}
            assert httpx.get(f"{server}/api/v1/me", headers=bearer, timeout=60).status_code == 200
            me.piped(argv).ok()
            refused = httpx.get(f"{server}/api/v1/me", headers=bearer, timeout=60)
            assert refused.status_code == 401 and refused.json()["type"].endswith("token-revoked"), (
                refused.text
            )
            after = me.piped(["whoami"])
            assert after.returncode != 0 and len(after.stderr.strip().splitlines()) == 1, after
            assert "Traceback" not in after.stdout + after.stderr
        else:  # whoami, dataset list, grant list, jobs --state running: read-only
            piped, shown = me.both(filled(argv))
            if verb == "dataset list":
                assert "lidc" in piped.stdout and "lidc" in shown.stdout
            if verb == "grant list":
                assert "\tlung\tlidc\t" in piped.stdout and "lung" in shown.stdout
                # Round 21: the expiry says it is UTC (a bare 2027-03-02T10:30:55 before).
                assert re.search(r"\tlidc\t\d{4}-\d\d-\d\d \d\d:\d\d UTC\t", piped.stdout), piped.stdout
            if verb == "whoami":
                assert "alice" in piped.stdout and "lung" in piped.stdout
            if verb == "catalogue count":  # lidc's few CT subjects are under the policy's threshold
                assert "lidc" in piped.stdout and "suppressed" in piped.stdout
    assert set(seen) == {"<ref>", "JOB", "REQ"}
