"""Creating and listing tasks through the service on SQLite and PostgreSQL: keyset paging
over tasks created in the same instant, filters, visibility, and the audit trail a task
leaves (the same `job.submitted` as `tre submit`, the code upload, a denial)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from sqlalchemy import select

from tests.worlds import IMAGE, WorldFactory
from tre.auth.principal import Principal
from tre.errors import AdmissionDenied
from tre.store.base import utcnow
from tre.store.db import session_scope
from tre.store.models import AuditEntry, Job
from tre.tes import service
from tre.tes.models import TesState, TesTask

ALICE = Principal("alice", frozenset({"researcher"}))
BOB = Principal("bob", frozenset({"researcher"}))
AUDITOR = Principal("audrey", frozenset({"auditor"}))


def task(name: str, **tags: str) -> TesTask:
    return TesTask.model_validate(
        {
            "name": name,
            "inputs": [{"path": "/code/a.py", "content": "print('hi')\n"}],
            "executors": [{"image": IMAGE, "command": ["python3", "a.py"]}],
            "tags": {"Project": "lung", **tags},
        }
    )


def test_create_list_and_page(engine_any: Any, settings: Any, dicom_dir: Any) -> None:
    with session_scope(engine_any) as s:
        world = WorldFactory(s, actor="root")
        world.users(
            {"root": ["admin"], "alice": ["researcher"], "bob": ["researcher"], "audrey": ["auditor"]}
        )
        world.project("lung", "Lung", members=["alice"], quota={"max_concurrent_jobs": 50})
        world.project("other", "Other", members=["bob"])
        world.approve_image("lung")
    ids = []
    with session_scope(engine_any) as s:
        for i in range(7):
            ids.append(service.create_task(s, settings, ALICE, task(f"t-{i}", Parity=str(i % 2))).id)
        # The same instant for all: paging must still give each task exactly once.
        now = utcnow()
        for job in s.scalars(select(Job)):
            job.created_at = now
    with session_scope(engine_any) as s:
        seen: list[str] = []
        token = None
        while True:
            page = service.list_tasks(s, ALICE, service.TaskFilter(), 3, token)
            seen += [job.id for job, _ in page.rows]
            token = page.next_page_token
            if token is None:
                break
        assert sorted(seen) == sorted(ids) and len(seen) == 7
        odd = service.list_tasks(s, ALICE, service.TaskFilter(tags=(("Parity", "1"),)), 256, None)
        assert {row.name for _, row in odd.rows} == {"t-1", "t-3", "t-5"}
        queued = service.list_tasks(
            s, ALICE, service.TaskFilter(state=TesState.QUEUED, name_prefix="t-"), 2, None
        )
        assert len(queued.rows) == 2 and queued.next_page_token
        assert service.list_tasks(s, BOB, service.TaskFilter(), 256, None).rows == []
        assert len(service.list_tasks(s, AUDITOR, service.TaskFilter(), 256, None).rows) == 7
        # The same code is stored once and named by every job.
        hashes = {j.code_hash for j in s.scalars(select(Job))}
        assert len(hashes) == 1 and None not in hashes

    # the unit of work ends with the refusal: rolled back, the job.denied entry written after
    with pytest.raises(AdmissionDenied), session_scope(engine_any) as s:
        other = task("x")
        other.tags = {"Project": "other"}
        service.create_task(s, settings, ALICE, other)
    with session_scope(engine_any) as s:
        actions = [a for a in s.scalars(select(AuditEntry.action))]
        assert actions.count("job.submitted") == 7 and actions.count("code.uploaded") == 7
        assert actions.count("tes.task_created") == 7 and actions.count("job.denied") == 1
        created = s.scalars(select(AuditEntry).where(AuditEntry.action == "tes.task_created")).first()
        assert created is not None and json.loads(created.body)["details"]["tags"]["Project"] == "lung"


@pytest.mark.parametrize(
    "raw",
    [b"2020-01-01T00:00:00|abc", b"no separator", b"\xff\xfe|x", b"2020-01-01T00:00:00+00:00|" + b"a" * 40],
)
def test_forged_page_tokens_are_refused(engine: Any, raw: bytes) -> None:
    token = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    with session_scope(engine) as s, pytest.raises(service.BadPageToken):
        service.list_tasks(s, ALICE, service.TaskFilter(), 10, token)
