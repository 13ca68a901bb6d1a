"""Appending to the audit log: canonical entries, the Merkle frontier, signed checkpoints.

Appends happen inside the caller's transaction, so an action and its audit entry commit or
roll back together. The single AuditState row is the tree's lock: it is write-locked before
its size and frontier are read (SELECT ... FOR UPDATE on PostgreSQL; on SQLite a no-op
UPDATE takes the database write lock first), so two appenders can never both build on the
same tree size and fork the log. Each call appends its whole batch and signs one checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from enum import Enum
from pathlib import PurePath
from typing import Any, cast
from uuid import UUID

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tre.audit.guard import (
    ALERT,
    check_extends_pin,
    check_last_entry,
    check_signed_tip,
    check_storage,
    damaged,
    remember_after_commit,
)
from tre.audit.merkle import GENESIS_PREV, Frontier, ProofError
from tre.audit.note import TIMESTAMP_EXT, Checkpoint
from tre.audit.signing import AuditSigner, signer_for
from tre.audit.verify import MAX_CLOCK_SKEW_MS
from tre.store.models import AuditCheckpoint, AuditEntry, AuditState

STATE_ID = 1
ENTRY_VERSION = 1
# A host whose clock is this far behind the log's last checkpoint raises an alert (verifiers
# tolerate this much disagreement between hosts).
CLOCK_ALERT_MS = MAX_CLOCK_SKEW_MS
MAX_DETAILS_BYTES = 65535  # the most a tlog-tiles entry bundle can carry (2-byte length)
# Key in ``Session.info`` of a read-only unit of work: a list that collects its audit events
# instead of appending them; the owner of the session appends them after it ends.
DEFERRED_EVENTS = "tre.audit.deferred_events"
_ACTION_RE = re.compile(r"^[A-Za-z0-9_.:/-]{1,64}$")
# Actors are ids (user slugs, "system", "node:<name>", ...), ASCII only: an actor that looks
# like another (Cyrillic "а" for "a", fullwidth letters, a combining accent, a zero-width or
# control character) would hide from a search for the real one and read as it on screen.
_ACTOR_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@/+-]{0,63}$")


@dataclass(frozen=True)
class AuditEvent:
    """One thing that happened, as callers describe it (see record_event)."""

    actor: str
    action: str
    project_id: str | None = None
    dataset_id: str | None = None
    job_id: str | None = None
    details: Mapping[str, Any] | None = None
    timestamp: datetime | None = field(default=None)


def _jsonable(value: Any) -> Any:
    """json.dumps fallback for the types callers naturally put in ``details``."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, PurePath | UUID):
        return str(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"audit details cannot hold {type(value).__name__}")


def canonical_json(obj: Any) -> str:
    """Deterministic, single-line JSON: sorted keys, no spaces, ASCII-only, no NaN.

    ASCII escaping guarantees an entry never contains a newline, so an export bundle can
    carry the exact hashed bytes one per line.
    """
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False, default=_jsonable
    )


def entry_body(idx: int, prev: str, fields: Mapping[str, Any]) -> str:
    """The exact text hashed into the tree for one entry.

    ``{"idx":<n>,"prev":"<hex>",`` comes first, then the other fields in canonical form. The
    fixed prefix lets the verifier check every entry's position and hash-chain link with
    one byte comparison instead of a JSON parse (a million entries in well under a second).
    """
    rest = canonical_json(dict(fields))
    if not rest.startswith("{") or rest == "{}" or "idx" in fields or "prev" in fields:
        raise ValueError("entry fields must be a non-empty object without idx/prev")
    return f'{{"idx":{idx},"prev":"{prev}",{rest[1:]}'


def format_ts(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _body(idx: int, prev: str, ev: AuditEvent, ts_text: str) -> str:
    """``ev``'s entry text at ``idx`` after ``prev``; ValueError when it cannot be one."""
    fields = {
        "v": ENTRY_VERSION,
        "ts": ts_text,
        "actor": ev.actor,
        "action": ev.action,
        "project_id": ev.project_id,
        "dataset_id": ev.dataset_id,
        "job_id": ev.job_id,
        "details": dict(ev.details or {}),
    }
    body = entry_body(idx, prev, fields)
    if len(body) > MAX_DETAILS_BYTES:
        raise ValueError(f"audit entry of {len(body)} bytes exceeds {MAX_DETAILS_BYTES}")
    return body


def check_event(event: AuditEvent) -> None:
    """Raise ValueError unless ``event`` can be appended at any index (an event read back
    from disk, `tre.audit.refusal_spool`: one that cannot be written must not wait with the
    others, or every later write fails with it)."""
    _check(event)
    _body(2**63 - 1, GENESIS_PREV, event, format_ts(event.timestamp or datetime.now(UTC)))


def _check(event: AuditEvent) -> None:
    if not _ACTOR_RE.match(event.actor):
        raise ValueError("audit actor must be 1..64 characters of [A-Za-z0-9_.:@/+-], starting alphanumeric")
    if not _ACTION_RE.match(event.action):
        raise ValueError(f"audit action {event.action!r} must be 1..64 characters of [A-Za-z0-9_.:/-]")
    for name, value, limit in (
        ("project_id", event.project_id, 64),
        ("dataset_id", event.dataset_id, 64),
        ("job_id", event.job_id, 32),
    ):
        if value is not None and len(value) > limit:
            raise ValueError(f"audit {name} longer than {limit} characters")


# Built once: constructing a statement costs more Python time than SQLite takes to run it,
# and appends are on every audited request's path (docs/api-load.md).
_STATE = cast(Table, AuditState.__table__)
_STATE_ROW = select(_STATE.c.tree_size, _STATE.c.frontier).where(_STATE.c.id == STATE_ID)
# SQLite: a no-op UPDATE takes the RESERVED (write) lock before the read, so the read cannot
# be stale; RETURNING gives the row in the same statement.
_LOCK_STATE_SQLITE = (
    update(_STATE)
    .where(_STATE.c.id == STATE_ID)
    .values(tree_size=_STATE.c.tree_size)
    .returning(_STATE.c.tree_size, _STATE.c.frontier)
)
_LOCK_STATE_FOR_UPDATE = _STATE_ROW.with_for_update()
_CREATE_STATE = insert(_STATE).values(id=STATE_ID, tree_size=0, frontier=[])
_SAVE_STATE = (
    update(_STATE)
    .where(_STATE.c.id == STATE_ID)
    .values(tree_size=bindparam("size"), frontier=bindparam("hashes"))
)
_INSERT_ENTRIES = insert(cast(Table, AuditEntry.__table__))
_INSERT_CHECKPOINT = insert(cast(Table, AuditCheckpoint.__table__))


def _lock_state(session: Session) -> tuple[int, list[bytes]]:
    """Write-lock the AuditState row (creating it once) and return (tree size, frontier)."""
    conn = session.connection()
    lock = _LOCK_STATE_SQLITE if conn.dialect.name == "sqlite" else _LOCK_STATE_FOR_UPDATE
    for _ in range(2):
        row = conn.execute(lock).one_or_none()
        if row is not None:
            return int(row.tree_size), [bytes.fromhex(h) for h in row.frontier or []]
        try:
            with session.begin_nested():
                session.connection().execute(_CREATE_STATE)
        except IntegrityError:
            pass  # a concurrent first append created it; lock it on the next pass
    raise damaged("the audit state row cannot be created or locked")


def _checked_state(session: Session, signer: AuditSigner) -> tuple[Frontier, str, int]:
    """Lock the tree, prove it extends the last signed checkpoint; return frontier, last leaf
    and the signed time (Unix ms) of the checkpoint covering it (0 for the empty log)."""
    size, hashes = _lock_state(session)
    try:
        frontier = Frontier(size, hashes)
    except ProofError as e:
        raise damaged(f"the stored frontier is corrupt ({e})") from e
    check_extends_pin(session, signer, size, frontier)
    tip = check_signed_tip(session, signer, size, frontier)
    prev = GENESIS_PREV if size == 0 else check_last_entry(session, size, frontier)
    return frontier, prev, (tip.timestamp_ms or 0) if tip is not None else 0


def record_events(
    session: Session, events: Iterable[AuditEvent], *, signer: AuditSigner | None = None
) -> list[int]:
    """Append a batch of events in the caller's transaction; returns their leaf indices.

    One lock, one bulk INSERT and one signed checkpoint per batch: this is the fast path for
    high-volume writers (and the benchmark's).
    """
    batch = list(events)
    for ev in batch:
        _check(ev)
    deferred = session.info.get(DEFERRED_EVENTS)
    if deferred is not None:
        # A read-only unit of work (an API read) cannot write: its owner appends these in one
        # short writing transaction right after it, before answering (`tre.api.deps`).
        now = datetime.now(UTC)
        deferred.extend(replace(ev, timestamp=ev.timestamp or now) for ev in batch)
        return []
    signer = signer or signer_for(session)
    frontier, prev, tip_ms = _checked_state(session, signer)
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    sha = hashlib.sha256
    now_text = format_ts(now)
    for ev in batch:
        ts = now if ev.timestamp is None else ev.timestamp.astimezone(UTC)
        body = _body(frontier.size, prev, ev, now_text if ev.timestamp is None else format_ts(ts))
        leaf = sha(b"\x00" + body.encode()).digest()
        rows.append(
            {
                "idx": frontier.size,
                "timestamp": ts,
                "actor": ev.actor,
                "action": ev.action,
                "project_id": ev.project_id,
                "dataset_id": ev.dataset_id,
                "job_id": ev.job_id,
                "body": body,
                "leaf_hash": leaf,
            }
        )
        frontier.append(leaf)
        prev = leaf.hex()
    if not rows:
        return []
    # Core statements on the connection: executemany without the ORM's persistence layer.
    conn = session.connection()
    conn.execute(_INSERT_ENTRIES, rows)
    conn.execute(_SAVE_STATE, {"size": frontier.size, "hashes": [h.hex() for h in frontier.hashes]})
    conn.execute(_INSERT_CHECKPOINT, _signed_checkpoint(session, signer, frontier, tip_ms))
    return [r["idx"] for r in rows]


def record_event(
    session: Session,
    *,
    actor: str,
    action: str,
    project_id: str | None = None,
    dataset_id: str | None = None,
    job_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> int:
    """Append one security-relevant event to the signed audit log; returns its leaf index
    (-1 when the session defers its appends, see ``DEFERRED_EVENTS``).

    Runs in the caller's transaction (commit makes it durable, rollback removes it) and
    fails loudly rather than let an action go unaudited.
    """
    event = AuditEvent(actor, action, project_id, dataset_id, job_id, details)
    indices = record_events(session, [event])
    return indices[0] if indices else -1  # -1: deferred (see DEFERRED_EVENTS)


def _signed_checkpoint(
    session: Session, signer: AuditSigner, frontier: Frontier, not_before_ms: int
) -> dict[str, Any]:
    """Sign a checkpoint of the frontier's tree and arrange for the pin file to follow it
    once the transaction commits; returns the checkpoint row's values, for the caller to
    store in the same transaction.

    Dated no earlier than ``not_before_ms`` (the checkpoint it extends): verifiers refuse a
    larger tree signed well before a smaller one, so a clock stepped back (a restored VM, an
    NTP correction) would otherwise sign a checkpoint that breaks the log for every auditor,
    forever. A clock far behind is also an alert.
    """
    size, root = frontier.size, frontier.root()
    now = datetime.now(UTC)
    now_ms = int(now.timestamp() * 1000)
    if now_ms < not_before_ms - CLOCK_ALERT_MS:
        ALERT.critical(
            "this host's clock is %d s behind the log's last checkpoint: checkpoints keep that time",
            (not_before_ms - now_ms) // 1000,
        )
    stamp = max(now_ms, not_before_ms)
    cp = Checkpoint(signer.name, size, root, (f"{TIMESTAMP_EXT} {stamp}",))
    note = signer.sign(cp)
    remember_after_commit(session, signer, replace(cp, note=note), frontier.hashes)
    return {"tree_size": size, "root_hash": root, "created_at": now, "note": note}


def latest_checkpoint(session: Session) -> AuditCheckpoint | None:
    return session.execute(
        select(AuditCheckpoint).order_by(AuditCheckpoint.tree_size.desc(), AuditCheckpoint.id.desc()).limit(1)
    ).scalar_one_or_none()


def checkpoint(
    session: Session, *, max_age_s: float | None = None, signer: AuditSigner | None = None
) -> AuditCheckpoint:
    """Make sure a fresh signed checkpoint of the current tree exists, and return it.

    Called periodically (workers, the API's checkpoint endpoint) so auditors see recent
    timestamps even when nothing is appended: a stale checkpoint is then a sign the log is
    being withheld. ``max_age_s=None`` always signs a new one.
    """
    signer = signer or signer_for(session)
    frontier, _, tip_ms = _checked_state(session, signer)
    check_storage(session, frontier.size)
    latest = latest_checkpoint(session)
    if latest is not None and max_age_s is not None and tip_ms:
        # The tip `_checked_state` verified covers exactly this tree (its size and root); its
        # age is its *signed* time: the row's created_at is a copy an insider can move into
        # the future, which stopped the re-signing (round 15).
        age = time.time() - tip_ms / 1000
        if age <= max_age_s:
            return latest
    row = AuditCheckpoint(**_signed_checkpoint(session, signer, frontier, tip_ms))
    session.add(row)
    session.flush()
    return row
