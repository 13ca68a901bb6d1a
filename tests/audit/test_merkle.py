"""RFC 9162 hashing and proofs against the Certificate Transparency reference vectors.

Vectors: transparency-dev/merkle proof/verify_test.go (the Go implementation CT and trillian
use): eight leaves, the roots of every prefix, and known inclusion/consistency proofs.
"""

from __future__ import annotations

import hashlib
import random

import pytest

from tre.audit.merkle import (
    EMPTY_ROOT,
    Frontier,
    ProofError,
    TreeLevels,
    leaf_hash,
    node_hash,
    root_from_leaves,
    verify_consistency,
    verify_inclusion,
)

h = bytes.fromhex
LEAVES = [
    h(x)
    for x in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
ROOTS = [
    h(x)
    for x in (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    )
]
# (leaf index, tree size, proof)
INCLUSION = [
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]
TREE = TreeLevels([leaf_hash(x) for x in LEAVES])


def test_empty_tree_root_is_sha256_of_nothing() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert root_from_leaves([]) == EMPTY_ROOT
    assert Frontier().root() == EMPTY_ROOT


def test_leaf_and_node_domain_separation() -> None:
    assert leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    assert leaf_hash(b"") == ROOTS[0]
    assert node_hash(b"a" * 32, b"b" * 32) == hashlib.sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()


@pytest.mark.parametrize("size", range(1, 9))
def test_roots_of_every_prefix_match_reference(size: int) -> None:
    assert TREE.root(size) == ROOTS[size - 1]
    f = Frontier()
    for leaf in LEAVES[:size]:
        f.append(leaf_hash(leaf))
    assert f.root() == ROOTS[size - 1]


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION)
def test_inclusion_proofs_match_reference(index: int, size: int, proof: list[str]) -> None:
    want = [h(p) for p in proof]
    assert TREE.inclusion_proof(index, size) == want
    verify_inclusion(leaf_hash(LEAVES[index]), index, size, want, ROOTS[size - 1])


@pytest.mark.parametrize(("first", "second", "proof"), CONSISTENCY)
def test_consistency_proofs_match_reference(first: int, second: int, proof: list[str]) -> None:
    want = [h(p) for p in proof]
    assert TREE.consistency_proof(first, second) == want
    verify_consistency(first, second, ROOTS[first - 1], ROOTS[second - 1], want)


def _flip(b: bytes) -> bytes:
    return bytes([b[0] ^ 16]) + b[1:]


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION)
def test_corrupted_inclusion_proofs_fail(index: int, size: int, proof: list[str]) -> None:
    """The Go suite's corruption probes: every one must be rejected."""
    p = [h(x) for x in proof]
    leaf, root = leaf_hash(LEAVES[index]), ROOTS[size - 1]
    some = h("abacaba000000000000000000000000000000000000000000060061e00123456")
    probes = [
        (index - 1, size, leaf, p, root),
        (index + 1, size, leaf, p, root),
        (index ^ 2, size, leaf, p, root),
        (index, size * 2, leaf, p, root),
        (index, size // 2, leaf, p, root),
        (index, size, b"WrongLeaf", p, root),
        (index, size, leaf, p, EMPTY_ROOT),
        (index, size, leaf, p, some),
        (index, size, leaf, [*p, b""], root),
        (index, size, leaf, [*p, root], root),
        (index, size, leaf, [b"", *p], root),
        (index, size, leaf, [root, *p], root),
        (index, size, leaf, p[:-1], root),
    ]
    probes += [(index, size, leaf, [*p[:i], _flip(p[i]), *p[i + 1 :]], root) for i in range(len(p))]
    if len(p) > 1:
        probes.append((index, size, leaf, [p[0], some, *p[1:]], root))
    for i, s, lf, pr, rt in probes:
        with pytest.raises(ProofError):
            verify_inclusion(lf, i, s, pr, rt)


@pytest.mark.parametrize(("first", "second", "proof"), CONSISTENCY[1:])
def test_corrupted_consistency_proofs_fail(first: int, second: int, proof: list[str]) -> None:
    p = [h(x) for x in proof]
    r1, r2 = ROOTS[first - 1], ROOTS[second - 1]
    probes = [
        (first - 1, second, r1, r2, p),
        (first + 1, second, r1, r2, p),
        (first ^ 2, second, r1, r2, p),
        (first, second * 2, r1, r2, p),
        (first, second // 2, r1, r2, p),
        (first, second, b"WrongRoot", r2, p),
        (first, second, r1, b"WrongRoot", p),
        (first, second, r2, r1, p),
        (first, second, r1, r2, []),
        (first, second, r1, r2, [*p, b""]),
        (first, second, r1, r2, [*p, r1]),
        (first, second, r1, r2, [*p, r2]),
        (first, second, r1, r2, [b"", *p]),
        (first, second, r1, r2, [r1, *p]),
        (first, second, r1, r2, [r2, *p]),
        (first, second, r1, r2, [p[0], *p]),
        (first, second, r1, r2, p[:-1]),
    ]
    probes += [(first, second, r1, r2, [*p[:i], _flip(p[i]), *p[i + 1 :]]) for i in range(len(p))]
    for f, s, a, b, pr in probes:
        with pytest.raises(ProofError):
            verify_consistency(f, s, a, b, pr)


def test_trivial_consistency_cases() -> None:
    verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    verify_consistency(0, 5, EMPTY_ROOT, ROOTS[4], [])
    verify_consistency(3, 3, ROOTS[2], ROOTS[2], [])
    with pytest.raises(ProofError):
        verify_consistency(3, 3, ROOTS[2], ROOTS[3], [])
    with pytest.raises(ProofError):
        verify_consistency(2, 1, ROOTS[1], ROOTS[0], [])


def _mth(leaves: list[bytes]) -> bytes:
    """RFC 9162 MTH written literally (recursive), as an independent reference."""
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node_hash(_mth(leaves[:k]), _mth(leaves[k:]))


def test_all_proofs_up_to_70_leaves_verify_and_match_recursive_definition() -> None:
    rng = random.Random(7)
    leaves = [leaf_hash(rng.randbytes(rng.randint(0, 40))) for _ in range(70)]
    tree = TreeLevels(leaves)
    frontier = Frontier()
    for n in range(1, 71):
        frontier.append(leaves[n - 1])
        root = _mth(leaves[:n])
        assert tree.root(n) == root == frontier.root()
        for i in range(n):
            verify_inclusion(leaves[i], i, n, tree.inclusion_proof(i, n), root)
        for m in range(0, n + 1):
            verify_consistency(m, n, _mth(leaves[:m]), root, tree.consistency_proof(m, n))


def test_frontier_rejects_impossible_state() -> None:
    with pytest.raises(ProofError):
        Frontier(3, [b"x" * 32])
