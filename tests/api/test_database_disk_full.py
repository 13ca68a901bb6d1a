"""The disk under the SQLite database fills up (a real small tmpfs holding the database, a
file filling what is left): a write is answered 507 storage-full (SQLite's "database or disk
is full"), not 503 "the database did not answer" nor a 500, nothing of it is kept, and the
same request succeeds once there is room again."""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from tests.api.test_disk_full import _is_storage_full
from tests.api.test_disk_full import small_fs as small_fs  # noqa: F401 - the fixture
from tests.worlds import job_body
from tre.store.db import init_db, make_engine, session_scope
from tre.store.models import Job


@pytest.fixture
def engine(small_fs, tmp_path: Path) -> Iterator[Engine]:  # type: ignore[no-untyped-def]
    folder = small_fs(tmp_path / "dbfs", "16m")
    eng = make_engine(f"sqlite:///{folder / 'tre.db'}")
    init_db(eng)
    yield eng
    eng.dispose()


def _fill(folder: Path) -> Path:
    """A file taking every free byte of the file system under ``folder``."""
    filler = folder / "filler"
    chunk = b"\0" * (64 << 10)
    # Unbuffered: a buffered file re-flushes its unwritten tail when closed and raised ENOSPC
    # there, after the disk was full (the CI saw it).
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while True:
            os.write(fd, chunk)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def test_a_write_when_the_databases_disk_is_full(app_client, world, engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    alice = world.headers["alice"]
    assert app_client.get("/api/v1/jobs", headers=alice).status_code == 200
    engine.dispose()  # no pooled connection holds a snapshot: the log can be emptied
    with contextlib.closing(sqlite3.connect(tmp_path / "dbfs" / "tre.db")) as c:
        busy, _, _ = c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    assert busy == 0  # the write-ahead log is empty: the next write must grow it
    filler = _fill(tmp_path / "dbfs")
    _is_storage_full(app_client.post("/api/v1/jobs", headers=alice, json=job_body()))
    os.unlink(filler)
    with session_scope(engine) as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 0
    again = app_client.post("/api/v1/jobs", headers=alice, json=job_body())
    assert again.status_code == 201, again.text
