"""Alembic environment: runs against the engine handed over by `tre.store.db.init_db`."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from tre.plural import count
from tre.store import federation_models, models  # noqa: F401  (registers every table on Base.metadata)
from tre.store.base import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _sqlite_foreign_keys(connection: Connection, on: bool) -> None:
    """Switch SQLite's foreign-key enforcement on this connection, outside any transaction
    (inside one SQLite ignores the pragma), so through the DBAPI connection: SQLAlchemy would
    begin a transaction first."""
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")
    finally:
        cursor.close()


def run_migrations_online() -> None:
    engine = config.attributes.get("engine") or create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as connection:
        # SQLite alters a table by rebuilding it (batch mode): a copy is made and the old table
        # dropped. With foreign keys enforced, that drop cascades, and every row referring to
        # the table (a dataset's grants, a project's members) is deleted. SQLite's documented
        # procedure instead: keys off, rebuild, check every reference, keys on again.
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            _sqlite_foreign_keys(connection, on=False)
        try:
            context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
            with context.begin_transaction():
                context.run_migrations()
            if sqlite:
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                connection.commit()  # ends the transaction that query began: the pragma needs none
                if broken:
                    raise RuntimeError(
                        f"migration left {count(len(broken), 'broken reference')}: {broken[:5]}"
                    )
        finally:
            if sqlite:
                if connection.in_transaction():
                    connection.rollback()
                _sqlite_foreign_keys(connection, on=True)


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
