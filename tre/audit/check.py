"""``tre audit check``: the admin's full integrity check of the stored log, before and after repair.

Reads every stored entry once and checks what the fast paths only sample: dense indices, each
body against its leaf hash, the hash chain, the frontier against the leaves, every stored
checkpoint against the recomputed tree, and consistency with the last checkpoint kept beside
the key; that no batch of the refusal spool was written twice (put back in the spool after
the table that remembers written batches was emptied); and that each row's searchable
columns (time, actor, action, ids) are the copies of its body they claim to be: nothing reads
them for search, display or verification (the body is what is hashed), but a tool reading
the table directly would be misled, so an edit of them is named too. It changes nothing.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tre.audit.guard import is_last_signed, load_pin
from tre.audit.log import format_ts
from tre.audit.merkle import GENESIS_PREV, Frontier, ProofError, TreeLevels, leaf_hash
from tre.audit.note import NoteError, open_checkpoint_any
from tre.audit.refusal_spool import BATCH_FIELD
from tre.audit.signing import AuditSigner
from tre.store.models import AuditCheckpoint, AuditEntry, AuditState

_SPOOLED = f'"{BATCH_FIELD}":'
COPIES = (
    AuditEntry.timestamp,
    AuditEntry.actor,
    AuditEntry.action,
    AuditEntry.project_id,
    AuditEntry.dataset_id,
    AuditEntry.job_id,
)


def _copies_differ(body: str, copies: list[Any]) -> str | None:
    """The first column whose value is not the body's (None if all agree)."""
    try:
        fields = json.loads(body)
    except ValueError:
        return "body"  # not JSON: named by the chain check too
    ts, *rest = copies
    if ts is None or format_ts(ts) != fields.get("ts"):
        return "timestamp"
    for column, value in zip(("actor", "action", "project_id", "dataset_id", "job_id"), rest, strict=True):
        if value != fields.get(column):
            return column
    return None


def check_log(session: Session, signer: AuditSigner, chunk: int = 20_000) -> tuple[int, list[str]]:
    """(tree size, problems found); no problems means the stored log is intact."""
    problems: list[str] = []
    state = session.execute(select(AuditState.tree_size, AuditState.frontier)).one_or_none()
    size = int(state.tree_size) if state else 0
    leaves: list[bytes] = []
    prev = GENESIS_PREV
    after = -1
    spooled: dict[str, int] = {}  # an entry written from the refusal spool (all but idx, prev) -> idx
    while True:
        rows = session.execute(
            select(AuditEntry.idx, AuditEntry.body, AuditEntry.leaf_hash, *COPIES)
            .where(AuditEntry.idx > after)
            .order_by(AuditEntry.idx)
            .limit(chunk)
        ).all()
        if not rows:
            break
        for idx, body, stored, *copies in rows:
            if idx != len(leaves):
                problems.append(f"entries {len(leaves)}..{idx - 1} are missing")
                return size, problems
            leaf = leaf_hash(body.encode())
            if leaf != bytes(stored):
                problems.append(f"entry {idx}: body does not match its stored leaf hash")
            if not body.startswith(f'{{"idx":{idx},"prev":"{prev}",'):
                problems.append(f"entry {idx}: index or hash-chain link is wrong")
            if leaf == bytes(stored) and (moved := _copies_differ(body, copies)):
                problems.append(
                    f"entry {idx}: column {moved} differs from the hashed body (edited in the table)"
                )
            if _SPOOLED in body and (first := spooled.setdefault(body.split(",", 2)[-1], idx)) != idx:
                problems.append(
                    f"entry {idx}: the same spooled refusal as entry {first} (a batch of the refusal "
                    "spool written twice: put back in the spool)"
                )
            leaves.append(leaf)
            prev = leaf.hex()
        after = rows[-1].idx
    if len(leaves) != size:
        problems.append(f"the state row says {size} entries, the table holds {len(leaves)}")
    tree = TreeLevels(leaves)
    if state is not None:
        try:
            frontier = Frontier(size, [bytes.fromhex(h) for h in state.frontier or []])
            if size <= len(leaves) and frontier.root() != tree.root(size):
                problems.append("the stored frontier does not match the entries")
        except (ProofError, ValueError) as e:
            problems.append(f"the stored frontier is corrupt: {e}")
    keys = signer.known_keys
    covered = 0  # entries [0, covered) are vouched for by a valid signed checkpoint
    newest = None  # (checkpoint, keys that signed it) of the newest row that verifies
    for row in session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.id)):
        try:
            cp, signed_by = open_checkpoint_any(row.note, keys, signer.name)
        except NoteError as e:
            problems.append(f"checkpoint row {row.id}: {e}")
            continue
        if newest is None or cp.tree_size >= newest[0].tree_size:  # the guard's order: size, then row
            newest = (cp, signed_by)
        if cp.tree_size > len(leaves) or tree.root(cp.tree_size) != cp.root_hash:
            problems.append(f"checkpoint of size {cp.tree_size} does not match the stored entries")
        else:
            covered = max(covered, cp.tree_size)
    if covered < len(leaves):
        # Every append signs a checkpoint over its entries in the same transaction: entries
        # beyond the newest one were written behind the log's back.
        problems.append(
            f"entries {covered}..{len(leaves) - 1} are not covered by any checkpoint the log signed "
            "(added to the database behind the log's back)"
        )
    if newest is not None and not set(newest[1]) & set(signer.signing_keys):
        cp = newest[0]
        if not is_last_signed(signer, cp):
            # The same rule the server applies before it signs (guard.check_signed_tip): a
            # retired key, kept only to verify history, must not vouch for the tip.
            problems.append(
                f"the newest checkpoint (size {cp.tree_size}) is signed only by a retired key and is "
                "not the last checkpoint this log signed: entries were added with a retired key"
            )
    try:
        pin = load_pin(signer)
    except Exception as e:  # noqa: BLE001 - report whatever makes the pin unusable
        problems.append(str(e))
        pin = None
    if pin is not None and (pin.tree_size > len(leaves) or tree.root(pin.tree_size) != pin.root_hash):
        problems.append(
            f"the stored entries do not contain the last signed checkpoint (size {pin.tree_size}) "
            "kept beside the key: restore them from a backup"
        )
    return size, problems
