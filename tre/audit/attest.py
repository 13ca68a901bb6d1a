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

from collections.abc import Callable, Sequence

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from tre.audit.guard import damaged, is_last_signed
from tre.audit.merkle import ProofError, verify_inclusion
from tre.audit.note import Checkpoint, NoteError, open_checkpoint_any
from tre.audit.service import AuditLogError, StoredTree, VerifiedEntry, body_field, verified_entry
from tre.audit.signing import AuditSigner, signer_for
from tre.store.models import AuditCheckpoint, AuditEntry

# More candidate rows than any one job's decisions make (a request is decided once); a
# flood of forged rows cannot make a lookup read the whole table.
MAX_CANDIDATES = 256


def newest_signed(session: Session, signer: AuditSigner | None = None) -> Checkpoint | None:
    """The newest stored checkpoint, if its note verifies and a key that signs now signed it
    (or it is the checkpoint kept beside the key); None for an empty log (no key is loaded,
    nor made, for it). ``signer``: the session's (`signer_for`) unless given.

    Raises AuditLogDamaged otherwise: nothing in the database is then vouched for."""
    note = session.scalar(
        select(AuditCheckpoint.note)
        .order_by(AuditCheckpoint.tree_size.desc(), AuditCheckpoint.id.desc())
        .limit(1)
    )
    if note is None:
        return None
    signer = signer or signer_for(session)
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
    job_id: str | None,
    wanted: Callable[[dict[str, object]], bool],
    *,
    dataset_id: str | None = None,
) -> list[VerifiedEntry]:
    """The entries of ``action`` about ``job_id`` (or, with ``job_id`` None, ``dataset_id``)
    for which ``wanted(body)`` holds, each proven to be in the tree the log signed; oldest
    first. Raises AuditLogDamaged when the log itself cannot vouch for anything (its newest
    checkpoint does not verify)."""
    if (job_id is None) == (dataset_id is None):
        raise ValueError("name exactly one of job_id and dataset_id")
    cp = newest_signed(session)
    if cp is None:
        return []
    about = AuditEntry.job_id == job_id if job_id is not None else AuditEntry.dataset_id == dataset_id
    rows = session.scalars(
        select(AuditEntry)
        .where(AuditEntry.action == action, about, AuditEntry.idx < cp.tree_size)
        .order_by(AuditEntry.idx)
        .limit(MAX_CANDIDATES)
    ).all()
    found: list[VerifiedEntry] = []
    tree: StoredTree | None = None
    for row in rows:
        entry = verified_entry(row)
        if entry is None or entry.fields.get("action") != action:
            continue
        if entry.fields.get("job_id" if job_id is not None else "dataset_id") != (job_id or dataset_id):
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


def all_signed(
    session: Session, actions: Sequence[str], signer: AuditSigner | None = None
) -> list[VerifiedEntry]:
    """Every entry whose hashed body names one of ``actions``, in the tree the log signed,
    oldest first: for a check of a whole table against the log (`tre admin doctor`).

    The root of all stored leaves up to the newest signed checkpoint is recomputed once and
    must be that checkpoint's root, so every stored leaf hash is the signed one; each entry's
    body must hash to its leaf. The entries are found by the body's ``action`` (extracted by
    the database) or by the ``action`` column, so an edited column alone does not hide the
    entry that contradicts a table; to hide one, both must be edited, and such a body no
    longer matches its leaf (`tre audit check` names it). Raises AuditLogDamaged when the
    stored tree is not the signed one (`tre audit check` then says where)."""
    cp = newest_signed(session, signer)
    if cp is None:
        return []
    try:
        root = StoredTree(session, cp.tree_size).root()
    except AuditLogError as e:
        raise damaged(str(e)) from e
    if root != cp.root_hash:
        raise damaged(f"the stored entries do not hash to the root the log signed at size {cp.tree_size}")
    named = or_(AuditEntry.action.in_(list(actions)), body_field(session, "action").in_(list(actions)))
    rows = session.scalars(
        select(AuditEntry).where(named, AuditEntry.idx < cp.tree_size).order_by(AuditEntry.idx)
    )
    found = []
    for row in rows:
        entry = verified_entry(row)
        if entry is None:
            raise damaged(f"entry {row.idx} does not match its signed leaf hash")
        if entry.fields.get("action") in actions:  # not a column edited to look like one
            found.append(entry)
    return found
