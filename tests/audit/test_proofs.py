"""Server-side proofs from stored leaf hashes equal the in-memory reference, cached or not."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, select

from tre.audit import AuditEvent, record_events
from tre.audit.merkle import TreeLevels
from tre.audit.service import StoredTree
from tre.store.db import session_scope
from tre.store.models import AuditEntry

N = 5000


def test_stored_tree_proofs_match_reference(log_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    with session_scope(log_engine) as s:
        record_events(s, [AuditEvent("svc", "job.output", details={"i": i}) for i in range(N)])
    with session_scope(log_engine) as s:
        leaves = [bytes(h) for h in s.scalars(select(AuditEntry.leaf_hash).order_by(AuditEntry.idx))]
    ref = TreeLevels(leaves)
    read: list[int] = []
    original = StoredTree.leaves

    def counting(self: StoredTree, start: int, end: int) -> list[bytes]:
        read.append(end - start)
        return original(self, start, end)

    monkeypatch.setattr(StoredTree, "leaves", counting)
    with session_scope(log_engine) as s:
        for size in (N, 4096, 3001):
            tree = StoredTree(s, size)
            assert tree.root() == ref.root(size)
            for i in (0, 1, 1023, 1024, 2047, 2999, size - 1):
                assert tree.inclusion(i) == ref.inclusion_proof(i, size), (i, size)
            for m in (1, 2, 1024, 1500, 2048, 3000, size):
                assert tree.consistency(m) == ref.consistency_proof(m, size), (m, size)
        read.clear()
        StoredTree(s, N).inclusion(10)
        # Complete 1024-leaf subtrees come from the cache: only the leaf's own block and the
        # ragged right edge (5000 - 4096 = 904 leaves) are read again.
        assert sum(read) <= 1024 + 904, read
