"""Domain errors shared by the API, the panel, the CLI and the worker — core and airlock alike.

Services raise these with a sentence a user can act on; the API maps them to problem
documents once (status from the class, a stable slug and title that an instance may refine)
and the CLI prints the sentence. ``refusals`` are the audit entries of a refusal that matters
for security (a denied job, a self-review, a tampered download...). They are *not* written in
the failed transaction, which is rolled back whole: whoever ends the unit of work writes them
after it, in a unit of work of their own (`tre.store.db.settle`); the API keeps them on disk
when the store cannot take them at that moment (`tre.audit.refusals.keep_refusals`). A caller
that catches such an error and answers normally hands them on the same way
(`tre.store.db.note_refusals`). Until round 16 the airlock's refusals were instead written in
the request's transaction and that transaction committed although the action failed: a commit
that failed lost the record (answered 503), and one that worked kept whatever the request had
written before it was refused.
"""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Iterable
from typing import Any


class TreError(Exception):
    status = 400
    title = "Bad request"
    slug = "bad-request"
    refusals: tuple[Any, ...] = ()  # `tre.audit.AuditEvent`s written after the rollback
    # Seconds after which the same request may work (sent as ``Retry-After``): set on the
    # transient faults only, never where an operator must act first.
    retry_after_s: int | None = None

    def __init__(
        self,
        detail: str = "",
        *,
        slug: str | None = None,
        title: str | None = None,
        refusals: Iterable[Any] = (),
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if slug is not None:
            self.slug = slug
        if title is not None:
            self.title = title
        if refusals:
            self.refusals = tuple(refusals)


class NotFound(TreError):
    """Also the answer for what exists but is not the caller's: ids are never an oracle."""

    status = 404
    title = "Not found"
    slug = "not-found"


def no_such(kind: str, ident: str) -> NotFound:
    """404 for a project or dataset id, saying when its letter case is why: ids are lowercase,
    and `-d LIDC` or `grant add Lung lidc` was answered "no project 'Lung'" with nothing more.
    The hint is the id lowercased, whether or not that exists: no oracle either."""
    hint = f" (ids are lowercase: {ident.lower()!r})" if ident != ident.lower() else ""
    return NotFound(f"no {kind} {ident!r}{hint}")


class Forbidden(TreError):
    status = 403
    title = "Forbidden"
    slug = "forbidden"


class Conflict(TreError):
    status = 409
    title = "Conflict"
    slug = "conflict"


class Unprocessable(TreError):
    """The request is well-formed but its content breaks a rule (no files named, bad vote)."""

    status = 422
    title = "Invalid request"
    slug = "invalid-request"


class AdmissionDenied(TreError):
    """A job was refused before it ran: no grant, image not allowed, over quota..."""

    status = 403
    title = "Job not admitted"
    slug = "job-not-admitted"


class PolicyUnavailable(TreError):
    """A dataset's policy file is missing or invalid: nothing may run or leave until fixed."""

    status = 503
    title = "Policy unavailable"
    slug = "policy-unavailable"


class StorageFull(TreError):
    """The server's own disk (or its quota) is full: nothing the caller did, nothing of the
    request kept, worth a retry once an admin made room. Never a 4xx blaming the input."""

    status = 507
    title = "Insufficient storage"
    slug = "storage-full"


STORAGE_FULL_DETAIL = "the server's storage is full; nothing of this request was kept; try again later"
_STORAGE_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# What skopeo, umoci, SQLite and PostgreSQL say when the disk under them is full.
_STORAGE_FULL_WORDS = (
    "no space left on device",
    "disk quota exceeded",
    "database or disk is full",
    "could not extend file",
)


def is_storage_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or an error it was raised from) is the disk filling up: an OSError of
    ENOSPC/EDQUOT, a database driver's "disk is full" (SQLSTATE 53100 on PostgreSQL)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, StorageFull):
            return True
        if isinstance(current, OSError) and current.errno in _STORAGE_FULL_ERRNOS:
            return True
        if getattr(current, "sqlstate", None) == "53100" or getattr(current, "pgcode", None) == "53100":
            return True
        if isinstance(current, sqlite3.OperationalError) and message_says_storage_full(str(current)):
            return True  # SQLITE_FULL: the driver's text is all it gives
        current = getattr(current, "orig", None) or current.__cause__ or current.__context__
    return False


def message_says_storage_full(text: str) -> bool:
    """Whether a tool's or driver's message says the disk is full."""
    lowered = text.lower()
    return any(words in lowered for words in _STORAGE_FULL_WORDS)
