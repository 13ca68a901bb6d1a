"""tre's job states onto TES's: the view (`tes_state`) and the listing filter (SQL) agree
for every kind of job, on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from tests.worlds import WorldFactory
from tre.store.db import session_scope
from tre.store.models import Job, TesTask
from tre.tes.models import TesState
from tre.tes.states import state_condition, tes_state

# (tre state, cancel requested, exit code) -> the TES state a client must see.
CASES = [
    ("queued", False, None, TesState.QUEUED),
    ("queued", True, None, TesState.CANCELING),
    ("running", False, None, TesState.RUNNING),
    ("running", True, None, TesState.CANCELING),
    ("succeeded", False, 0, TesState.COMPLETE),
    ("failed", False, 3, TesState.EXECUTOR_ERROR),
    ("failed", False, None, TesState.SYSTEM_ERROR),
    ("timed_out", True, None, TesState.EXECUTOR_ERROR),
    ("cancelled", True, None, TesState.CANCELED),
]


def test_view_and_filter_agree(engine_any: Any, tmp_path: Any) -> None:
    with session_scope(engine_any) as s:
        world = WorldFactory(s, actor="root")
        world.users({"root": ["admin"], "alice": ["researcher"]})
        world.project("lung", "Lung", members=["alice"])
        expected: dict[str, TesState] = {}
        for state, cancel, exit_code, tes in CASES:
            job = Job(
                project_id="lung",
                submitted_by="alice",
                image="i",
                command=["c"],
                state=state,
                cancel_requested=cancel,
                exit_code=exit_code,
            )
            s.add(job)
            s.flush()
            s.add(
                TesTask(
                    job_id=job.id,
                    name="",
                    description="",
                    tags={},
                    inputs=[],
                    outputs=[],
                    executors=[],
                    volumes=[],
                )
            )
            expected[job.id] = tes
    with session_scope(engine_any) as s:
        for job in s.scalars(select(Job)):
            assert tes_state(job) == expected[job.id], job.state
        for tes in TesState:
            got = set(s.scalars(select(Job.id).where(state_condition(tes))))
            assert got == {j for j, t in expected.items() if t == tes}, tes
