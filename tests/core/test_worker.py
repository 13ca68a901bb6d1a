"""The worker with the real local sandbox: success path, cancellation, and a worker killed
mid-job then restarted (the job ends in a defined state, record and outputs intact)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.worlds import job_body
from tre.executors import outputfs
from tre.jobs.worker import Worker
from tre.store.db import session_scope
from tre.store.models import AuditEntry, Job

pytestmark = pytest.mark.skipif(not Path("/usr/bin/bwrap").exists(), reason="bubblewrap not installed")

WRITE_AND_LIST = (
    "import os; os.makedirs('/output/sub', exist_ok=True);"
    "open('/output/sub/files.txt','w').write('\\n'.join(sorted(os.listdir('/data'))));"
    "print('listed', len(os.listdir('/data')))"
)


def _wait_state(engine, job_id: str, states: set[str], timeout: float = 30) -> Job:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with session_scope(engine) as s:
            job = s.get(Job, job_id)
            if job is not None and job.state in states:
                s.expunge(job)
                return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} never reached {states}")


def test_job_runs_in_sandbox_and_outputs_are_recorded(app_client, world, engine, settings):
    r = app_client.post(
        "/api/v1/jobs",
        headers=world.headers["alice"],
        json=job_body(command=["python3", "-c", WRITE_AND_LIST]),
    )
    job_id = r.json()["id"]
    Worker(settings, engine).run_until_idle(timeout_s=60)
    job = app_client.get(f"/api/v1/jobs/{job_id}", headers=world.headers["alice"]).json()
    assert job["state"] == "succeeded", job
    assert job["exit_code"] == 0
    log = app_client.get(f"/api/v1/jobs/{job_id}/logs", headers=world.headers["alice"])
    assert "listed 2" in log.text and log.headers["X-Job-State"] == "succeeded"
    # As staff: the exact size and the real hash the worker recorded.
    outputs = app_client.get(f"/api/v1/jobs/{job_id}/outputs", headers=world.headers["audrey"]).json()
    content = b"CT_small.dcm\nMR_small.dcm"
    assert outputs == [
        {
            "index": 0,
            "path": "sub/files.txt",
            "name_withheld": False,
            "size": len(content),
            "size_rounded": False,
            "sha256": hashlib.sha256(content).hexdigest(),
            "sha256_keyed": False,
        }
    ]
    with session_scope(engine) as s:
        actions = [
            e.action
            for e in s.scalars(select(AuditEntry).where(AuditEntry.job_id == job_id).order_by(AuditEntry.idx))
        ]
    assert actions == [
        "job.submitted",
        "job.admitted",
        "job.started",
        "dataset.read",  # one per dataset the job reads (tre audit search --dataset ct1)
        "job.output_recorded",
        "job.ended",
        "job.log_read",
        "job.outputs_read",
    ]


def test_failing_job_is_reported(app_client, world, engine, settings):
    r = app_client.post(
        "/api/v1/jobs",
        headers=world.headers["alice"],
        json=job_body(command=["python3", "-c", "import sys; sys.exit(7)"]),
    )
    Worker(settings, engine).run_until_idle(timeout_s=60)
    job = app_client.get(f"/api/v1/jobs/{r.json()['id']}", headers=world.headers["alice"]).json()
    # The researcher sees the exit code's class and no number the job chose (redteam14b) ...
    assert (job["state"], job["exit_code"], job["reason"]) == ("failed", 1, "exited with a non-zero code")
    # ... the staff reviewing the job the code itself.
    staff = app_client.get(f"/api/v1/jobs/{r.json()['id']}", headers=world.headers["audrey"]).json()
    assert (staff["exit_code"], staff["reason"]) == (7, "exited with code 7")


def test_cancel_running_job(app_client, world, engine, settings):
    import threading

    r = app_client.post(
        "/api/v1/jobs",
        headers=world.headers["alice"],
        json=job_body(command=["python3", "-c", "import time; time.sleep(60)"]),
    )
    job_id = r.json()["id"]
    worker = Worker(settings, engine)
    t = threading.Thread(target=worker.run_until_idle, kwargs={"timeout_s": 60})
    t.start()
    _wait_state(engine, job_id, {"running"})
    assert app_client.post(f"/api/v1/jobs/{job_id}/cancel", headers=world.headers["alice"]).status_code == 200
    t.join(timeout=30)
    job = _wait_state(engine, job_id, {"cancelled"}, timeout=5)
    assert "cancel" in job.reason


def test_worker_killed_mid_job_then_restarted(app_client, world, engine, settings):
    marker = f"tre-test-sleeper-{os.getpid()}-{time.time_ns()}"
    script = (
        f"open('/output/partial.txt','w').write('half done'); print('{marker}', flush=True);"
        "import time; time.sleep(120)"
    )
    r = app_client.post(
        "/api/v1/jobs",
        headers=world.headers["alice"],
        json=job_body(command=["python3", "-c", script], time_limit_s=300),
    )
    job_id = r.json()["id"]
    env = {
        **os.environ,
        "TRE_HOME": str(settings.home),
        "TRE_POLICIES_DIR": str(settings.resolved_policies_dir),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "tre.cli.main", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_state(engine, job_id, {"running"})
        partial = settings.jobs_dir / job_id / "output" / "partial.txt"
        deadline = time.monotonic() + 30
        while not partial.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert partial.exists()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    # The sandbox died with its worker (--die-with-parent): nothing of the job keeps running.
    time.sleep(0.5)
    left = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.split()
    assert [p for p in left if int(p) != os.getpid()] == []

    restarted = Worker(settings, engine)
    restarted.recover_orphans()
    job = _wait_state(engine, job_id, {"failed"}, timeout=5)
    assert "stopped while the job was running" in job.reason
    assert job.command[0] == "python3" and job.project_id == "p1" and job.finished_at is not None
    outputs = app_client.get(f"/api/v1/jobs/{job_id}/outputs", headers=world.headers["audrey"]).json()
    assert outputs == [
        {
            "index": 0,
            "path": "partial.txt",
            "name_withheld": False,
            "size": 9,
            "size_rounded": False,
            "sha256": hashlib.sha256(b"half done").hexdigest(),
            "sha256_keyed": False,
        }
    ]
    with session_scope(engine) as s:
        ended = s.scalars(
            select(AuditEntry).where(AuditEntry.job_id == job_id, AuditEntry.action == "job.ended")
        ).one()
        assert '"failed"' in ended.body


def test_idle_worker_signs_periodic_checkpoints(engine, settings, world, monkeypatch):
    from tests.audit_clock import checkpoints_seen_as_old
    from tre.store.models import AuditCheckpoint, AuditEntry

    with session_scope(engine) as s:
        before = s.scalars(select(AuditCheckpoint)).all()
    checkpoints_seen_as_old(monkeypatch)  # nothing appended for ten minutes: the newest is stale
    worker = Worker(settings, engine)
    worker.tick()
    worker.tick()  # a second round within the period signs nothing more
    with session_scope(engine) as s:
        cps = s.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.id)).all()
        size = len(s.scalars(select(AuditEntry.idx)).all())
    assert len(cps) == len(before) + 1
    assert cps[-1].tree_size == size and "tre" in cps[-1].note


def test_heartbeats_are_written_at_most_once_per_interval(app_client, world, engine, settings) -> None:  # type: ignore[no-untyped-def]
    """Executors poll the heartbeat hook often; worker_heartbeat_s bounds the row writes."""
    job_id = app_client.post("/api/v1/jobs", json=job_body(), headers=world.headers["alice"]).json()["id"]
    settings.worker_heartbeat_s = 30.0
    worker = Worker(settings, engine)
    with session_scope(engine) as s:
        job = s.get(Job, job_id)
        assert job is not None
        # Running and this worker's: a heartbeat writes only such a job (ops15).
        job.state, job.worker_id, job.heartbeat_at = "running", worker.worker_id, None
    worker._heartbeat(job_id)
    with session_scope(engine) as s:
        first = s.get(Job, job_id).heartbeat_at  # type: ignore[union-attr]
    assert first is not None
    time.sleep(0.05)
    worker._heartbeat(job_id)  # inside the interval: not written again
    with session_scope(engine) as s:
        assert s.get(Job, job_id).heartbeat_at == first  # type: ignore[union-attr]
    settings.worker_heartbeat_s = 0.01
    time.sleep(0.05)
    worker._heartbeat(job_id)
    with session_scope(engine) as s:
        assert s.get(Job, job_id).heartbeat_at > first  # type: ignore[union-attr,operator]


def test_a_live_worker_cleans_up_after_a_dead_neighbour_without_touching_its_jobs(
    app_client, world, engine, settings
):  # type: ignore[no-untyped-def]
    """Two workers on one machine. The second starts while the first runs a job: it must
    leave that job's mount alone. Then the first is SIGKILLed: the second, still running,
    ends the job (failed, worker lost) with what it wrote recorded, and removes the mount,
    the image file and the scratch folder the dead sandbox left (not only at its own start)."""
    script = "open('/output/partial.txt','w').write('half done'); import time; time.sleep(120)"
    r = app_client.post(
        "/api/v1/jobs",
        headers=world.headers["alice"],
        json=job_body(command=["python3", "-c", script], time_limit_s=300),
    )
    job_id = r.json()["id"]
    env = {
        **os.environ,
        "TRE_HOME": str(settings.home),
        "TRE_POLICIES_DIR": str(settings.resolved_policies_dir),
    }
    first = subprocess.Popen(
        [sys.executable, "-m", "tre.cli.main", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    job_dir = settings.jobs_dir / job_id
    output = job_dir / "output"
    try:
        _wait_state(engine, job_id, {"running"})
        deadline = time.monotonic() + 30
        while not (output / "partial.txt").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert (output / "partial.txt").exists()
        second = Worker(settings, engine)  # starts beside a live worker: its job is not a leftover
        second.recover_orphans()
        assert outputfs.is_mount_point(output)
        assert [p.name for p in job_dir.iterdir() if p.name.startswith(".sandbox-")]
        with session_scope(engine) as s:
            assert s.get(Job, job_id).state == "running"  # type: ignore[union-attr]
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
    second.recover_orphans()  # the live worker's round, not a restart
    job = _wait_state(engine, job_id, {"failed"}, timeout=5)
    assert "stopped while the job was running" in (job.reason or "")
    assert not outputfs.is_mount_point(output)
    assert [p.name for p in job_dir.iterdir() if p.name.startswith(".sandbox-")] == []
    assert (output / "partial.txt").read_text() == "half done"
    outputs = app_client.get(f"/api/v1/jobs/{job_id}/outputs", headers=world.headers["audrey"]).json()
    assert [o["path"] for o in outputs] == ["partial.txt"]


def test_a_job_whose_thread_ended_unrecorded_is_ended_not_forgotten(app_client, world, engine, settings):  # type: ignore[no-untyped-def]
    """A job marked running by this very worker that no thread of it runs (its thread met
    the database away before the job started) is ended at the next round, not left running
    while the worker lives on."""
    from sqlalchemy import update

    from tre.store.base import utcnow

    job_id = app_client.post("/api/v1/jobs", headers=world.headers["alice"], json=job_body()).json()["id"]
    worker = Worker(settings, engine)
    with session_scope(engine) as s:
        s.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(state="running", worker_id=worker.worker_id, heartbeat_at=utcnow(), started_at=utcnow())
        )
    worker.recover_orphans()
    job = _wait_state(engine, job_id, {"failed"}, timeout=5)
    assert "stopped while the job was running" in (job.reason or "")
