"""The same store behaviour on the embedded SQLite file and on a real PostgreSQL server."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from tre import registry
from tre.config import Settings
from tre.executors.base import Executor, JobResult, JobSpec, RunControl
from tre.jobs.worker import Worker
from tre.store.base import utcnow
from tre.store.db import init_db, session_scope
from tre.store.models import AccessGrant, Job, JobOutput, User


class _NeverRuns(Executor):
    name = "local"

    def run(self, spec: JobSpec, control: RunControl) -> JobResult:  # pragma: no cover - never called
        raise AssertionError


def _populate(engine, tmp_path):  # type: ignore[no-untyped-def]
    import shutil

    from pydicom.data import get_testdata_file

    data = tmp_path / "d"
    data.mkdir(exist_ok=True)
    shutil.copyfile(get_testdata_file("CT_small.dcm"), data / "ct.dcm")
    with session_scope(engine) as s:
        registry.create_user(s, "t", "alice", ["researcher"])
        registry.create_project(s, "t", "p1", "P1")
        registry.add_member(s, "t", "p1", "alice")
        registry.register_dataset(s, "t", "ds1", "DS", data)
        registry.grant_access(s, "t", "p1", "ds1", days=2)


def test_migrations_are_idempotent_and_complete(engine_any):
    init_db(engine_any)  # second run: no-op
    tables = set(sa.inspect(engine_any).get_table_names())
    assert {
        "users",
        "user_roles",
        "projects",
        "project_members",
        "datasets",
        "access_grants",
        "jobs",
        "job_outputs",
        "egress_requests",
        "egress_files",
        "reviews",
        "audit_entries",
    } <= tables


def test_entities_round_trip(engine_any, tmp_path):
    _populate(engine_any, tmp_path)
    with session_scope(engine_any) as s:
        job = Job(
            project_id="p1",
            submitted_by="alice",
            image="img@sha256:" + "0" * 64,
            command=["python3", "-c", "print(1)"],
            dataset_ids=["ds1"],
        )
        s.add(job)
        s.flush()
        s.add(JobOutput(job_id=job.id, path="a/b.csv", size=12, sha256="f" * 64))
        job_id = job.id
    with session_scope(engine_any) as s:
        job = s.get(Job, job_id)
        assert job.command == ["python3", "-c", "print(1)"] and job.dataset_ids == ["ds1"]
        assert job.created_at.tzinfo is not None and abs(job.created_at - utcnow()) < timedelta(minutes=1)
        assert [(o.path, o.size) for o in job.outputs] == [("a/b.csv", 12)]
        assert s.get(User, "alice").role_names == {"researcher"}
        grant = s.scalars(sa.select(AccessGrant)).one()
        assert grant.active_at(utcnow()) and not grant.active_at(utcnow() + timedelta(days=3))
        assert registry.grant_status(s, "p1", "ds1") == "active"


def test_constraints_hold(engine_any, tmp_path):
    _populate(engine_any, tmp_path)
    with pytest.raises(IntegrityError):
        with session_scope(engine_any) as s:
            s.add(Job(project_id="no-such-project", submitted_by="alice", image="x", command=["x"]))
    with session_scope(engine_any) as s:
        job = Job(project_id="p1", submitted_by="alice", image="x", command=["x"])
        s.add(job)
        s.flush()
        job_id = job.id
        s.add(JobOutput(job_id=job_id, path="same", size=1, sha256="0" * 64))
    with pytest.raises(IntegrityError):
        with session_scope(engine_any) as s:
            s.add(JobOutput(job_id=job_id, path="same", size=2, sha256="1" * 64))


def test_a_job_is_claimed_by_exactly_one_worker(engine_any, tmp_path, settings: Settings):
    _populate(engine_any, tmp_path)
    with session_scope(engine_any) as s:
        for _ in range(6):
            s.add(Job(project_id="p1", submitted_by="alice", image="x", command=["x"], executor="local"))
    workers = [Worker(settings, engine_any, executor=_NeverRuns()) for _ in range(3)]
    claimed: list[tuple[int, str]] = []
    barrier = threading.Barrier(len(workers))

    def claim(i: int, w: Worker) -> None:
        barrier.wait()
        while (job_id := w.claim_next()) is not None:
            claimed.append((i, job_id))

    threads = [threading.Thread(target=claim, args=(i, w)) for i, w in enumerate(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [j for _, j in claimed]
    assert len(ids) == 6 and len(set(ids)) == 6
    with session_scope(engine_any) as s:
        rows = s.scalars(sa.select(Job)).all()
        assert {r.state for r in rows} == {"running"}
        assert {r.worker_id for r in rows} <= {w.worker_id for w in workers}


def test_models_and_migrations_agree(engine):
    """A model change without its Alembic migration fails here, not in production."""
    from alembic import command

    from tre.store.db import alembic_config

    command.check(alembic_config(engine))


def test_upgrading_an_existing_store_keeps_every_row(tmp_path):
    """Every migration, run over a store holding rows from the first schema, keeps them.

    SQLite alters a table by rebuilding it; with foreign keys enforced, dropping the old copy
    cascaded, and upgrading an installation deleted every access grant (the demo, run again,
    then found its project without access to its dataset)."""
    from alembic import command

    from tre.store.db import alembic_config, make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    command.upgrade(alembic_config(engine), "0001")
    now = "2026-01-01 00:00:00"
    seed = [
        f"INSERT INTO users VALUES ('alice', 'Alice', NULL, 0, '{now}')",
        "INSERT INTO user_roles VALUES ('alice', 'researcher')",
        f"INSERT INTO projects VALUES ('lung', 'Lung', '', '{now}', 2, 4096, 0, 3600, 1024, 2)",
        f"INSERT INTO project_members VALUES ('lung', 'alice', '{now}')",
        f"INSERT INTO datasets VALUES ('lidc', 'LIDC', '/srv/lidc', '', 'default', '{{}}', '{now}')",
        "INSERT INTO access_grants VALUES "
        f"('g1', 'lung', 'lidc', 'admin', '{now}', '2099-01-01 00:00:00', NULL, NULL, 'study')",
    ]
    with engine.begin() as conn:
        for statement in seed:
            conn.exec_driver_sql(statement)
    tables = ("users", "user_roles", "projects", "project_members", "datasets", "access_grants")

    init_db(engine)  # to the newest revision, through every table rebuild on the way

    with engine.connect() as conn:
        counts = {t: conn.exec_driver_sql(f"SELECT count(*) FROM {t}").scalar() for t in tables}
    assert counts == dict.fromkeys(tables, 1)
    # and the store's connections enforce references again after the migration
    for _ in range(3):  # whichever pooled connection is handed out, the migrating one included
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO access_grants VALUES "
                f"('g2', 'lung', 'nope', 'admin', '{now}', '2099-01-01 00:00:00', NULL, NULL, 'x')"
            )
    engine.dispose()
