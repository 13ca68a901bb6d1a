"""A job's exit status, end reason and times as channels to its researcher (redteam14b).

A job chooses its exit code (a byte), the signal it dies of and the microsecond it ends; the
job view, the listing, the TES views and the hub's node logs showed all of them exactly,
before anyone reviewed anything. Researchers now see an exit-code class, a reason without
the job's numbers and times to the minute (`tre.jobs.shown_run`); staff reviewing the job
see the exact values.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.worlds import WorldFactory
from tre.jobs.shown_run import GRAIN_S, shown_time
from tre.store.db import session_scope
from tre.store.models import Job, TesTask

START = datetime(2026, 3, 4, 10, 17, 23, 456789, tzinfo=UTC)

PIDS = " (process limit of 64 reached)"
# (stored exit code, stored reason, the reason a researcher is shown), as the executors write them
ENDS = [
    (173, "exited with code 173", "exited with a non-zero code"),
    (3, "exited with code 3" + PIDS, "exited with a non-zero code" + PIDS),
    (5, "exited with code 5 (ContainerCannotRun)", "exited with a non-zero code (ContainerCannotRun)"),
    (-10, "killed by SIGUSR1", "killed by a signal"),
    (-40, "killed by signal 40", "killed by a signal"),
    (138, "killed by SIGUSR1" + PIDS, "killed by a signal" + PIDS),
]


def _ended_job(engine, settings, code: int, reason: str, run: timedelta) -> str:  # type: ignore[no-untyped-def]
    with session_scope(engine) as s:
        factory = WorldFactory(s)
        job_id = factory.finished_job(settings, "p1", "alice", ["ct1"], {"a.txt": b"x"}, state="failed")
        job = s.get(Job, job_id)
        assert job is not None
        job.exit_code, job.reason = code, reason
        job.created_at = START - timedelta(seconds=2)
        job.started_at, job.finished_at = START, START + run
        declared = [{"path": "/output", "url": "s3://out/", "type": "DIRECTORY"}]
        s.add(TesTask(job_id=job_id, name="t", outputs=declared, executors=[]))
    return job_id


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=UTC)


@pytest.mark.parametrize(("code", "reason", "shown"), ENDS)
def test_a_jobs_exit_code_and_reason_reach_the_researcher_as_a_class(  # type: ignore[no-untyped-def]
    app_client, world, engine, settings, code, reason, shown
) -> None:
    job_id = _ended_job(engine, settings, code, reason, timedelta(seconds=301, microseconds=123457))
    alice, audrey = world.headers["alice"], world.headers["audrey"]

    mine = app_client.get(f"/api/v1/jobs/{job_id}", headers=alice).json()
    assert (mine["exit_code"], mine["reason"]) == (1, shown)
    listed = [j for j in app_client.get("/api/v1/jobs", headers=alice).json() if j["id"] == job_id]
    assert [(j["exit_code"], j["reason"]) for j in listed] == [(1, shown)]
    for view in ("BASIC", "FULL"):
        task = app_client.get(f"/ga4gh/tes/v1/tasks/{job_id}", params={"view": view}, headers=alice).json()
        (log,) = task["logs"]
        assert [e["exit_code"] for e in log["logs"]] == [1]
        if view == "FULL":
            assert log["system_logs"][0] == f"tre job failed: {shown}"

    staff = app_client.get(f"/api/v1/jobs/{job_id}", headers=audrey).json()
    assert (staff["exit_code"], staff["reason"]) == (code, reason)
    task = app_client.get(f"/ga4gh/tes/v1/tasks/{job_id}", params={"view": "FULL"}, headers=audrey).json()
    assert task["logs"][0]["logs"][0]["exit_code"] == code


def test_run_times_reach_the_researcher_to_the_minute(app_client, world, engine, settings) -> None:  # type: ignore[no-untyped-def]
    """Two jobs whose runs differ by 37 ms (the job's message) and whose ends fall in the same
    minute read the same to the researcher, in every view; staff see the exact times."""
    alice, audrey = world.headers["alice"], world.headers["audrey"]
    runs = [timedelta(seconds=20, milliseconds=ms) for ms in (1, 38)]
    ids = [_ended_job(engine, settings, 0, "exited with code 0", run) for run in runs]
    seen = []
    for job_id in ids:
        job = app_client.get(f"/api/v1/jobs/{job_id}", headers=alice).json()
        listed = next(j for j in app_client.get("/api/v1/jobs", headers=alice).json() if j["id"] == job_id)
        task = app_client.get(f"/ga4gh/tes/v1/tasks/{job_id}", params={"view": "FULL"}, headers=alice).json()
        log = task["logs"][0]
        times = {
            (job["started_at"], job["finished_at"]),
            (listed["started_at"], listed["finished_at"]),
        }
        assert len(times) == 1
        start, end = (_parse(t) for t in times.pop())
        assert (_parse(log["start_time"]), _parse(log["end_time"])) == (start, end)
        assert (_parse(log["logs"][0]["start_time"]), _parse(log["logs"][0]["end_time"])) == (start, end)
        # on the grid, never after the real times, in order
        created = _parse(job["created_at"])
        assert all(t.timestamp() % GRAIN_S == 0 for t in (created, start, end))
        assert created <= start <= START and end <= START + timedelta(seconds=21)
        assert (job["exit_code"], job["reason"]) == (0, "exited with code 0")
        seen.append((start, end))
    assert seen[0] == seen[1]
    exact = [_parse(app_client.get(f"/api/v1/jobs/{i}", headers=audrey).json()["finished_at"]) for i in ids]
    assert exact[1] - exact[0] == timedelta(milliseconds=37)


def test_times_are_rounded_down_to_the_grid_and_kept_for_staff() -> None:
    t = datetime(2026, 1, 1, 12, 34, 56, 789, tzinfo=UTC)
    assert shown_time(t, exact=False) == datetime(2026, 1, 1, 12, 34, tzinfo=UTC)
    assert shown_time(t.replace(tzinfo=None), exact=False) == datetime(2026, 1, 1, 12, 34)
    assert shown_time(t, exact=True) == t
    assert shown_time(None, exact=False) is None
    # every distinct microsecond of a minute reads the same
    assert {shown_time(t + timedelta(microseconds=n * 997), exact=False) for n in range(3000)} == {
        datetime(2026, 1, 1, 12, 34, tzinfo=UTC)
    }
