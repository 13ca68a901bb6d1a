"""RFC 9162 (Certificate Transparency v2) Merkle tree hashing, proofs and proof checks.

Standard library only, on purpose: the offline verifier imports this module, and an auditor
must be able to read and trust it without trusting anything else the server ships.

Hashes: leaf = SHA-256(0x00 || entry), node = SHA-256(0x01 || left || right), and the
empty tree's root is SHA-256 of nothing. The tree over ``n`` leaves splits at the largest
power of two smaller than ``n`` (RFC 9162 section 2.1.1), so any tree is a fold, from the
right, of the perfect subtrees named by the set bits of ``n``. Both the append frontier and
the bulk verifier use that fact to avoid recursion and per-node Python overhead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

HASH_SIZE = 32
# The hash-chain link of the first entry (hex of 32 zero bytes): shared by the log that writes
# entries and the offline verifier that checks them, which must agree on it byte for byte.
GENESIS_PREV = "0" * 64
EMPTY_ROOT = hashlib.sha256(b"").digest()

_sha256 = hashlib.sha256


class ProofError(ValueError):
    """A proof or its parameters are malformed or do not verify."""


def leaf_hash(entry: bytes) -> bytes:
    """RFC 9162 leaf hash: SHA-256(0x00 || entry)."""
    return _sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 interior node hash: SHA-256(0x01 || left || right)."""
    return _sha256(b"\x01" + left + right).digest()


def leaf_hashes(entries: Sequence[bytes]) -> list[bytes]:
    """Leaf hashes of many entries in one comprehension (no per-call function overhead)."""
    h = _sha256
    return [h(b"\x00" + e).digest() for e in entries]


def _largest_power_of_two_below(n: int) -> int:
    """The k of RFC 9162: the largest power of two strictly smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _pair_up(level: Sequence[bytes]) -> list[bytes]:
    """Hash neighbours pairwise; an odd last element is dropped (it is not a perfect subtree)."""
    h = _sha256
    return [h(b"\x01" + a + b).digest() for a, b in zip(level[0::2], level[1::2], strict=False)]


def _fold_right(subtrees: Sequence[bytes]) -> bytes:
    """Combine perfect subtrees (left to right, decreasing size) into the RFC 9162 root."""
    if not subtrees:
        return EMPTY_ROOT
    root = subtrees[-1]
    for sub in reversed(subtrees[:-1]):
        root = node_hash(sub, root)
    return root


def root_from_leaves(leaves: Sequence[bytes]) -> bytes:
    """MTH over already-hashed leaves, computed level by level."""
    return TreeLevels(leaves).root(len(leaves))


class TreeLevels:
    """All perfect-subtree hashes of a tree, level by level, built in bulk.

    ``levels[k][i]`` is the hash of leaves ``[i * 2**k, (i + 1) * 2**k)``. Once built, the
    root of any prefix of the tree, and any proof within it, costs O(log n) look-ups: this
    is what lets the verifier check every checkpoint of a million-entry bundle cheaply.
    """

    def __init__(self, leaves: Sequence[bytes]) -> None:
        self.size = len(leaves)
        self.levels: list[Sequence[bytes]] = [leaves]
        level: Sequence[bytes] = leaves
        while len(level) > 1:
            level = _pair_up(level)
            self.levels.append(level)

    def _perfect(self, level: int, start: int) -> bytes:
        return self.levels[level][start >> level]

    def range_hash(self, start: int, end: int) -> bytes:
        """MTH of leaves [start, end): RFC 9162 splits ranges into aligned perfect subtrees."""
        if not 0 <= start <= end <= self.size:
            raise ProofError(f"range [{start}, {end}) outside tree of size {self.size}")
        subtrees = []
        pos, n = start, end - start
        while n:
            k = 1 << (n.bit_length() - 1)
            subtrees.append(self._range_perfect_or_split(pos, k))
            pos += k
            n -= k
        return _fold_right(subtrees)

    def _range_perfect_or_split(self, start: int, size: int) -> bytes:
        # In RFC 9162 proofs every subtree of size 2**k starts at a multiple of 2**k.
        level = size.bit_length() - 1
        if start % size == 0:
            return self._perfect(level, start)
        half = size >> 1
        return node_hash(
            self._range_perfect_or_split(start, half), self._range_perfect_or_split(start + half, half)
        )

    def root(self, size: int | None = None) -> bytes:
        """Root of the tree made of the first ``size`` leaves (default: all)."""
        return self.range_hash(0, self.size if size is None else size)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        return inclusion_proof(index, size, self.range_hash)

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        return consistency_proof(first, second, self.range_hash)


RangeHash = Callable[[int, int], bytes]
"""Returns MTH(D[start:end]); lets proofs be built from any storage of leaf hashes."""


def inclusion_proof(index: int, size: int, range_hash: RangeHash) -> list[bytes]:
    """RFC 9162 2.1.3.1 PATH(m, D[n]), iteratively: sibling subtree hashes, leaf first."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} not in tree of size {size}")
    path: list[bytes] = []
    lo, hi, m = 0, size, index
    while hi - lo > 1:
        k = _largest_power_of_two_below(hi - lo)
        if m < k:
            path.append(range_hash(lo + k, hi))
            hi = lo + k
        else:
            path.append(range_hash(lo, lo + k))
            lo += k
            m -= k
    path.reverse()
    return path


def consistency_proof(first: int, second: int, range_hash: RangeHash) -> list[bytes]:
    """RFC 9162 2.1.4.1 PROOF(m, D[n]) = SUBPROOF(m, D[n], true), iteratively."""
    if not 0 <= first <= second:
        raise ProofError(f"no consistency proof from size {first} to size {second}")
    if first == 0 or first == second:
        return []
    proof: list[bytes] = []
    lo, hi, m, whole = 0, second, first, True
    while m != hi - lo:
        n = hi - lo
        k = _largest_power_of_two_below(n)
        if m <= k:
            proof.append(range_hash(lo + k, hi))
            hi = lo + k
        else:
            proof.append(range_hash(lo, lo + k))
            lo += k
            m -= k
            whole = False
    if not whole:
        proof.append(range_hash(lo, hi))
    proof.reverse()
    return proof


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """RFC 9162 2.1.3.2; raises ProofError unless ``leaf`` sits at ``index`` under ``root``."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} not in tree of size {size}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        _check_hash(p)
        if sn == 0:
            raise ProofError("inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is too short")
    if r != root:
        raise ProofError("inclusion proof does not lead to the expected root")


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 2.1.4.2; raises ProofError unless tree ``second`` extends tree ``first``."""
    if not 0 <= first <= second:
        raise ProofError(f"no consistency between size {first} and size {second}")
    if first == second:
        if proof:
            raise ProofError("proof between equal sizes must be empty")
        if first_root != second_root:
            raise ProofError("same tree size, different roots: the log has forked")
        return
    if first == 0:
        if proof:
            raise ProofError("proof from the empty tree must be empty")
        if first_root != EMPTY_ROOT:
            raise ProofError("the empty tree has a fixed root")
        return
    if not proof:
        raise ProofError("consistency proof is empty")
    for p in proof:
        _check_hash(p)
    path = list(proof)
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is too short")
    if fr != first_root:
        raise ProofError("consistency proof does not reproduce the earlier root: the log was rewritten")
    if sr != second_root:
        raise ProofError("consistency proof does not reproduce the later root")


def _check_hash(h: bytes) -> None:
    if len(h) != HASH_SIZE:
        raise ProofError(f"proof hash of {len(h)} bytes, expected {HASH_SIZE}")


class Frontier:
    """The right edge of the tree: one perfect-subtree hash per set bit of ``size``.

    This is all an appender needs (O(log n) state, kept in the AuditState row) to add leaves
    and to compute the new root without reading old entries.
    """

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if bin(size).count("1") != len(hashes):
            raise ProofError(f"frontier of {len(hashes)} hashes cannot describe a tree of size {size}")
        self.size = size
        self.hashes = list(hashes)

    def append(self, leaf: bytes) -> None:
        h, i = leaf, self.size
        while i & 1:
            h = node_hash(self.hashes.pop(), h)
            i >>= 1
        self.hashes.append(h)
        self.size += 1

    def root(self) -> bytes:
        return _fold_right(self.hashes)
