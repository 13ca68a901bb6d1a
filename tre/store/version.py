"""A cheap token that changes whenever anyone commits a change to the database.

The API's read cache (`tre.api.read_cache`) keeps answers only as long as this token is
unchanged, so it must move on *every* committed write, by any connection of any process
(the API's other worker processes, ``tre worker``, the CLI, an admin's ``sqlite3``):

* SQLite: ``PRAGMA data_version`` on a connection of its own that never writes. SQLite
  changes the value it returns whenever another connection — in this process or any other —
  has committed since this connection last asked (in WAL mode it compares the shared
  WAL-index header; no lock is taken). One call costs a few microseconds.
* PostgreSQL: ``pg_current_snapshot()`` as text (``xmin:xmax:xip-list``). A committed change
  needs a transaction id; assigning one moves ``xmax``, and a commit of one that was running
  removes it from the in-progress list, so two equal snapshots mean nothing was committed in
  between. A write that has started but not committed also changes it: a spurious miss, never
  a stale hit. One round trip on a connection of its own (autocommit).

`current()` returns None when no token can be had (in-memory SQLite, a lost connection, an
unknown database): callers must then not cache.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from typing import Any

from sqlalchemy import Engine


class StoreVersion:
    """The change token of one database, for one process (reopened after a fork)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._conn: Any = None
        self._pid = 0
        self._lock = threading.Lock()

    def current(self) -> str | None:
        """The token now, or None when it cannot be known (then nothing may be cached)."""
        with self._lock:
            try:
                conn = self._connection()
                if conn is None:
                    return None
                if self.engine.dialect.name == "sqlite":
                    row = conn.execute("PRAGMA data_version").fetchone()
                else:
                    row = conn.execute("SELECT pg_current_snapshot()::text").fetchone()
                return None if row is None else str(row[0])
            except Exception:  # noqa: BLE001 - any failure means "unknown": drop the connection
                self._close()
                return None

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001, S110 - closing a broken connection
                pass
        self._conn = None

    def _connection(self) -> Any:
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        self._conn = None  # a connection inherited over fork is the parent's: never reused
        url = self.engine.url
        if self.engine.dialect.name == "sqlite":
            path = url.database or ""
            if not path or path == ":memory:" or path.startswith("file:"):
                return None
            conn: Any = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA query_only=ON")
        elif self.engine.dialect.name == "postgresql" and self.engine.dialect.driver == "psycopg":
            import psycopg

            conn = psycopg.connect(
                url.set(drivername="postgresql").render_as_string(hide_password=False),
                autocommit=True,
            )
        else:
            return None
        self._conn, self._pid = conn, os.getpid()
        return conn
