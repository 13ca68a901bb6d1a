"""The first periodic checkpoint is signed whatever the monotonic clock reads.

The worker remembered "never checkpointed" as 0.0 and compared it with ``time.monotonic()``,
which counts from boot: on a machine up for less than five minutes the first checkpoint was
skipped, and an idle deployment showed auditors a stale checkpoint.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from tests.audit_clock import checkpoints_seen_as_old
from tre.jobs.worker import CHECKPOINT_EVERY_S, Worker
from tre.store.db import session_scope
from tre.store.models import AuditCheckpoint


def _count(engine) -> int:  # type: ignore[no-untyped-def]
    with session_scope(engine) as s:
        return len(s.scalars(select(AuditCheckpoint)).all())


def test_first_checkpoint_on_a_freshly_booted_machine(
    settings, engine, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    from tre import audit

    audit.configure(engine, settings.keys_dir)
    with session_scope(engine) as s:
        audit.record_event(s, actor="test", action="test.event")
    before = _count(engine)
    checkpoints_seen_as_old(monkeypatch)
    now = [3.0]  # seconds since boot, as time.monotonic() reads right after boot
    worker = Worker(settings, engine, clock=lambda: now[0])
    worker.tick()
    assert _count(engine) == before + 1
    # Within the period nothing more is signed; after it, the next one is.
    now[0] += CHECKPOINT_EVERY_S / 2
    worker.tick()
    assert _count(engine) == before + 1
    now[0] += CHECKPOINT_EVERY_S
    worker.tick()
    assert _count(engine) == before + 2
