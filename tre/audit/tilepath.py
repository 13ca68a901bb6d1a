"""C2SP tlog-tiles geometry and path names, without the database: shared by the server's tile
endpoints (``tre.audit.tiles``) and the tile checker (``tre.audit.tile_verify``), which must
import nothing beyond the standard library and the offline verifier's modules."""

from __future__ import annotations

TILE_WIDTH = 256  # hashes (or entries) in a full tile
TILE_HEIGHT = 8  # tree levels one tile spans: log2(TILE_WIDTH)


def encode_index(n: int) -> str:
    """Tile index as C2SP path groups: 1234067 -> x001/x234/067, 5 -> 005."""
    digits = str(n)
    digits = "0" * (-len(digits) % 3) + digits
    groups = [digits[i : i + 3] for i in range(0, len(digits), 3)]
    return "/".join([*("x" + g for g in groups[:-1]), groups[-1]])
