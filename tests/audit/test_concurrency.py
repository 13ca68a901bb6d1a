"""Two processes appending at once must produce one consistent tree (no fork, no gap).

Real OS processes, each with its own engine and connection pool, released together from a
barrier, on a SQLite file and on PostgreSQL.
"""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

from sqlalchemy import Engine, func, select

from tests.audit.conftest import export_bytes
from tre.audit.signing import AuditSigner
from tre.audit.verify import verify_bundle
from tre.store.db import session_scope
from tre.store.models import AuditCheckpoint, AuditEntry

ROUNDS = 25


def _append(url: str, keys_dir: str, worker: int, barrier: mp.synchronize.Barrier, out: mp.Queue) -> None:
    from tre.audit import AuditEvent, configure, record_event, record_events
    from tre.store.db import make_engine, session_scope

    try:
        engine = make_engine(url)
        configure(engine, Path(keys_dir))
        barrier.wait(timeout=60)
        mine = []
        for i in range(ROUNDS):
            with session_scope(engine) as s:
                if i % 2:
                    mine.append(
                        record_event(s, actor=f"w{worker}", action="job.start", job_id=f"{worker}-{i}")
                    )
                else:
                    evs = [
                        AuditEvent(f"w{worker}", "job.output", job_id=f"{worker}-{i}-{k}") for k in range(3)
                    ]
                    mine.extend(record_events(s, evs))
        engine.dispose()
        out.put((worker, mine, None))
    except Exception as exc:  # noqa: BLE001 - report to the parent instead of dying silently
        out.put((worker, [], repr(exc)))


def test_two_processes_appending_build_one_tree(log_engine: Engine, signer: AuditSigner, settings) -> None:
    url = log_engine.url.render_as_string(hide_password=False)
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    out: mp.Queue = ctx.Queue()
    procs = [ctx.Process(target=_append, args=(url, str(settings.keys_dir), w, barrier, out)) for w in (0, 1)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    errors = [r[2] for r in results if r[2]]
    assert not errors, errors
    per_worker = ROUNDS // 2 * 1 + (ROUNDS - ROUNDS // 2) * 3
    indices = sorted(i for _, mine, _ in results for i in mine)
    assert indices == list(range(2 * per_worker))  # dense, no index handed out twice

    with session_scope(log_engine) as s:
        assert s.scalar(select(func.count()).select_from(AuditEntry)) == 2 * per_worker
        assert s.scalar(select(func.count()).select_from(AuditCheckpoint)) == 2 * ROUNDS
        actors = s.scalars(select(AuditEntry.actor).order_by(AuditEntry.idx)).all()
    switches = sum(a != b for a, b in zip(actors, actors[1:], strict=False))
    assert switches >= 1  # both really appended to the same log
    report = verify_bundle(export_bytes(log_engine, signer), signer.verifier_key)
    assert report.ok, report.errors
    assert report.tree_size == 2 * per_worker and report.checkpoints_verified == 2 * ROUNDS
