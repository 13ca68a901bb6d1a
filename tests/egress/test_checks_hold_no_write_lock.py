"""The airlock's checks run without the database's write lock.

Asking for release copies, hashes and checks every file (OCR of each figure: seconds apiece).
Run in the request's writing transaction, the process's write gate and SQLite's writer lock
were held all that time: the worker's rounds and every other writer failed "database busy"
after 30 s (the demo's airlock step timed out on a loaded machine). Now the checks run in a
read-only snapshot and the request is written after them (`workflow.prepare_request`).

Real SQLite, the real app over FastAPI's test client; the check itself is replaced by one that
tries the writer lock from its thread, as the worker in the same process would.
"""

from __future__ import annotations

from typing import Any

import pytest

from egress_review import checking
from tests.egress.test_api import BASE, auth, client, create, world  # noqa: F401 - fixtures
from tre.store.db import raw_writer_lock


def test_a_writer_is_not_kept_waiting_while_the_checks_run(
    client,
    auth,
    world,
    engine,
    monkeypatch: pytest.MonkeyPatch,  # noqa: F811
) -> None:
    lock = raw_writer_lock(engine)
    assert lock is not None, "this test is about SQLite's writer lock"
    real_check = checking.check_file
    free_during_checks: list[bool] = []

    def check_while_trying_the_lock(*args: Any, **kwargs: Any) -> Any:
        got = lock.acquire(timeout=3)  # the worker's round, in another thread of this process
        if got:
            lock.release()
        free_during_checks.append(got)
        return real_check(*args, **kwargs)

    monkeypatch.setattr(checking, "check_file", check_while_trying_the_lock)
    req = create(client, auth, world)
    assert free_during_checks and all(free_during_checks), free_during_checks
    shown = client.get(f"{BASE}/{req['id']}", headers=auth(world.researcher, "researcher"))
    assert shown.status_code == 200 and shown.json()["state"] == req["state"]
