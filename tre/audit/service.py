"""Server-side reads of the audit log: search, proofs and export bundles.

Proofs are built from stored leaf hashes (the tree is never trusted from elsewhere): each
proof needs the hashes of O(log n) aligned subtrees, which are recomputed from the leaf
hashes of those ranges, so one proof reads at most ``tree_size`` leaf hashes.
"""

from __future__ import annotations

import difflib
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, ColumnElement, Select, cast, select, type_coerce
from sqlalchemy.orm import Session

from tre.audit.guard import damaged, stored_leaves
from tre.audit.log import format_ts, latest_checkpoint
from tre.audit.merkle import ProofError, TreeLevels, consistency_proof, inclusion_proof, leaf_hash, node_hash
from tre.audit.note import parse_checkpoint_text, split_note
from tre.audit.signing import AuditSigner
from tre.audit.verify import BUNDLE_FORMAT
from tre.store.models import AuditCheckpoint, AuditEntry, AuditState

EXPORT_CHUNK = 5000
# Complete subtrees never change once all their leaves exist, so their hashes are cached
# per database (a few MB at most). The cache only speeds up proofs: auditors never trust
# the server, they check every proof against a signed checkpoint.
CACHE_MIN_SUBTREE = 1024
CACHE_MAX_ENTRIES = 200_000
_subtree_cache: dict[tuple[str, int, int], bytes] = {}
_cache_lock = threading.Lock()


class AuditLogError(RuntimeError):
    """The stored log cannot answer (damaged storage, or a size beyond the tree)."""


class NotSignedError(AuditLogError):
    """A bundle must end at a signed size, so that every entry in it is vouched for."""


def body_field(session: Session, name: str) -> ColumnElement[str]:
    """A field of the hashed body, extracted by the database (never the editable columns)."""
    body = (
        type_coerce(AuditEntry.body, JSON)
        if session.get_bind().dialect.name == "sqlite"
        else cast(AuditEntry.body, JSON)
    )
    return body[name].as_string()


@dataclass(frozen=True)
class EntryFilter:
    """Search criteria; all given ones must match (AND). Matched against the hashed body."""

    actor: str | None = None
    action: str | None = None
    project_id: str | None = None
    dataset_id: str | None = None
    job_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def _wanted(self) -> dict[str, str]:
        fields = {
            "actor": self.actor,
            "action": self.action,
            "project_id": self.project_id,
            "dataset_id": self.dataset_id,
            "job_id": self.job_id,
        }
        return {k: v for k, v in fields.items() if v is not None}

    def apply(self, session: Session, stmt: Select[Any]) -> Select[Any]:
        """Filter on the body's fields: the search columns can be edited without a key, the body
        cannot (it is bound to its leaf hash, which every row is checked against)."""
        for name, value in self._wanted().items():
            stmt = stmt.where(body_field(session, name) == value)
        if self.since is not None:
            stmt = stmt.where(body_field(session, "ts") >= format_ts(self.since))
        if self.until is not None:
            stmt = stmt.where(body_field(session, "ts") < format_ts(self.until))
        return stmt

    def matches(self, fields: dict[str, object]) -> bool:
        """The same test in Python, on the verified body (defence against a lying database)."""
        if any(fields.get(k) != v for k, v in self._wanted().items()):
            return False
        ts = str(fields.get("ts", ""))
        if self.since is not None and ts < format_ts(self.since):
            return False
        return not (self.until is not None and ts >= format_ts(self.until))


@dataclass
class SearchResult:
    """Entries whose body matches its leaf hash and the filter; rows that did not are listed."""

    entries: list[VerifiedEntry]
    damaged: list[int]
    last_scanned: int | None


@dataclass(frozen=True)
class VerifiedEntry:
    """An entry as its hashed body says (never the search columns)."""

    idx: int
    body: str
    leaf_hash: bytes
    fields: dict[str, object]


def verified_entry(row: AuditEntry) -> VerifiedEntry | None:
    """The row's body parsed, if it hashes to its leaf hash and claims its own index."""
    leaf = bytes(row.leaf_hash)
    if leaf_hash(row.body.encode()) != leaf:
        return None
    try:
        fields = json.loads(row.body)
    except ValueError:
        return None
    if not isinstance(fields, dict) or fields.get("idx") != row.idx:
        return None
    return VerifiedEntry(row.idx, row.body, leaf, fields)


def search(session: Session, flt: EntryFilter, after: int = -1, limit: int = 100) -> SearchResult:
    """Entries matching ``flt`` with index > ``after``, oldest first (keyset pagination)."""
    stmt = (
        flt.apply(session, select(AuditEntry))
        .where(AuditEntry.idx > after)
        .order_by(AuditEntry.idx)
        .limit(limit)
    )
    rows: list[AuditEntry] = list(session.scalars(stmt))
    out: list[VerifiedEntry] = []
    bad: list[int] = []
    for row in rows:
        entry = verified_entry(row)
        if entry is None:
            bad.append(row.idx)
        elif flt.matches(entry.fields):
            out.append(entry)
    return SearchResult(out, bad, rows[-1].idx if len(rows) == limit else None)


def closest_actions(session: Session, action: str, most: int = 3) -> list[str] | None:
    """None when some entry has ``action``; else the log's actions most like it (perhaps
    none). Why: a search for an action no entry has (`job.submit` for `job.submitted`) answered
    an empty page, which an auditor reads as "it never happened". Read from the indexed search
    column (an insider could edit it; this is a hint, not evidence), and only when a search by
    action found nothing."""
    present = set(session.scalars(select(AuditEntry.action).distinct()))
    if action in present:
        return None
    return difflib.get_close_matches(action, sorted(present), n=most, cutoff=0.6)


def tree_size(session: Session) -> int:
    size = session.scalar(select(AuditState.tree_size).where(AuditState.id == 1))
    return int(size or 0)


class StoredTree:
    """RFC 9162 subtree hashes recomputed from the stored leaf hashes, on demand."""

    def __init__(self, session: Session, size: int) -> None:
        current = tree_size(session)
        if size > current:
            raise AuditLogError(f"tree size {size} is beyond the log's current size {current}")
        self.session = session
        self.size = size
        self._db = session.get_bind().engine.url.render_as_string(hide_password=True)
        self._blocks: dict[int, list[bytes]] = {}

    def leaves(self, start: int, end: int) -> list[bytes]:
        """Leaf hashes [start, end). A range inside one aligned block of `CACHE_MIN_SUBTREE`
        leaves (the uncached small subtrees of a proof) is served from that block, read whole
        once: a proof's small subtrees cost one statement a block, not one each, so what a
        request costs does not depend on the bits of the tree's size (a page of a job's
        outputs cost one statement more at some tree sizes than at others)."""
        block = start - start % CACHE_MIN_SUBTREE
        if end - start >= CACHE_MIN_SUBTREE or end > block + CACHE_MIN_SUBTREE:
            return self._read(start, end)
        rows = self._blocks.get(block)
        if rows is None:
            rows = self._blocks[block] = self._read(block, min(block + CACHE_MIN_SUBTREE, self.size))
        return rows[start - block : end - block]

    def _read(self, start: int, end: int) -> list[bytes]:
        rows = stored_leaves(self.session, start, end)
        if len(rows) != end - start:
            raise damaged(f"{end - start - len(rows)} entries are missing in [{start}, {end})")
        return rows

    def range_hash(self, start: int, end: int) -> bytes:
        """MTH of leaves [start, end), reusing cached hashes of complete aligned subtrees.

        RFC 9162 splits a range into perfect subtrees of decreasing size; in proofs each is
        aligned, so large ones are looked up (or computed once and remembered) instead of
        re-reading their leaves. Without this every proof would read the whole log.
        """
        parts: list[bytes] = []
        pos, n = start, end - start
        while n:
            k = 1 << (n.bit_length() - 1)
            parts.append(self._perfect(pos, k))
            pos += k
            n -= k
        if not parts:
            return TreeLevels([]).root()
        root = parts[-1]
        for sub in reversed(parts[:-1]):
            root = node_hash(sub, root)
        return root

    def _perfect(self, start: int, size: int) -> bytes:
        if size < CACHE_MIN_SUBTREE or start % size:
            return TreeLevels(self.leaves(start, start + size)).root()
        key = (self._db, start, size)
        hit = _subtree_cache.get(key)
        if hit is None:
            half = size // 2
            hit = node_hash(self._perfect(start, half), self._perfect(start + half, half))
            with _cache_lock:
                if len(_subtree_cache) >= CACHE_MAX_ENTRIES:
                    _subtree_cache.clear()
                _subtree_cache[key] = hit
        return hit

    def root(self) -> bytes:
        return self.range_hash(0, self.size)

    def inclusion(self, index: int) -> list[bytes]:
        return inclusion_proof(index, self.size, self.range_hash)

    def consistency(self, first: int) -> list[bytes]:
        return consistency_proof(first, self.size, self.range_hash)


def entry_json(e: VerifiedEntry) -> dict[str, object]:
    """API form of an entry: every field from the hashed body, plus the body and its leaf hash."""
    f = e.fields
    return {
        "idx": e.idx,
        "timestamp": f.get("ts"),
        "actor": f.get("actor"),
        "action": f.get("action"),
        "project_id": f.get("project_id"),
        "dataset_id": f.get("dataset_id"),
        "job_id": f.get("job_id"),
        "details": f.get("details", {}),
        "body": e.body,
        "leaf_hash": e.leaf_hash.hex(),
    }


def checkpoint_json(cp: AuditCheckpoint) -> dict[str, object]:
    """The checkpoint as JSON, every field read from the signed note (the guard verified it
    before it was served): the row's size, root and time columns are copies an insider can
    move without touching the note, so they are never shown (round 15)."""
    signed = parse_checkpoint_text(split_note(cp.note)[0])
    ms = signed.timestamp_ms
    when = cp.created_at if ms is None else datetime.fromtimestamp(ms / 1000, UTC)
    return {
        "tree_size": signed.tree_size,
        "root_hash": signed.root_hash.hex(),
        "timestamp": when.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "note": cp.note,
    }


def select_checkpoints(session: Session, size: int, limit: int) -> list[AuditCheckpoint]:
    """At most ``limit`` checkpoints up to ``size``, spread evenly, always the newest.

    A bundle needs the latest checkpoint; the others narrow down where tampering happened and
    let the verifier check consistency, so thinning them only costs precision, not security.
    """
    ids = (
        session.execute(
            select(AuditCheckpoint.id).where(AuditCheckpoint.tree_size <= size).order_by(AuditCheckpoint.id)
        )
        .scalars()
        .all()
    )
    if len(ids) > limit:
        step = len(ids) / limit
        # Always the newest, and every checkpoint of the bundle's size (the cosigned one).
        at_size = session.scalars(select(AuditCheckpoint.id).where(AuditCheckpoint.tree_size == size)).all()
        picked = {ids[int(i * step)] for i in range(limit - 1)} | {ids[-1]} | set(at_size)
        ids = sorted(picked)
    out: list[AuditCheckpoint] = []
    for i in range(0, len(ids), 500):
        out.extend(
            session.scalars(
                select(AuditCheckpoint)
                .where(AuditCheckpoint.id.in_(ids[i : i + 500]))
                .order_by(AuditCheckpoint.id)
            )
        )
    return out


@dataclass(frozen=True)
class ExportPlan:
    """What a bundle will hold, fixed up front so that streaming needs no long transaction."""

    header: dict[str, object]
    size: int
    notes: list[str]


def plan_export(
    session: Session, signer: AuditSigner, *, size: int | None = None, max_checkpoints: int = 1000
) -> ExportPlan:
    """Snapshot the bundle's extent: up to ``size`` (default: the latest checkpoint's size).

    Stopping at a signed size means every exported entry is covered by a signature.
    """
    if size is None:
        latest = latest_checkpoint(session)
        size = latest.tree_size if latest is not None else 0
    current = tree_size(session)
    if size > current:
        raise AuditLogError(f"tree size {size} is beyond the log's current size {current}")
    # No storage check here: a bundle of a damaged log is evidence, and the offline verifier
    # names the first missing or edited entry. (The export endpoint still fails closed when
    # the damage stops it from recording the export itself.)
    if (
        size
        and session.scalar(select(AuditCheckpoint.id).where(AuditCheckpoint.tree_size == size).limit(1))
        is None
    ):
        below = session.scalar(
            select(AuditCheckpoint.tree_size)
            .where(AuditCheckpoint.tree_size < size)
            .order_by(AuditCheckpoint.tree_size.desc())
            .limit(1)
        )
        raise NotSignedError(
            f"no signed checkpoint has tree size {size}; the nearest smaller signed size is {below}"
        )
    notes = [cp.note for cp in select_checkpoints(session, size, max(max_checkpoints, 1))]
    header = {
        "format": BUNDLE_FORMAT,
        "key_history": list(signer.history),
        "origin": signer.name,
        "vkey": signer.verifier_key.encode(),
        "public_key_pem": signer.public_key_pem,
        "tree_size": size,
        "checkpoints": len(notes),
        "exported_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }
    return ExportPlan(header, size, notes)


def iter_export(plan: ExportPlan, new_session: Callable[[], Session]) -> Iterator[bytes]:
    """Yield the bundle's lines; entries are read in chunks, each in its own short transaction.

    The log is append-only, so chunks read at different moments still form one snapshot, and
    on SQLite writers are not locked out while a large bundle streams.
    """
    yield json.dumps(plan.header, sort_keys=True).encode() + b"\n"
    for start in range(0, plan.size, EXPORT_CHUNK):
        end = min(start + EXPORT_CHUNK, plan.size)
        with new_session() as session:
            # Export what is stored, even if rows are missing: the verifier names the gap.
            bodies = session.scalars(
                select(AuditEntry.body)
                .where(AuditEntry.idx >= start, AuditEntry.idx < end)
                .order_by(AuditEntry.idx)
            ).all()
            session.rollback()
        yield b"".join(body.encode() + b"\n" for body in bodies)
    for note in plan.notes:
        yield json.dumps({"checkpoint": note}).encode() + b"\n"


__all__ = [
    "AuditLogError",
    "NotSignedError",
    "EntryFilter",
    "SearchResult",
    "VerifiedEntry",
    "verified_entry",
    "ProofError",
    "StoredTree",
    "checkpoint_json",
    "entry_json",
    "ExportPlan",
    "iter_export",
    "plan_export",
    "search",
    "select_checkpoints",
    "tree_size",
]
