"""Before the log signs anything, prove the tree extends its last signed checkpoint.

The database is not trusted to hold history: anyone who can edit it (no key needed) could
rewrite or truncate the tree and let the server sign the result. So the last checkpoint the
server signed is also kept *outside* the database, beside the key
(``keys/audit-last-checkpoint.note``), and every append and every checkpoint first checks,
under the tree lock, that the stored tree extends it: the same size must have the same
root (O(log n) from the frontier), a larger one needs an RFC 9162 consistency proof from the
stored leaves, a smaller one is a truncation. Otherwise tre refuses (a problem document /
one-line CLI error telling the admin what to do) and logs a CRITICAL alert on
``tre.audit.alert``: a damaged frontier never yields a checkpoint that contradicts an
earlier one.

The file is updated after the transaction commits (never for a rolled-back checkpoint) and
only ever moves forward; if it lags behind (crash between commit and write, or another
process's newer checkpoint), the next check proves consistency from the older one.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import cast

from sqlalchemy import Table, bindparam, event, func, select
from sqlalchemy.orm import Session

from tre import privatefile
from tre.audit.merkle import Frontier, ProofError, verify_consistency
from tre.audit.note import Checkpoint, NoteError, VerifierKey, open_checkpoint_any
from tre.audit.signing import PIN_FILE, AuditSigner
from tre.errors import TreError
from tre.store.models import AuditCheckpoint, AuditEntry

ALERT = logging.getLogger("tre.audit.alert")
# Servers route this logger to their handlers; a CLI without logging set up must not print it
# next to its one-line error (the error already says everything).
ALERT.addHandler(logging.NullHandler())
_PENDING = "tre_audit_pending_pins"
_PENDING_TIPS = "tre_audit_pending_tips"
_pin_cache: dict[Path, tuple[tuple[int, int, int], Checkpoint, tuple[VerifierKey, ...]]] = {}
_pin_lock = threading.Lock()
# The newest checkpoint a transaction of this process signed and committed, per pin file, set
# the moment the commit returns. Another request's append can take the tree lock right after
# that commit, before the pin file is written (PostgreSQL releases the row lock at commit):
# checked against the older file it would need a consistency proof from stored leaves every
# time. This checkpoint is at least as new as the file and was itself proven to extend it.
# Kept with the frontier it was signed from, which this process computed itself (never read
# back from the database): see `_extends_known_frontier`.
_committed_here: dict[Path, tuple[Checkpoint, tuple[bytes, ...]]] = {}
# A lagging pin is checked by replaying the newer leaves onto its frontier when at most this
# many entries were added since; a longer gap takes the RFC 9162 proof from stored leaves.
REPLAY_MAX = 256


class AuditLogDamaged(TreError):
    """The stored log contradicts what was signed, or rows are missing: nothing is audited."""

    status = 503
    title = "Audit log damaged"
    slug = "audit-log-damaged"


def damaged(what: str) -> AuditLogDamaged:
    """Alert and build the error every caller shows (API problem, one CLI line)."""
    ALERT.critical("audit log integrity failure: %s", what)
    return AuditLogDamaged(
        f"audit log damaged: {what}. Every audited action is refused until an admin restores the "
        "audit tables (audit_entries, audit_state, audit_checkpoints) from a backup that contains "
        f"the last signed checkpoint (keys/{PIN_FILE}) and runs `tre audit check`; "
        "see 'Recovery' in docs/audit.md"
    )


def pin_path(signer: AuditSigner) -> Path | None:
    return None if signer.keys_dir is None else signer.keys_dir / PIN_FILE


def load_pin(signer: AuditSigner) -> Checkpoint | None:
    """The last checkpoint this log signed, as kept beside the key (verified), if any."""
    got = _load_pin_signed(signer)
    return got[0] if got else None


def _load_pin_signed(signer: AuditSigner) -> tuple[Checkpoint, tuple[VerifierKey, ...]] | None:
    """The pin and the log keys whose signatures on it verify."""
    path = pin_path(signer)
    if path is None:
        return None
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
    with _pin_lock:
        hit = _pin_cache.get(path)
        if hit is not None and hit[0] == stamp:
            return hit[1], hit[2]
    try:
        cp, keys = open_checkpoint_any(path.read_text(), signer.known_keys, signer.name)
    except (NoteError, OSError, UnicodeDecodeError) as e:
        raise damaged(f"the last signed checkpoint {path} cannot be read or verified ({e})") from e
    with _pin_lock:
        _pin_cache[path] = (stamp, cp, tuple(keys))
    return cp, tuple(keys)


def _bootstrap_pin(session: Session, signer: AuditSigner) -> Checkpoint | None:
    """No pin file yet (a log from before it existed): start from the newest checkpoint in the
    database that verifies under the log's keys, with a warning."""
    rows = session.scalars(
        select(AuditCheckpoint)
        .order_by(AuditCheckpoint.tree_size.desc(), AuditCheckpoint.id.desc())
        .limit(20)
    )
    for row in rows:
        try:
            cp, _ = open_checkpoint_any(row.note, signer.known_keys, signer.name)
        except NoteError:
            continue
        ALERT.warning("no %s yet: pinning the database's checkpoint of size %d", PIN_FILE, cp.tree_size)
        return cp
    return None


def check_extends_pin(session: Session, signer: AuditSigner, size: int, frontier: Frontier) -> None:
    """Raise AuditLogDamaged unless the stored tree (size, frontier) extends the last signature."""
    if signer.keys_dir is None:
        return
    pending = _pending_in(session, signer)
    known: tuple[bytes, ...] | None = None
    if pending is not None:
        # This transaction already signed a checkpoint (verified against the pin when it was
        # made): check against it, which is the same size as the tree in the common case.
        m, pin_root = pending
    else:
        pin = load_pin(signer)
        path = pin_path(signer)
        with _pin_lock:
            mine = _committed_here.get(path) if path is not None else None
        if mine is not None and (
            pin is None
            or mine[0].tree_size > pin.tree_size
            or (mine[0].tree_size == pin.tree_size and mine[0].root_hash == pin.root_hash)
        ):
            pin, known = mine
        pin = pin or _bootstrap_pin(session, signer)
        if pin is None:
            return
        m, pin_root = pin.tree_size, pin.root_hash
    if size < m:
        raise damaged(
            f"the database's tree has {size} entries but the log signed a checkpoint of {m}: entries "
            "were removed or the database was restored from an older backup"
        )
    root = frontier.root()
    if size == m:
        if root != pin_root:
            raise damaged(
                f"the stored tree of {size} entries no longer has the root the log signed: "
                "its state or entries were edited"
            )
        return
    if known is not None and size - m <= REPLAY_MAX and _extends_known_frontier(session, m, known, frontier):
        return
    from tre.audit.service import AuditLogError, StoredTree

    try:
        proof = StoredTree(session, size).consistency(m)
        verify_consistency(m, size, pin_root, root, proof)
    except (ProofError, AuditLogError) as e:
        raise damaged(
            f"the stored tree of {size} entries cannot be proven to extend the last signed "
            f"checkpoint of {m} entries ({e})"
        ) from e


_ENTRIES = cast(Table, AuditEntry.__table__)
_LAST_ENTRY = select(_ENTRIES.c.body, _ENTRIES.c.leaf_hash).where(_ENTRIES.c.idx == bindparam("idx"))
_LEAVES_FROM = (
    select(_ENTRIES.c.leaf_hash)
    .where(_ENTRIES.c.idx >= bindparam("start"), _ENTRIES.c.idx < bindparam("end"))
    .order_by(_ENTRIES.c.idx)
)


def _extends_known_frontier(session: Session, m: int, known: tuple[bytes, ...], frontier: Frontier) -> bool:
    """Whether replaying stored leaves m..size-1 onto the frontier of the pinned tree gives
    the stored frontier.

    Why this proves as much as a consistency proof: ``known`` is the frontier this process
    signed the pinned checkpoint from, held in memory (the database cannot have edited it),
    so the pinned tree is exactly the tree of that frontier. Appending the stored leaves to it
    and arriving at the stored frontier shows the stored tree is the pinned tree plus those
    leaves. It reads only the new leaves, where the proof from stored leaves reads whole
    subtrees below the hash cache's size: on PostgreSQL the next request routinely takes the
    tree lock between a commit and the pin file's update, so this is the common case there.
    False sends the caller to the full proof, which gives the damage its precise message.
    """
    leaves = stored_leaves(session, m, frontier.size)
    if len(leaves) != frontier.size - m:
        return False
    replay = Frontier(m, known)
    for leaf in leaves:
        replay.append(leaf)
    return replay.hashes == frontier.hashes


def stored_leaves(session: Session, start: int, end: int) -> list[bytes]:
    """The stored leaf hashes of entries start..end-1 in order (fewer when rows are missing:
    the caller decides what that means)."""
    rows = session.connection().execute(_LEAVES_FROM, {"start": start, "end": end}).scalars()
    return [bytes(r) for r in rows]


def check_last_entry(session: Session, size: int, frontier: Frontier) -> str:
    """Hex leaf hash of entry size-1 (the next entry's ``prev``), checked against its body.

    A missing last row, or one whose body or leaf hash was edited, is damage, not a crash.
    """
    row = session.connection().execute(_LAST_ENTRY, {"idx": size - 1}).one_or_none()
    if row is None:
        raise damaged(f"entry {size - 1}, the newest, is missing from the database (the tree holds {size})")
    from tre.audit.merkle import leaf_hash

    leaf = bytes(row.leaf_hash)
    if leaf_hash(row.body.encode()) != leaf or (size % 2 == 1 and frontier.hashes[-1] != leaf):
        raise damaged(f"entry {size - 1}, the newest, was edited in the database")
    return leaf.hex()


_CHECKPOINTS = cast(Table, AuditCheckpoint.__table__)
_NEWEST_NOTE = (
    select(_CHECKPOINTS.c.note).order_by(_CHECKPOINTS.c.tree_size.desc(), _CHECKPOINTS.c.id.desc()).limit(1)
)
# The last stored note that verified, per log name, with the keys that signed it: appends
# re-check the same note (the one the previous append signed) over and over, and a note that
# verified once stays authentic.
_tip_cache: dict[str, tuple[str, Checkpoint, tuple[VerifierKey, ...]]] = {}


def check_signed_tip(
    session: Session, signer: AuditSigner, size: int, frontier: Frontier
) -> Checkpoint | None:
    """Raise AuditLogDamaged unless a checkpoint the log signed covers exactly the stored tree;
    return that checkpoint (None for the empty log).

    Why: every append writes its entries and a checkpoint signed over them in one transaction,
    so any committed tree has a stored checkpoint of its own size and root. Entries an insider
    slipped into the tables (right ``idx``, ``prev``, leaf hash and frontier) still *extend*
    everything signed, so `check_extends_pin` accepts them; without this check the next
    append or periodic checkpoint would sign them, and forged entries (say, a DAC vote) would
    verify for every auditor. The note is verified, never the row's size and root columns.
    """
    if size == 0:
        return None
    note = session.connection().execute(_NEWEST_NOTE).scalar_one_or_none()
    cp: Checkpoint | None = None
    signed_by: tuple[VerifierKey, ...] = ()
    if note is not None:
        with _pin_lock:
            hit = _tip_cache.get(signer.name)
        if hit is not None and hit[0] == note:
            _, cp, signed_by = hit
        else:
            try:
                cp, keys = open_checkpoint_any(note, signer.known_keys, signer.name)
            except NoteError:
                cp = None
            else:
                signed_by = tuple(keys)
                with _pin_lock:
                    _tip_cache[signer.name] = (note, cp, signed_by)
    if cp is None:
        raise damaged(
            f"the newest stored checkpoint does not verify under the log's keys (edited, forged "
            f"or missing), so nothing vouches for the stored tree of {size} entries"
        )
    if cp.tree_size != size or cp.root_hash != frontier.root():
        raise damaged(
            f"the stored tree of {size} entries is not covered by a checkpoint the log signed "
            f"(the newest covers {cp.tree_size}): entries were added to the database behind the log's back"
        )
    if not set(signed_by) & set(signer.signing_keys) and not is_last_signed(signer, cp):
        # A retired key (kept for verifying history, perhaps rotated out because it leaked)
        # must not vouch for a new tip: only a key that signs now, or the very checkpoint this
        # log last signed before its key rotated (the pin, kept beside the key).
        raise damaged(
            f"the newest stored checkpoint (size {size}) is signed only by a retired key and is "
            "not the last checkpoint this log signed: entries were added with a retired key"
        )
    return cp


def is_last_signed(signer: AuditSigner, cp: Checkpoint) -> bool:
    """Whether ``cp`` is the checkpoint kept beside the key (or committed by this process):
    same signed text, whatever cosignatures witnesses added to the stored copy since.

    The copy beside the key counts only with a signature of a key that signs *now* (a
    rotation co-signs it with the new key, `tre.audit.signing`): signed by a retired key
    alone, it is what anyone holding that key and the state folder could have written, with
    a rewritten history in the database to match (round 15)."""

    def same(other: Checkpoint | None) -> bool:
        return other is not None and (other.tree_size, other.root_hash, other.extensions) == (
            cp.tree_size,
            cp.root_hash,
            cp.extensions,
        )

    path = pin_path(signer)
    with _pin_lock:
        mine = _committed_here.get(path) if path is not None else None
    if same(mine[0] if mine else None):
        return True
    pinned = _load_pin_signed(signer)
    return pinned is not None and same(pinned[0]) and bool(set(pinned[1]) & set(signer.signing_keys))


def check_storage(session: Session, size: int) -> None:
    """Every index 0..size-1 is stored exactly once (a cheap count; deletions show up here)."""
    count, top = session.execute(select(func.count(AuditEntry.idx), func.max(AuditEntry.idx))).one()
    if count != size or (size and top != size - 1):
        raise damaged(
            f"the database holds {count} entries (highest index {top}) but the tree has {size}: "
            "entries were deleted or added behind the log's back"
        )


def remember_after_commit(
    session: Session, signer: AuditSigner, cp: Checkpoint, frontier: Sequence[bytes]
) -> None:
    """Write ``cp.note`` beside the key once (and only if) this transaction commits;
    ``frontier`` is the one ``cp`` was signed from (kept in memory, see `_committed_here`)."""
    path = pin_path(signer)
    if path is not None:
        session.info.setdefault(_PENDING, []).append((path, cp, tuple(frontier), tuple(signer.signing_keys)))
    # The next append's signed-tip check finds this very note: known good, no need to verify.
    session.info.setdefault(_PENDING_TIPS, []).append((signer.name, cp, tuple(signer.signing_keys)))


def _pending_in(session: Session, signer: AuditSigner) -> tuple[int, bytes] | None:
    """(size, root) of the newest checkpoint this transaction signed for this log, if any."""
    path = pin_path(signer)
    mine = [(cp.tree_size, cp.root_hash) for p, cp, *_ in session.info.get(_PENDING, ()) if p == path]
    return max(mine, key=lambda x: x[0]) if mine else None


def write_pin(path: Path, note: str, size: int) -> tuple[int, int, int] | None:
    """Move the pin forward to ``note`` (never backwards), atomically, under a file lock.

    Returns the file's stamp (mtime, size, inode: what `load_pin` compares) when it wrote
    the file, None when the pin was already newer.
    """
    lock_fd = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        try:
            current = int(path.read_text().split("\n", 2)[1])
        except (FileNotFoundError, IndexError, ValueError):
            current = -1
        if size < current:
            return None
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(note)
            f.flush()
            # Durable before the name moves, and the folder after (privatefile): a power cut
            # must not leave the pin behind (or empty) while the database holds its commit.
            os.fsync(f.fileno())
            # Taken from the file written, not the path after the rename: a rename keeps
            # inode and mtime, and another process may replace the path right after ours.
            st = os.fstat(f.fileno())
        os.replace(tmp, path)
        privatefile.fsync_dir(path.parent)
        return (st.st_mtime_ns, st.st_size, st.st_ino)
    finally:
        os.close(lock_fd)


@event.listens_for(Session, "after_commit")
def _write_pending(session: Session) -> None:
    tips = session.info.pop(_PENDING_TIPS, None)
    if tips:
        with _pin_lock:
            for name, cp, keys in tips:  # in signing order: the last is the newest
                _tip_cache[name] = (cp.note, cp, keys)
    pending = session.info.pop(_PENDING, None)
    if not pending:
        return
    newest: dict[Path, tuple[Checkpoint, tuple[bytes, ...], tuple[VerifierKey, ...]]] = {}
    for path, cp, frontier, keys in pending:
        if path not in newest or cp.tree_size >= newest[path][0].tree_size:
            newest[path] = (cp, frontier, keys)
    with _pin_lock:
        for path, (cp, frontier, _) in newest.items():
            known = _committed_here.get(path)
            if known is None or cp.tree_size > known[0].tree_size:
                _committed_here[path] = (cp, frontier)
    for path, (cp, _, keys) in newest.items():
        try:
            stamp = write_pin(path, cp.note, cp.tree_size)
        except OSError:
            ALERT.exception("could not record the last signed checkpoint in %s", path)
            continue
        if stamp is not None:
            # This process signed it: the next append need not read and verify it again.
            with _pin_lock:
                _pin_cache[path] = (stamp, cp, keys)


@event.listens_for(Session, "after_rollback")
def _drop_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)
    session.info.pop(_PENDING_TIPS, None)
