"""Check a log served as C2SP tlog-tiles, by the server or by any mirror, against a signed root.

A mirror (a cache, a copy a monitor keeps, a CDN) is not trusted for anything: it may drop,
add, reorder or alter hashes and entries, serve a tile of the wrong width, or serve an older
signed checkpoint. What makes its answer trustworthy is only that it reproduces a checkpoint
signed by a key the auditor pinned, and that this checkpoint extends the one the auditor saw
before. So every byte fetched is checked:

* each entry of an entry bundle must hash (RFC 6962 leaf hash) to the hash at its place in
  the level-0 tile, and a bundle holds exactly the tile's width of entries, nothing after;
* the level-0 tiles must reproduce the signed root hash at the checkpoint's size;
* every tile of a higher level that the tree of that size holds must equal the subtree hashes
  computed from the leaves (a mirror serving a wrong level-1 tile is named, not ignored);
* an earlier checkpoint (pinned, or one another auditor saw) must be a prefix of that tree:
  its root is recomputed from the same leaves, so no consistency proof from the mirror is
  needed, and a replayed older checkpoint is refused as one.

Depends only on the standard library and the offline verifier's modules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tre.audit.merkle import TreeLevels, leaf_hashes
from tre.audit.note import Checkpoint, NoteError, VerifierKey, open_checkpoint_any
from tre.audit.tilepath import TILE_HEIGHT, TILE_WIDTH, encode_index

HASH_SIZE = 32
# Fetch(path relative to the tiles prefix) -> body. Raises TileError (or lets the transport's
# own error through) when the resource cannot be had.
Fetch = Callable[[str], bytes]


class TileError(ValueError):
    """The tiles (or the checkpoint) a log or mirror served do not match what was signed."""


@dataclass(frozen=True)
class TiledLog:
    """A tiled log checked against its signed checkpoint: the entries, in order."""

    checkpoint: Checkpoint
    entries: list[bytes]
    tree: TreeLevels


def tile_suffix(index: int, width: int) -> str:
    """``<N>`` or ``<N>.p/<W>`` for tile ``index`` holding ``width`` items (1..256)."""
    return encode_index(index) + ("" if width == TILE_WIDTH else f".p/{width}")


def _tiles_of(count: int) -> list[tuple[int, int]]:
    """(index, width) of the tiles covering ``count`` items, the last one partial if need be."""
    return [(n, min(TILE_WIDTH, count - n * TILE_WIDTH)) for n in range(-(-count // TILE_WIDTH))]


def _hashes(data: bytes, width: int, where: str) -> list[bytes]:
    if len(data) != width * HASH_SIZE:
        raise TileError(f"{where} is {len(data)} bytes, not {width} hashes of {HASH_SIZE}")
    return [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]


def _bundle(data: bytes, width: int, where: str) -> list[bytes]:
    """The entries of a bundle of ``width`` entries: uint16 big-endian length, then the bytes."""
    out: list[bytes] = []
    pos = 0
    while pos < len(data) and len(out) < width:
        if pos + 2 > len(data):
            raise TileError(f"{where} ends inside a length prefix")
        n = int.from_bytes(data[pos : pos + 2], "big")
        if pos + 2 + n > len(data):
            raise TileError(f"{where} ends inside entry {len(out)}")
        out.append(data[pos + 2 : pos + 2 + n])
        pos += 2 + n
    if len(out) != width or pos != len(data):
        raise TileError(f"{where} does not hold exactly {width} entries")
    return out


def verify_tiles(
    fetch: Fetch,
    note: str,
    keys: list[VerifierKey],
    origin: str,
    earlier: list[Checkpoint] | None = None,
) -> TiledLog:
    """Check everything ``fetch`` serves for the tree of ``note`` (a checkpoint signed by one
    of ``keys``); ``earlier`` checkpoints must be prefixes of that tree. Raises TileError."""
    try:
        cp, _ = open_checkpoint_any(note, keys, origin)
    except NoteError as e:
        raise TileError(f"the checkpoint does not verify under the log's keys: {e}") from e
    size = cp.tree_size
    leaves: list[bytes] = []
    entries: list[bytes] = []
    for index, width in _tiles_of(size):
        suffix = tile_suffix(index, width)
        hashes = _hashes(fetch(f"tile/0/{suffix}"), width, f"tile 0/{suffix}")
        bundle = _bundle(fetch(f"tile/entries/{suffix}"), width, f"entry bundle {suffix}")
        for i, (want, got) in enumerate(zip(hashes, leaf_hashes(bundle), strict=True)):
            if want != got:
                n = index * TILE_WIDTH + i
                raise TileError(f"entry {n} in bundle {suffix} does not hash to its level-0 tile hash")
        leaves += hashes
        entries += bundle
    tree = TreeLevels(leaves)
    if tree.root(size) != cp.root_hash:
        raise TileError(f"the level-0 tiles do not reproduce the signed root of the tree of {size} entries")
    level = 1
    while size >> (TILE_HEIGHT * level):
        nodes = tree.levels[TILE_HEIGHT * level]
        for index, width in _tiles_of(size >> (TILE_HEIGHT * level)):
            suffix = tile_suffix(index, width)
            where = f"tile {level}/{suffix}"
            if _hashes(fetch(f"tile/{level}/{suffix}"), width, where) != list(
                nodes[index * TILE_WIDTH : index * TILE_WIDTH + width]
            ):
                raise TileError(f"{where} does not match the subtrees of the signed tree")
        level += 1
    for old in earlier or []:
        if old.tree_size > size:
            raise TileError(
                f"the served checkpoint covers {size} entries, one of {old.tree_size} was seen before: "
                "an old checkpoint replayed, or the log truncated; or a mirror that has not yet "
                "copied the newer one (check the log's own address, or the mirror again later)"
            )
        if tree.root(old.tree_size) != old.root_hash:
            raise TileError(
                f"FORK: the served tree does not extend the checkpoint of {old.tree_size} entries seen before"
            )
    return TiledLog(cp, entries, tree)
