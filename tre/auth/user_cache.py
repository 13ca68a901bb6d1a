"""A short-lived cache of each user's enabled flag, roles and signed-out tokens, for the API's
authentication.

Every request maps its token's subject to the user table (is the user known, enabled, and
which roles does it still hold?); that query was a tenth of a small read's CPU time
(docs/api-load.md). The answer changes only when an admin changes a user, so it is kept for
`TTL_S` seconds:

* a change made through the ORM in this process (the API's admin routes, an embedded
  worker) clears every cache as soon as it is flushed and again when it commits, so it
  takes effect on the next request;
* a change made by another process (``tre admin`` on the command line against the same
  database) takes effect within `TTL_S` seconds.

A read that began before a change and finishes after it must not put the old answer back:
entries are stored only if no change was seen since the read started (a generation count).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from cachetools import TTLCache
from sqlalchemy import event
from sqlalchemy.orm import Session

from tre.store.models import RevokedToken, User, UserRole

TTL_S = 5.0
MAX_USERS = 4096
_generation = 0
_generation_lock = threading.Lock()


@dataclass(frozen=True)
class UserAccess:
    """What authentication needs to know about a user."""

    disabled: bool
    roles: frozenset[str]
    # SHA-256 digests of the user's tokens signed out before their expiry (`tre.auth.revocation`).
    revoked_tokens: frozenset[str] = frozenset()
    # Unix seconds before which the user's tokens are refused (`tre.auth.generation`).
    tokens_epoch: float = 0.0


def generation() -> int:
    """Bumped by every flush or commit that touched a user or a user's roles in this process."""
    return _generation


def invalidate() -> None:
    """Forget every cached user in this process (tests that count statements, admin tools)."""
    _bump()


def _bump() -> None:
    global _generation
    with _generation_lock:
        _generation += 1


class UserAccessCache:
    """``key -> UserAccess`` for `TTL_S` seconds, emptied whenever `generation` moves."""

    def __init__(self, ttl_s: float = TTL_S, max_users: int = MAX_USERS) -> None:
        self._lock = threading.Lock()
        self._entries: TTLCache[str, UserAccess] = TTLCache(maxsize=max_users, ttl=ttl_s)
        self._seen = generation()

    def get(self, user_id: str) -> tuple[UserAccess | None, int]:
        """The cached entry (or None) and the generation to hand back to `put`."""
        with self._lock:
            current = generation()
            if current != self._seen:
                self._entries.clear()
                self._seen = current
            return self._entries.get(user_id), current

    def put(self, user_id: str, access: UserAccess, read_at_generation: int) -> None:
        with self._lock:
            if generation() == read_at_generation == self._seen:
                self._entries[user_id] = access


@event.listens_for(Session, "after_flush")
def _note_user_changes(session: Session, _ctx: Any) -> None:
    touched = (*session.new, *session.dirty, *session.deleted)
    if any(isinstance(obj, User | UserRole | RevokedToken) for obj in touched):
        session.info["tre.user_access_changed"] = True
        _bump()


@event.listens_for(Session, "after_commit")
def _clear_on_commit(session: Session) -> None:
    if session.info.pop("tre.user_access_changed", False):
        _bump()


@event.listens_for(Session, "after_rollback")
def _forget_on_rollback(session: Session) -> None:
    session.info.pop("tre.user_access_changed", None)
