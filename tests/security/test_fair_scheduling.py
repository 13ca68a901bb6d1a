"""One project's long jobs do not starve another's (issue 17, item 12).

With first come, first served a trivial job of project B waited behind every long job
project A had queued before it. Real sandboxed jobs, real worker.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.worlds import job_body
from tre.jobs.worker import Worker
from tre.store.db import session_scope
from tre.store.models import Job

pytestmark = pytest.mark.skipif(not Path("/usr/bin/bwrap").exists(), reason="bubblewrap not installed")

LONG = ["python3", "-c", "import time; time.sleep(1.5)"]
SHORT = ["python3", "-c", "print('quick')"]


def _submit(app_client, world, user: str, project: str, command: list[str]) -> str:  # type: ignore[no-untyped-def]
    body = job_body(project_id=project, command=command, dataset_ids=[] if project == "p2" else ["ct1"])
    r = app_client.post("/api/v1/jobs", headers=world.headers[user], json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _times(engine, *ids: str) -> list[tuple[object, object, str]]:  # type: ignore[no-untyped-def]
    with session_scope(engine) as s:
        jobs = [s.get(Job, i) for i in ids]
        assert all(j is not None and j.state == "succeeded" for j in jobs), [j.reason for j in jobs if j]
        return [(j.started_at, j.finished_at, j.id) for j in jobs if j is not None]


def test_one_slot_serves_the_waiting_project_next(app_client, world, engine, settings) -> None:  # type: ignore[no-untyped-def]
    a1 = _submit(app_client, world, "alice", "p1", LONG)
    a2 = _submit(app_client, world, "alice", "p1", LONG)
    b1 = _submit(app_client, world, "bob", "p2", SHORT)
    Worker(settings, engine, concurrency=1).run_until_idle(timeout_s=120)
    (a1_start, a1_end, _), (a2_start, _, _), (b1_start, b1_end, _) = _times(engine, a1, a2, b1)
    # First come, first served would have run A1, A2, B1; fair order runs B1 right after A1.
    assert a1_start < b1_start < a2_start
    assert b1_end <= a2_start  # type: ignore[operator]


def test_two_slots_go_to_two_projects(app_client, world, engine, settings) -> None:  # type: ignore[no-untyped-def]
    a1 = _submit(app_client, world, "alice", "p1", LONG)
    a2 = _submit(app_client, world, "alice", "p1", LONG)
    b1 = _submit(app_client, world, "bob", "p2", SHORT)
    Worker(settings, engine, concurrency=2).run_until_idle(timeout_s=120)
    (a1_start, a1_end, _), (a2_start, _, _), (b1_start, _, _) = _times(engine, a1, a2, b1)
    # B1 took the second slot while A1 ran; A2 waited for a slot.
    assert b1_start < a1_end and a2_start > b1_start  # type: ignore[operator]


def test_per_project_running_limit(app_client, world, engine, settings) -> None:  # type: ignore[no-untyped-def]
    settings.worker_project_running_limit = 1
    a1 = _submit(app_client, world, "alice", "p1", LONG)
    a2 = _submit(app_client, world, "alice", "p1", LONG)
    Worker(settings, engine, concurrency=2).run_until_idle(timeout_s=120)
    (s1, e1, _), (s2, e2, _) = sorted(_times(engine, a1, a2))  # type: ignore[type-var]
    # Two free slots, but the project may run only one job at a time.
    assert s2 >= e1  # type: ignore[operator]
