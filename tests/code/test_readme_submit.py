"""The README's submit line, run literally from a folder holding `analysis.py`, against a live
API and worker with a real bubblewrap sandbox; then the code is read back through the CLI by
the researcher and a DAC member, and a hostile folder is refused before anything is sent."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shlex
import subprocess
import sys
import tarfile
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.worlds import IMAGE, WorldFactory
from tre import registry
from tre.api.app import create_app
from tre.code.archive import CodeLimits, pack_folder
from tre.jobs.worker import Worker
from tre.server import BackgroundServer
from tre.store.base import utcnow
from tre.store.db import session_scope
from tre.store.models import AuditEntry

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not os.path.exists("/usr/bin/bwrap"), reason="bubblewrap not installed")

ANALYSIS = """\
import errno, os
files = sorted(os.listdir('/data'))
print('cwd', os.getcwd())
try:
    open('probe.txt', 'w')
except OSError as exc:
    print('writing to /code:', errno.errorcode[exc.errno])
with open('/output/summary.csv', 'w') as fh:
    fh.write('n_files\\n%d\\n' % len(files))
print('counted', len(files), 'files')
"""


def readme_submit_line() -> str:
    # The README's other submit line (`--input-job`, a later job reading this one's outputs)
    # is run by tests/api/test_readme_walkthrough.py.
    lines = [
        ln.strip()
        for ln in (REPO / "README.md").read_text().splitlines()
        if ln.startswith("tre submit ") and "--input-job" not in ln
    ]
    assert len(lines) == 1, lines
    return lines[0]


def _tre(env: dict[str, str], args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tre.cli.main", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def live(settings, engine, token_for, dicom_dir):  # type: ignore[no-untyped-def]
    with session_scope(engine) as s:
        registry.create_user(s, "t", "alice", ["researcher"])
        registry.create_user(s, "t", "bob", ["researcher"])
        registry.create_user(s, "t", "dana", ["dac"])
        registry.create_user(s, "t", "root", ["admin"])
        registry.create_project(s, "t", "lung", "Lung")
        registry.create_project(s, "t", "other", "Other")
        registry.add_member(s, "t", "lung", "alice")
        registry.add_member(s, "t", "other", "bob")
        registry.register_dataset(s, "t", "lidc", "LIDC sample", dicom_dir)
        # dana reviews lidc's releases, so she may read the code of its jobs (tre.committees).
        WorldFactory(s, actor="root").committee("lidc", ["dana"])
        registry.grant_access(s, "t", "lung", "lidc", expires_at=utcnow() + timedelta(days=1))
        WorldFactory(s, actor="root").approve_image("lung")
    app = create_app(settings, engine)
    worker = Worker(settings, engine)
    t = threading.Thread(target=worker.serve_forever, daemon=True)
    t.start()
    with BackgroundServer(app) as server:
        base = {**os.environ, "TRE_HOME": str(settings.home), "TRE_API_URL": server.url, "COLUMNS": "250"}
        yield {
            u: {**base, "TRE_TOKEN": token_for(u, r)}
            for u, r in (("alice", "researcher"), ("bob", "researcher"), ("dana", "dac"), ("root", "admin"))
        }
    worker.stop()
    t.join(timeout=10)


def test_readme_submit_line_runs_the_folders_code(live, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    line = readme_submit_line()
    assert line == "tre submit -p lung -d lidc --image <ref> --code . --wait -- python3 analysis.py"
    work = tmp_path / "analysis"
    work.mkdir()
    (work / "analysis.py").write_text(ANALYSIS)
    args = shlex.split(line.replace("<ref>", IMAGE))[1:]

    proc = _tre(live["alice"], args, cwd=work)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "cwd /code" in proc.stdout
    assert "writing to /code: EROFS" in proc.stdout
    assert "counted 2 files" in proc.stdout and "succeeded" in proc.stdout
    job_id = proc.stdout.split("submitted job ")[1].split()[0]
    packed = io.BytesIO()
    pack_folder(work, packed, CodeLimits())
    sha = hashlib.sha256(packed.getvalue()).hexdigest()
    assert f"code {sha[:16]}" in proc.stdout

    out = _tre(live["alice"], ["outputs", job_id], cwd=work)
    assert "summary.csv" in out.stdout
    assert sha[:12] in _tre(live["alice"], ["jobs"], cwd=work).stdout
    assert sha in _tre(live["alice"], ["job", "show", job_id], cwd=work).stdout

    # The DAC member downloads and lists the exact archive the job ran.
    dest = tmp_path / "dac" / "code.tar.gz"
    got = _tre(live["dana"], ["job", "code", job_id, "-o", str(dest)], cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == sha
    with tarfile.open(dest) as tar:
        assert tar.getnames() == ["analysis.py"]
        assert tar.extractfile("analysis.py").read().decode() == ANALYSIS  # type: ignore[union-attr]
    listed = _tre(live["dana"], ["job", "code", job_id, "--list"], cwd=tmp_path)
    assert listed.returncode == 0 and "analysis.py" in listed.stdout

    # The downloaded archive, sent again as a .tar.gz, is the same code: stored once.
    again = _tre(
        live["alice"],
        [*args[: args.index("--code") + 1], str(dest), *args[args.index("--code") + 2 :]],
        cwd=tmp_path,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"code {sha[:16]}" in again.stdout and "already stored" in again.stdout
    assert "counted 2 files" in again.stdout

    # A researcher of another project: one line, the same 404 as for no job at all.
    denied = _tre(live["bob"], ["job", "code", job_id, "-o", str(tmp_path / "b.tar.gz")], cwd=tmp_path)
    assert denied.returncode == 1 and denied.stderr.strip() == f"error: Not found: no job '{job_id}'"
    assert not (tmp_path / "b.tar.gz").exists()


def test_hostile_folder_is_refused_before_upload(live, tmp_path: Path, settings) -> None:  # type: ignore[no-untyped-def]
    work = tmp_path / "analysis"
    work.mkdir()
    (work / "analysis.py").write_text(ANALYSIS)
    (work / "secrets").symlink_to("/etc")
    args = shlex.split(readme_submit_line().replace("<ref>", IMAGE))[1:]
    proc = _tre(live["alice"], args, cwd=work)
    assert proc.returncode == 1
    assert (
        proc.stderr.strip()
        == "error: symbolic link 'secrets' points to an absolute path, which the job cannot reach: "
        "make it relative, or leave it out"
    )
    assert "Traceback" not in proc.stderr + proc.stdout
    archives = settings.home / "code" / "archives"
    assert not archives.exists() or not any(archives.iterdir())

    # The project's quota, lowered by an admin, is applied by the CLI before anything is sent.
    (work / "secrets").unlink()
    (work / "weights.bin").write_bytes(os.urandom(2 << 20))
    set_quota = _tre(live["root"], ["project", "quota", "lung", "--max-code-mb", "1"], cwd=tmp_path)
    assert set_quota.returncode == 0 and "max_code_mb=1" in set_quota.stdout, set_quota.stderr
    over = _tre(live["alice"], args, cwd=work)
    assert over.returncode == 1
    assert over.stderr.strip().startswith(
        f"error: the code folder {work} holds more than 1 MiB, the project's quota; "
        "the largest: weights.bin (2.0 MiB)."
    )
    assert not archives.exists() or not any(archives.iterdir())


REFUSED = "error: Job not admitted:"


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (("-d", "lidc", "-d", "nope"), f"{REFUSED} project 'lung' has no access to dataset 'nope'"),
        (("-p", "lung", "-p", "other"), f"{REFUSED} you are not a member of project 'other'"),
        (("--image", IMAGE, "--image", "other@sha256:" + "0" * 64), f"{REFUSED} image 'other@sha256:"),
    ],
    ids=["dataset", "project", "image"],
)
def test_a_refused_submission_uploads_no_code(  # type: ignore[no-untyped-def]
    live, tmp_path: Path, settings, engine, change: tuple[str, ...], said: str
) -> None:
    """Admission is asked before the code is packed and sent: a mistyped dataset, project or
    image used to be refused only after the upload (up to the project's code quota), leaving
    the archive stored. Failed before: the archive store held the folder's archive."""
    work = tmp_path / "analysis"
    work.mkdir()
    (work / "analysis.py").write_text(ANALYSIS)
    line = readme_submit_line().replace("<ref>", IMAGE)
    old, new = " ".join(change[:2]), " ".join(change[2:])
    assert old in line
    proc = _tre(live["alice"], shlex.split(line.replace(old, new))[1:], cwd=work)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and said in proc.stderr, proc.stderr
    assert "code " not in proc.stdout  # nothing announced as stored
    archives = settings.home / "code" / "archives"
    assert not archives.exists() or not any(archives.iterdir())
    with session_scope(engine) as s:
        entries = [json.loads(body) for body in s.scalars(select(AuditEntry.body))]
    denied = [e for e in entries if e["action"] == "job.denied"]
    assert [d["details"].get("check") for d in denied] == [True]
