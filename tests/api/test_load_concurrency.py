"""Submissions hammered into several API processes at once still build one audit tree.

The real `tre serve` path with ``TRE_API_WORKERS=2`` (two uvicorn worker processes, their
SQLite writers queued on the file lock beside the database), 16 client threads submitting
jobs, and a third process appending to the same log directly as ``tre worker`` does, on a
SQLite file and on a real PostgreSQL server. Afterwards every submission has its job and its
one ``job.submitted`` entry, the entries' indices are dense, and the exported log verifies.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from sqlalchemy import Engine, select

from tests.audit.conftest import export_bytes
from tests.ports import free_port as _free_port
from tests.worlds import IMAGE, WorldFactory, job_body
from tre.audit import configure
from tre.audit.signing import get_signer
from tre.audit.verify import verify_bundle
from tre.config import Settings
from tre.store.db import session_scope
from tre.store.models import AuditEntry, Job

REPO = Path(__file__).resolve().parents[2]
THREADS, PER_THREAD, DIRECT_APPENDS = 16, 6, 30


def _append_directly(url: str, keys_dir: str, start: mp.synchronize.Event, out: mp.Queue) -> None:
    """Another process appending while the API does (the job worker's path)."""
    from tre.audit import configure, record_event
    from tre.store.db import make_engine, session_scope

    try:
        engine = make_engine(url)
        configure(engine, Path(keys_dir))
        start.wait(timeout=120)
        for i in range(DIRECT_APPENDS):
            with session_scope(engine) as s:
                record_event(s, actor="worker", action="load.direct", details={"i": i})
        engine.dispose()
        out.put(None)
    except Exception as exc:  # noqa: BLE001 - reported to the test instead of dying silently
        out.put(repr(exc))


def _start_api(settings: Settings, url: str, dicom_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "TRE_HOME": str(settings.home),
        "TRE_DATABASE_URL": url,
        "TRE_POLICIES_DIR": str(settings.resolved_policies_dir),
        "TRE_DATA_DIR": str(dicom_dir.parent),
        "TRE_API_WORKERS": "2",
    }
    code = f"from tre.server import serve; serve('127.0.0.1', {port}, with_worker=False)"
    log = (settings.home.parent / "api.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=log, stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{port}"


def _wait_ready(base: str, headers: dict[str, str], proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the API exited"
        try:
            if httpx.get(f"{base}/api/v1/datasets", headers=headers, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("the API did not answer within 120 s")


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def test_submissions_into_two_api_processes_build_one_audit_tree(
    engine_any: Engine, settings: Settings, dicom_dir: Path, token_for: Callable[..., str]
) -> None:
    configure(engine_any, settings.keys_dir)
    with session_scope(engine_any) as s:
        make = WorldFactory(s)
        make.users({"root": ["admin"], "alice": ["researcher"]})
        make.project("p1", "Project one", ["alice"], quota={"max_concurrent_jobs": 10_000})
        make.dataset("ct1", dicom_dir, "CT sample")
        make.grant("p1", "ct1", days=1)
        make.approve_image("p1", IMAGE)
    url = engine_any.url.render_as_string(hide_password=False)
    headers = {"Authorization": f"Bearer {token_for('alice', 'researcher')}"}
    proc, base = _start_api(settings, url, dicom_dir)
    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    direct = ctx.Process(target=_append_directly, args=(url, str(settings.keys_dir), start, out))
    direct.start()
    try:
        _wait_ready(base, headers, proc)
        assert len(_children(proc.pid)) >= 2  # the supervisor's worker processes
        statuses: list[int] = []
        created: list[str] = []
        lock = threading.Lock()
        barrier = threading.Barrier(THREADS)

        def submit(t: int) -> None:
            with httpx.Client(base_url=base, headers=headers, timeout=60) as http:
                barrier.wait(timeout=60)
                for i in range(PER_THREAD):
                    body = job_body(command=["python3", "-c", f"print({t * PER_THREAD + i})"], cpu=1)
                    r = http.post("/api/v1/jobs", json=body)
                    with lock:
                        statuses.append(r.status_code)
                        if r.status_code == 201:
                            created.append(r.json()["id"])

        pool = [threading.Thread(target=submit, args=(t,)) for t in range(THREADS)]
        start.set()
        for th in pool:
            th.start()
        for th in pool:
            th.join(timeout=300)
        assert out.get(timeout=120) is None
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        direct.join(timeout=30)

    assert statuses == [201] * (THREADS * PER_THREAD), sorted(set(statuses))
    with session_scope(engine_any, read_only=True) as s:
        jobs = set(s.scalars(select(Job.id)).all())
        submitted = s.scalars(select(AuditEntry.job_id).where(AuditEntry.action == "job.submitted")).all()
        direct_entries = s.scalars(select(AuditEntry.idx).where(AuditEntry.action == "load.direct")).all()
        indices = s.scalars(select(AuditEntry.idx).order_by(AuditEntry.idx)).all()
    assert jobs == set(created) and len(created) == THREADS * PER_THREAD
    assert sorted(submitted) == sorted(created)  # one entry per job, none lost, none twice
    assert len(direct_entries) == DIRECT_APPENDS
    assert indices == list(range(len(indices)))  # dense: no index handed out twice
    signer = get_signer(settings.keys_dir)
    report = verify_bundle(export_bytes(engine_any, signer), signer.verifier_key)
    assert report.ok, report.errors
    assert report.tree_size == len(indices)
