"""Find the signed log's own entry behind a state the database claims.

A decision kept in an ordinary table (a request's state, a released file's hash, a
disclosure record) can be changed by anyone who can write the database, with no key: the log
still verifies, because the log was never touched, while the table says what was never
decided (tamper round 19: a request flipped to ``approved`` was downloaded; a released file's
hash pointed at a file the committee withheld). So where a stored decision hands something
to a caller, it is honoured only as an entry of the signed log states it: the entry's body
must hash to its leaf hash, and that leaf must be proven (RFC 9162 inclusion, recomputed
from the stored leaves) to sit under the root of the newest checkpoint whose note verifies
under the log's keys, signed by a key that signs now (a retired key vouches for nothing
new, as in `tre.audit.guard`). Rows an insider rewrites, re-hashes or appends behind the
log's back fail that proof; only the signing key's holder could pass it.

Candidates are narrowed by the indexed ``action`` and ``job_id`` columns, which are copies
an insider can edit: an edit there only hides an entry, so the caller refuses (fail closed).
Every field that decides is read from the verified body.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from tre.audit.guard import damaged, is_last_signed
from tre.audit.merkle import ProofError, verify_inclusion
from tre.audit.note import Checkpoint, NoteError, open_checkpoint_any
from tre.audit.service import AuditLogError, StoredTree, VerifiedEntry, verified_entry
from tre.audit.signing import AuditSigner, signer_for
from tre.store.models import AuditCheckpoint, AuditEntry

# More candidate rows than any one job's decisions make (a request is decided once); a
# flood of forged rows cannot make a lookup read the whole table.
MAX_CANDIDATES = 256


def newest_signed(session: Session, signer: AuditSigner) -> Checkpoint | None:
    """The newest stored checkpoint, if its note verifies and a key that signs now signed it
    (or it is the checkpoint kept beside the key); None for an empty log.

    Raises AuditLogDamaged otherwise: nothing in the database is then vouched for."""
    note = session.scalar(
        select(AuditCheckpoint.note)
        .order_by(AuditCheckpoint.tree_size.desc(), AuditCheckpoint.id.desc())
        .limit(1)
    )
    if note is None:
        return None
    try:
        cp, keys = open_checkpoint_any(note, signer.known_keys, signer.name)
    except NoteError as e:
        raise damaged(f"the newest stored checkpoint does not verify under the log's keys ({e})") from e
    if not set(keys) & set(signer.signing_keys) and not is_last_signed(signer, cp):
        raise damaged("the newest stored checkpoint is signed only by a retired key")
    return cp


def signed_entries(
    session: Session,
    action: str,
    job_id: str,
    wanted: Callable[[dict[str, object]], bool],
) -> list[VerifiedEntry]:
    """The entries of ``action`` about ``job_id`` for which ``wanted(body)`` holds, each proven
    to be in the tree the log signed; oldest first. Raises AuditLogDamaged when the log
    itself cannot vouch for anything (its newest checkpoint does not verify)."""
    cp = newest_signed(session, signer_for(session))
    if cp is None:
        return []
    rows = session.scalars(
        select(AuditEntry)
        .where(AuditEntry.action == action, AuditEntry.job_id == job_id, AuditEntry.idx < cp.tree_size)
        .order_by(AuditEntry.idx)
        .limit(MAX_CANDIDATES)
    ).all()
    found: list[VerifiedEntry] = []
    tree: StoredTree | None = None
    for row in rows:
        entry = verified_entry(row)
        if entry is None or entry.fields.get("action") != action or entry.fields.get("job_id") != job_id:
            continue
        if not wanted(entry.fields):
            continue
        tree = tree or StoredTree(session, cp.tree_size)
        try:
            verify_inclusion(
                entry.leaf_hash, entry.idx, cp.tree_size, tree.inclusion(entry.idx), cp.root_hash
            )
        except (ProofError, AuditLogError):
            continue  # a row rewritten with its own hash: not the leaf the log signed
        found.append(entry)
    return found
