"""Engine and session helpers, and schema migration to head via Alembic.

SQLite is the embedded default, so its connection is tuned for a small multi-process
deployment (API + worker): WAL, a busy timeout and foreign keys on.

Reads and writes take different paths on SQLite, because under load the difference is
seconds of p99 (see docs/api-load.md):

* a read-only unit of work (``session_scope(engine, read_only=True)``, every GET/HEAD of
  the API unless its route writes) starts a DEFERRED transaction with ``query_only`` on:
  in WAL mode it reads a consistent snapshot, never takes the write lock, never waits for a
  writer, and a write attempted in it fails loudly instead of forking state;
* a writing unit of work first takes the writer lock, then ``BEGIN IMMEDIATE``: writers in
  one process queue on a mutex (woken in order, no sleeping), and the mutex's holder takes a
  file lock beside the database that orders it against other processes (API worker
  processes, ``tre worker``), instead of spinning in SQLite's busy handler, which sleeps up
  to 100 ms per retry (`tre.store.writer_lock`). A read-then-write transaction therefore
  reads under the write lock and cannot build on a stale snapshot.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import ArgumentError, DisconnectionError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from tre.config import SettingsError
from tre.errors import TreError
from tre.store.writer_lock import WriterLock, file_lock_held, lock_file_for

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
READ_ONLY_OPTION = "tre_read_only"
BUSY_TIMEOUT_S = 30.0
# One writer lock per SQLite engine (per database file in this process). Weak keys: an
# engine disposed by a test does not keep its lock alive.
_writer_locks: weakref.WeakKeyDictionary[Engine, WriterLock] = weakref.WeakKeyDictionary()
_writer_locks_guard = threading.Lock()


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


class DatabaseBusy(TreError):
    """No write slot within the busy timeout: the caller may retry later."""

    status = 503
    title = "Database busy"
    slug = "database-busy"
    retry_after_s = 5


@contextmanager
def _held(lock: WriterLock, timeout_s: float) -> Iterator[None]:
    # Not reentrant: FastAPI may enter and leave a request's session in two different
    # threadpool threads. The timeout turns a nested writer (a bug) into an error
    # after the same wait SQLite's busy timeout would have given, not a hang.
    if not lock.acquire(timeout=timeout_s):
        raise DatabaseBusy("the database is busy with other writes; try again shortly")
    try:
        yield
    finally:
        lock.release()


def raw_writer_lock(engine: Engine) -> WriterLock | None:
    """The writer lock for a SQLite engine (threads of this process, then other processes:
    `tre.store.writer_lock`); None for PostgreSQL (it locks rows, not the database). Async
    callers (the API) acquire it without blocking the event loop."""
    if not is_sqlite(engine):
        return None
    with _writer_locks_guard:
        lock = _writer_locks.get(engine)
        if lock is None:
            lock = _writer_locks[engine] = WriterLock(lock_file_for(engine.url.database or ""))
    return lock


def writer_lock(engine: Engine) -> AbstractContextManager[Any]:
    """The in-process lock a SQLite writer holds for its whole transaction (no-op elsewhere)."""
    lock = raw_writer_lock(engine)
    return nullcontext() if lock is None else _held(lock, BUSY_TIMEOUT_S)


SQLITE_SYNCHRONOUS = ("FULL", "NORMAL")


def make_engine(url: str, *, sqlite_synchronous: str = "FULL", **kwargs: Any) -> Engine:
    """An engine for ``url``. ``sqlite_synchronous`` (SQLite only, `Settings.sqlite_synchronous`):
    FULL (the default) syncs the WAL on every commit; NORMAL only at checkpoints, so a commit
    costs no ``fsync`` but a power cut may lose the last commits (docs/api-load.md).

    A URL SQLAlchemy cannot parse, or whose driver is not installed, is a `SettingsError`
    naming ``TRE_DATABASE_URL`` (its text never repeats the URL, which may hold a password).
    """
    try:
        return _make_engine(url, sqlite_synchronous=sqlite_synchronous, **kwargs)
    except (ArgumentError, NoSuchModuleError) as exc:
        raise SettingsError(f"invalid setting TRE_DATABASE_URL: {exc}") from None
    except ImportError as exc:  # a dialect whose driver is not installed (postgresql+psycopg2)
        raise SettingsError(
            f"invalid setting TRE_DATABASE_URL: its driver is not installed ({exc}); "
            "PostgreSQL is postgresql+psycopg://"
        ) from None


def _make_engine(url: str, *, sqlite_synchronous: str, **kwargs: Any) -> Engine:
    if sqlite_synchronous not in SQLITE_SYNCHRONOUS:
        raise ValueError(f"sqlite_synchronous must be one of {SQLITE_SYNCHRONOUS}")
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            # SQLite connections are cheap: a pool deep enough for the API's database slots.
            kwargs.setdefault("pool_size", 20)
            kwargs.setdefault("max_overflow", 4)
        engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy, not pysqlite, emit BEGIN so BEGIN IMMEDIATE works (see below).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            if sqlite_synchronous != "FULL":
                cur.execute(f"PRAGMA synchronous={sqlite_synchronous}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            read_only = bool(conn.get_execution_options().get(READ_ONLY_OPTION))
            # query_only is per connection: switched only when this transaction's kind differs
            # from the last one on the pooled connection (a statement less per transaction).
            if conn.info.get(READ_ONLY_OPTION, False) != read_only:
                conn.exec_driver_sql(f"PRAGMA query_only={'ON' if read_only else 'OFF'}")
                conn.info[READ_ONLY_OPTION] = read_only
            # A snapshot read takes no write lock (and SQLite refuses any write in it);
            # IMMEDIATE takes the write lock up front, so read-then-write transactions (audit
            # appends, job claims) cannot interleave and fork state.
            conn.exec_driver_sql("BEGIN DEFERRED" if read_only else "BEGIN IMMEDIATE")

        return engine
    engine = create_engine(url, **kwargs)
    _ping_after_idle(engine)
    return engine


# A pooled server connection is pinged before use only when it sat idle this long.
PING_AFTER_IDLE_S = 2.0


def _ping_after_idle(engine: Engine) -> None:
    """Ping a pooled connection on checkout only when it was idle, instead of every time.

    Why not ``pool_pre_ping``: it costs a round trip per unit of work, and under load that
    was one statement in eleven of a job submission's (docs/api-load.md), for connections
    used a few milliseconds earlier. The dangerous ones are those that idled (a server
    restart, a firewall dropping idle connections): those are pinged with the dialect's own
    ping, and a dead one is replaced before anyone uses it (SQLAlchemy's custom pessimistic
    recipe: DisconnectionError on checkout makes the pool retry with a new connection). A
    connection that dies within the window fails its statement instead; SQLAlchemy then
    invalidates the pool, so only requests already holding such connections see an error.
    One more is pinged however short its idle: one last known alive before a connection to
    the server failed (a restart within the window: the first unit of work after it used a
    dead connection and failed, "server terminated abnormally").
    """
    failures = {"seen": 0}  # connection attempts and connections that failed, so far

    @event.listens_for(engine, "handle_error")
    def _failed(context: Any) -> None:
        if context.is_disconnect or context.connection is None:
            failures["seen"] += 1

    @event.listens_for(engine, "connect")
    def _connected(_dbapi_conn: Any, record: Any) -> None:
        record.info["tre_failures_seen"] = failures["seen"]

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_conn: Any, record: Any) -> None:
        if record is not None:
            record.info["tre_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("tre_idle_since")
        if idle_since is None:
            return  # new: just connected
        fresh = record.info.get("tre_failures_seen") == failures["seen"]
        if fresh and time.monotonic() - idle_since < PING_AFTER_IDLE_S:
            return  # used moments ago, and nothing failed since it was last known alive
        try:
            alive = engine.dialect.do_ping(dbapi_conn)
        except Exception as e:
            raise DisconnectionError(f"pooled connection failed its ping: {e}") from e
        if not alive:
            raise DisconnectionError("pooled connection failed its ping")
        record.info["tre_failures_seen"] = failures["seen"]


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


# Key in ``Session.info``: refusal entries (`TreError.refusals`) waiting for the end of the
# unit of work, written after it by whoever ends it (`note_refusals`).
REFUSALS_LATER = "tre.audit.refusals_later"


def note_refusals(session: Session, exc: BaseException) -> None:
    """Hand ``exc``'s refusal entries (`TreError.refusals`) to whoever ends ``session``'s unit
    of work, which writes them after it ends, in a unit of work of their own.

    For a caller that catches a refusal and answers normally (the panel shows a refused vote
    again with the reason; a file card says why its staged copy cannot be read): the entries
    are written as for an error raised through the unit of work, never lost with it, and never
    in its transaction (whose commit failing would lose them)."""
    if isinstance(exc, TreError) and exc.refusals:
        session.info.setdefault(REFUSALS_LATER, []).extend(exc.refusals)


def noted_refusals(session: Session) -> list[Any]:
    """Take the refusal entries noted in ``session`` (`note_refusals`), for writing them."""
    return list(session.info.pop(REFUSALS_LATER, ()))


def settle(session: Session, exc: BaseException, *, refusals_written_later: bool = False) -> None:
    """End a failed unit of work: roll it back whole, then write the refusal entries the error
    carries (`TreError.refusals`), and those noted in it, on their own.

    The one place that decides it, so a refusal audited by any service (admission, the
    airlock's workflow) is kept the same way behind the API, the panel, the worker and the
    CLI's own units of work. ``refusals_written_later``: the entries stay noted in the session
    (`noted_refusals`) and its owner writes them after the unit of work ends (the API, which
    keeps them on disk when the store cannot take them).
    """
    session.rollback()
    note_refusals(session, exc)
    if not refusals_written_later:
        write_noted_refusals(session)


def write_noted_refusals(session: Session) -> None:
    """Write the refusal entries noted in ``session`` now, in a transaction of their own (the
    unit of work they came from has ended). The refusal stands either way: a failure is
    logged, not raised."""
    events = noted_refusals(session)
    if not events:
        return
    from tre.audit.log import record_events  # the audit log imports this module

    try:
        record_events(session, events)
        session.commit()
    except Exception:  # the refusal stands either way; the failure is reported, not raised
        session.rollback()
        log.exception("could not record %d refusal entries", len(events))


def read_only_engine(engine: Engine) -> Engine:
    """The same engine and pool, with transactions marked read-only (see the module doc)."""
    return engine.execution_options(**{READ_ONLY_OPTION: True})


def new_session(engine: Engine, *, read_only: bool = False) -> Session:
    """A session whose transactions are read-only snapshots or ordinary (writing) ones."""
    if not read_only:
        return session_factory(engine)()
    session = Session(bind=read_only_engine(engine), expire_on_commit=False)
    if not is_sqlite(engine):
        session.connection(execution_options={"postgresql_readonly": True})
    return session


@contextmanager
def session_scope(
    engine: Engine, *, read_only: bool = False, refusals_written_later: bool = False
) -> Iterator[Session]:
    """One unit of work: commit on success; on error see `settle` (``refusals_written_later``
    is its). Refusal entries noted in it (`note_refusals`) are written after the commit.

    ``read_only`` units never take SQLite's write lock (PostgreSQL runs them as READ ONLY
    transactions); writing ones hold the process's writer lock until they end.
    """
    if read_only:
        session = new_session(engine, read_only=True)
        try:
            yield session
            session.commit()
        except BaseException as exc:
            session.rollback()
            note_refusals(session, exc)
            raise
        finally:
            session.close()
            _write_apart(engine, noted_refusals(session))  # a snapshot cannot write them
        return
    with writer_lock(engine):
        session = session_factory(engine)()
        try:
            yield session
            session.commit()
        except BaseException as exc:
            settle(session, exc, refusals_written_later=refusals_written_later)
            raise
        else:
            if not refusals_written_later:
                write_noted_refusals(session)
        finally:
            session.close()


def _write_apart(engine: Engine, events: list[Any]) -> None:
    """Write refusal entries of a read-only unit of work in a writing one of their own."""
    if not events:
        return
    try:
        with writer_lock(engine), session_factory(engine)() as session:
            session.info[REFUSALS_LATER] = events
            write_noted_refusals(session)
    except DatabaseBusy:  # the refusal stands either way (as in `write_noted_refusals`)
        log.exception("could not record %d refusal entries", len(events))


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    cfg.attributes["engine"] = engine
    return cfg


def schema_is_current(conn: Connection) -> bool:
    """Whether the database's Alembic revision is the newest migration (`tre admin doctor`)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    heads = set(ScriptDirectory.from_config(alembic_config(conn.engine)).get_heads())
    return set(MigrationContext.configure(conn).get_current_heads()) == heads


class DatabaseUnreachable(TreError):
    """The database server refused or could not be reached (address, credentials, database)."""

    status = 503
    title = "Database unreachable"
    slug = "database-unreachable"
    retry_after_s = 5


# Key of the PostgreSQL advisory lock that serialises migrations (any constant bigint; this
# is "tre-migr" in ASCII). Several processes start at once in a deployment (API replicas,
# the worker), each bringing the schema to head: without the lock the second one to create
# a table fails on a fresh database.
MIGRATION_LOCK_KEY = 0x7472652D6D696772


def init_db(engine: Engine) -> None:
    """Bring the schema to the newest migration (idempotent, safe to run concurrently).

    Processes starting together migrate one after the other (the later ones find the schema
    at head): on PostgreSQL under a session advisory lock; on SQLite under the writer lock's
    file (`tre.store.writer_lock`), waited on without a timeout. SQLite's own write lock is not
    enough: Alembic runs SQLite's DDL outside one transaction (the version is read apart from
    each migration's statements), so two processes found a new database empty and both
    created its tables, and one failed to start ("table ... already exists"). A server that
    cannot be reached is one `DatabaseUnreachable` sentence naming the URL without its password.
    """
    try:
        if is_sqlite(engine):  # no timeout: a long migration of a big database is waited for
            with file_lock_held(lock_file_for(engine.url.database or "")):
                command.upgrade(alembic_config(engine), "head")
            return
        with engine.connect() as lock_conn:
            lock_conn.exec_driver_sql(f"SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})")
            try:
                command.upgrade(alembic_config(engine), "head")
            finally:
                lock_conn.exec_driver_sql(f"SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})")
                lock_conn.commit()
    except OperationalError as exc:
        reason = str(exc.orig or exc).strip().splitlines()[0] if str(exc.orig or exc).strip() else "no answer"
        where = engine.url.render_as_string(hide_password=True)
        raise DatabaseUnreachable(f"cannot use the database {where} (TRE_DATABASE_URL): {reason}") from None
