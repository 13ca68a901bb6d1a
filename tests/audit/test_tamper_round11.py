"""Round 11 of the audit tamper run: an admin who also holds the signing key, and the
auditor's tools (``tre audit check``, ``tre audit checkpoint``, ``tre audit verify``).

The signing key lets its holder sign anything, so the server's own guard cannot stop a
rollback: only what someone *outside* the server kept (an auditor's saved checkpoint, a
witness's cosigned one) can. These tests roll real databases back with the real key and show
which of the documented procedures catch it.
"""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import Engine, select

from tests.audit.test_server_guard import append_one, build
from tests.audit.test_tamper_round10 import forge_tail
from tre.audit.check import check_log
from tre.audit.merkle import Frontier
from tre.audit.note import TIMESTAMP_EXT, Checkpoint
from tre.audit.signing import AuditSigner, get_signer, rotate_key
from tre.config import Settings
from tre.store.db import session_scope
from tre.store.models import AuditCheckpoint, AuditEntry


def _frontier(engine: Engine) -> Frontier:
    with session_scope(engine) as s:
        f = Frontier()
        for leaf in s.scalars(select(AuditEntry.leaf_hash).order_by(AuditEntry.idx)):
            f.append(bytes(leaf))
        return f


# --- tre audit check and a retired key --------------------------------------------------


def test_check_names_a_tip_signed_only_by_a_retired_key(log_engine: Engine, settings: Settings) -> None:
    """An insider holding a key rotated out (kept to verify history; perhaps rotated *because*
    it leaked) forges entries and signs the tip with it, backdated into the overlap. The server
    refuses to sign on top (round 10); `tre audit check`, the admin's tool for deciding what to
    restore, said `intact`."""
    build(log_engine)
    old = get_signer(settings.keys_dir)
    rotate_key(settings.keys_dir, 0)  # no overlap: the old key is retired at once
    time.sleep(0.01)
    append_one(log_engine)  # signed by the new key
    forge_tail(log_engine, 2)
    f = _frontier(log_engine)
    backdated = (f"{TIMESTAMP_EXT} {int(time.time() * 1000) - 60_000}",)
    note = AuditSigner(old.private_key, old.name).sign(Checkpoint(old.name, f.size, f.root(), backdated))
    with session_scope(log_engine) as s:
        s.add(AuditCheckpoint(tree_size=f.size, root_hash=f.root(), note=note))
    signer = get_signer(settings.keys_dir)
    with session_scope(log_engine) as s:
        _, problems = check_log(s, signer)
    assert any("signed only by a retired key" in p for p in problems), problems


def test_check_accepts_the_last_checkpoint_the_old_key_signed(log_engine: Engine, settings: Settings) -> None:
    """Right after a rotation without overlap the tip is the old key's last checkpoint (the one
    kept beside the key): that is the log's own history, not a problem."""
    build(log_engine)
    rotate_key(settings.keys_dir, 0)
    time.sleep(0.01)
    signer = get_signer(settings.keys_dir)
    with session_scope(log_engine) as s:
        _, problems = check_log(s, signer)
    assert problems == []
    append_one(log_engine)
    with session_scope(log_engine) as s:
        _, problems = check_log(s, signer)
    assert problems == []
