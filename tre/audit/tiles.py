"""C2SP tlog-tiles: the log's tree as static, cacheable tiles, so standard monitors can follow it.

* ``tile/<L>/<N>[.p/<W>]``: the hashes of nodes ``256N .. 256N+W-1`` at tree level ``8L``
  (each such node covers ``256**L`` leaves), 32 bytes each; a full tile holds 256 hashes and
  never changes, a partial one (``.p/W``) holds the first W that exist so far.
* ``tile/entries/<N>[.p/<W>]``: entries ``256N ..`` as the exact hashed bodies, each prefixed
  by its length as a big-endian uint16.
* ``<N>`` is written in groups of three digits, all but the last prefixed with ``x``:
  1234067 is ``x001/x234/067``.

Tiles describe the tree of the newest *signed* checkpoint (`signed_tree_size`), never rows
beyond it: entries an insider wrote into the tables behind the log's back (which the server
refuses to sign) must not be served as part of the log, least of all in a full tile marked
immutable that a client keeps.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from tre.audit.merkle import TreeLevels
from tre.audit.note import NoteError, open_checkpoint_any
from tre.audit.service import StoredTree, tree_size
from tre.audit.signing import AuditSigner
from tre.audit.tilepath import TILE_HEIGHT, TILE_WIDTH, encode_index
from tre.store.models import AuditCheckpoint, AuditEntry

_GROUP = re.compile(r"^(?:x\d{3}/)*\d{3}$")
_LEVEL = re.compile(r"0|[1-9][0-9]?")


def signed_tree_size(session: Session, signer: AuditSigner) -> int:
    """The size of the newest stored checkpoint whose note verifies under the log's keys.

    Raises AuditLogDamaged when that note does not verify or covers more than is stored: the
    tiles then answer 503 like the rest of the audit API, never unsigned rows.
    """
    from tre.audit.guard import damaged

    note = session.scalar(
        select(AuditCheckpoint.note)
        .order_by(AuditCheckpoint.tree_size.desc(), AuditCheckpoint.id.desc())
        .limit(1)
    )
    if note is None:
        return 0
    try:
        cp, _ = open_checkpoint_any(note, signer.known_keys, signer.name)
    except NoteError as e:
        raise damaged(f"the newest stored checkpoint does not verify under the log's keys ({e})") from e
    if cp.tree_size > tree_size(session):
        raise damaged(f"the newest signed checkpoint covers {cp.tree_size} entries, fewer are stored")
    return cp.tree_size


class TileNotFound(LookupError):
    """No such tile (malformed path, or beyond the tree of the served checkpoint)."""


def parse_index(path: str) -> tuple[int, int | None]:
    """``x001/x234/067[.p/W]`` -> (index, width or None for a full tile)."""
    width: int | None = None
    if ".p/" in path:
        path, w = path.split(".p/", 1)
        if not re.fullmatch(r"[1-9]\d{0,2}", w) or int(w) >= TILE_WIDTH:
            raise TileNotFound("partial tile width must be 1..255")
        width = int(w)
    # At most 7 groups (a uint64 index has 20 digits): longer paths are refused before int()
    # sees them (thousands of digits make Python raise, which was a 500).
    if path.count("/") > 6 or not _GROUP.match(path):
        raise TileNotFound("malformed tile index")
    index = int(path.replace("x", "").replace("/", ""))
    # One name per tile (x000/005 is not 005): a client or cache never sees a tile twice.
    if index >= 2**64 or encode_index(index) != path:
        raise TileNotFound("tile index not in its canonical form")
    return index, width


def _width(available: int, index: int, width: int | None) -> int:
    """How many items to serve, or TileNotFound when the tree does not hold them yet."""
    have = min(available - index * TILE_WIDTH, TILE_WIDTH)
    want = TILE_WIDTH if width is None else width
    if have < want:
        raise TileNotFound("tile not available at this tree size")
    return want


def parse_level(text: str) -> int:
    """A tile level as C2SP spells it: decimal ASCII 0..63, no leading zero. Parsed here, not
    by the web framework, which reads "00", "+0", "0_0" and " 0" as 0: one tile, many URLs."""
    if not _LEVEL.fullmatch(text) or int(text) > 63:
        raise TileNotFound("tile level must be 0..63, in decimal without leading zeroes")
    return int(text)


def hash_tile(session: Session, tree_size: int, level: int, path: str) -> bytes:
    """The bytes of hash tile ``level``/``path`` of the tree of ``tree_size`` leaves."""
    if not 0 <= level <= 63:
        raise TileNotFound("tile level must be 0..63")
    index, width = parse_index(path)
    span = 1 << (TILE_HEIGHT * level)  # leaves per node at this level
    w = _width(tree_size // span, index, width)
    first = index * TILE_WIDTH
    tree = StoredTree(session, tree_size)
    if level == 0:
        return b"".join(tree.leaves(first, first + w))
    if level == 1:
        leaves = tree.leaves(first * span, (first + w) * span)
        return b"".join(TreeLevels(leaves).levels[TILE_HEIGHT][:w])
    return b"".join(tree.range_hash((first + i) * span, (first + i + 1) * span) for i in range(w))


@dataclass(frozen=True)
class EntryBundle:
    """An entries tile and which entries it holds: the API records the read by the entries
    served (``audit.entries_read``), from the one parse of the tile path that chose them."""

    first: int
    count: int
    data: bytes


def entry_bundle(session: Session, tree_size: int, path: str) -> EntryBundle:
    """Entries tile: the exact hashed bodies, each behind a big-endian uint16 length."""
    index, width = parse_index(path)
    w = _width(tree_size, index, width)
    first = index * TILE_WIDTH
    bodies = session.scalars(
        select(AuditEntry.body)
        .where(AuditEntry.idx >= first, AuditEntry.idx < first + w)
        .order_by(AuditEntry.idx)
    ).all()
    if len(bodies) != w:
        from tre.audit.guard import damaged

        raise damaged(f"entries are missing in [{first}, {first + w})")
    out = bytearray()
    for body in bodies:
        data = body.encode()
        out += len(data).to_bytes(2, "big") + data
    return EntryBundle(first, w, bytes(out))
