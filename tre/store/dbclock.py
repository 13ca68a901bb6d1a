"""The database server's own clock, for deadlines every host must agree on.

Why: each host stamps and judges times by its own wall clock, which jumps (an NTP step, a
resumed virtual machine, an admin's ``date -s``). A deadline of days (an airlock request's
expiry) has no monotonic stand-in that survives restarts, so a second clock is asked: the
database's, which every API and worker host shares. A decision both clocks agree on cannot
be made early by one host's jump; where the two disagree by more than `SKEW_TOLERANCE`,
it is said (`tre admin doctor`'s ``clock`` check, the worker's log).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

# More apart than this, the two clocks are said to disagree (hosts synced by NTP stay within
# well under a second; this leaves room for a slow query and a loaded machine).
SKEW_TOLERANCE = timedelta(minutes=5)


def database_now(conn: Connection | Session) -> datetime:
    """The database server's time now (UTC, aware). PostgreSQL: ``clock_timestamp()``, not the
    transaction's start; SQLite: the C library's ``now`` (the host's clock, not Python's)."""
    dialect = conn.get_bind().dialect if isinstance(conn, Session) else conn.dialect
    if dialect.name == "postgresql":
        value = conn.execute(text("SELECT clock_timestamp()")).scalar_one()
        return value.astimezone(UTC) if isinstance(value, datetime) else _parse(str(value))
    return _parse(str(conn.execute(text("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')")).scalar_one()))


def _parse(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
