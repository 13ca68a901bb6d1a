"""Upper bounds for every number a request may carry, and what text the store can hold.

Every integer and float in a request model is bounded here: an unbounded one reached SQLite
as an integer beyond 64 bits, date arithmetic beyond year 9999, or a float ``inf``/``nan``
that JSON cannot even encode back, and each became a 500. The bounds are generous (far above
any real job or project) and well inside what the columns (32-bit on PostgreSQL) hold.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Query

# 64-bit signed: the widest integer column (audit indices, sizes) in SQLite and PostgreSQL.
MAX_INT64 = (1 << 63) - 1
MAX_CPU = 1024.0
MAX_MEMORY_MB = 16 * 1024 * 1024  # 16 TiB
MAX_GPU = 64
MAX_TIME_S = 366 * 24 * 3600
MAX_OUTPUT_MB = 16 * 1024 * 1024
MAX_JOBS = 10_000
MAX_GRANT_DAYS = 100 * 366
MAX_TEXT_CHARS = 10_000
# A byte offset into a job log: far beyond any log the worker keeps, far below what seek takes.
MAX_LOG_OFFSET = 1 << 48

# Path and query parameters naming a row by integer (file ids, audit indices).
RowId = Annotated[int, Path(ge=0, le=MAX_INT64)]
Index = Annotated[int, Query(ge=0, le=MAX_INT64)]


def unsafe_text(value: Any) -> str | None:
    """Why ``value`` (a str, or lists/dicts of them) cannot be stored, or None.

    PostgreSQL refuses NUL in text and a lone surrogate cannot be encoded as UTF-8: both
    used to fail deep in the store instead of being answered as bad input.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return "text must not contain NUL characters"
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "text must be valid Unicode (no lone surrogates)"
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
    return None
