"""A node's agent key rotates with an overlap, audited (round 14, operations).

Before: a key changed only by revoking the node and registering it under a new name (its
children lost, its results under the old name). Now `tre hub node rotate-key` registers the
new key, the old one is still taken until the overlap ends (0: refused at once), and the
rotation is in the hub's audit log.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select, update

from tests.federation.hubkit import signed
from tests.federation.test_hub_api import hub  # noqa: F401 - `hub` is a fixture
from tre.errors import Conflict, Unprocessable
from tre.federation.hub import nodes
from tre.federation.signing import encode_public_key
from tre.store.base import utcnow
from tre.store.db import session_scope
from tre.store.federation_models import FedNode
from tre.store.models import AuditEntry

POLL = "/hub/v1/agent/poll"


def _poll(hub, key: Ed25519PrivateKey) -> int:  # type: ignore[no-untyped-def]  # noqa: F811
    return int(signed(hub, hub.nodes["a"], "POST", POLL, {"wait_s": 0}, key=key).status_code)


def _rotate(engine, key: Ed25519PrivateKey, overlap_s: float, name: str = "node-a") -> None:  # type: ignore[no-untyped-def]
    with session_scope(engine) as s:
        nodes.rotate_node_key(s, "root", name, encode_public_key(key), overlap_s)


def test_both_keys_are_taken_during_the_overlap_then_only_the_new(hub, engine_any) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    old, new = hub.nodes["a"].key, Ed25519PrivateKey.generate()
    assert _poll(hub, old) == 200 and _poll(hub, new) == 401
    _rotate(engine_any, new, 3600)
    assert _poll(hub, old) == 200 and _poll(hub, new) == 200
    with session_scope(engine_any) as s:
        bodies = [
            json.loads(b)
            for b in s.scalars(
                select(AuditEntry.body).where(AuditEntry.action == "federation.node_key_rotated")
            )
        ]
    assert [
        (b["actor"], b["details"]["node"], b["details"]["public_key"], b["details"]["previous_key"])
        for b in bodies
    ] == [("root", "node-a", encode_public_key(new), encode_public_key(old))]
    # The listing shows the old key while the hub still takes it (ops15: it showed only the new).
    (listed,) = [
        n for n in hub.get("/hub/v1/nodes", headers=hub.tokens["root"]).json() if n["name"] == "node-a"
    ]
    assert listed["public_key"] == encode_public_key(new)
    assert listed["previous_key"] == encode_public_key(old) and listed["previous_key_until"]
    # A second rotation waits for the first overlap to end (one old key at a time).
    with pytest.raises(Conflict):
        _rotate(engine_any, Ed25519PrivateKey.generate(), 3600)
    with session_scope(engine_any) as s:  # the overlap ends
        s.execute(
            update(FedNode)
            .where(FedNode.name == "node-a")
            .values(previous_key_until=utcnow() - timedelta(seconds=1))
        )
    assert _poll(hub, old) == 401 and _poll(hub, new) == 200
    (listed,) = [
        n for n in hub.get("/hub/v1/nodes", headers=hub.tokens["root"]).json() if n["name"] == "node-a"
    ]
    assert listed["previous_key"] is None and listed["previous_key_until"] is None
    # Back to a key it held: refused.
    with pytest.raises(Conflict):
        _rotate(engine_any, old, 0)


def test_a_leaked_key_rotated_without_overlap_is_refused_at_once(hub, engine_any) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    old, new = hub.nodes["a"].key, Ed25519PrivateKey.generate()
    _rotate(engine_any, new, 0)
    assert _poll(hub, old) == 401 and _poll(hub, new) == 200
    # Node b is untouched.
    assert signed(hub, hub.nodes["b"], "POST", POLL, {"wait_s": 0}).status_code == 200


def test_rotation_refusals(hub, engine_any) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    with pytest.raises(Unprocessable):
        _rotate(engine_any, Ed25519PrivateKey.generate(), 8 * 24 * 3600)  # over the week
    with session_scope(engine_any) as s:
        with pytest.raises(Unprocessable):
            nodes.rotate_node_key(s, "root", "node-a", "not-a-key", 60)
    with session_scope(engine_any) as s:
        nodes.revoke_node(s, "root", "node-b")
    with pytest.raises(Conflict):  # a revoked node's keys are never taken again
        _rotate(engine_any, Ed25519PrivateKey.generate(), 60, "node-b")


def test_the_cli_rotates_the_nodes_key_and_registers_it_at_the_hub(settings) -> None:  # type: ignore[no-untyped-def]
    """`tre node key --rotate` makes a new key (the old file kept, 0600); `tre hub node
    rotate-key` registers it (here one state directory plays both); a bad key is one line."""
    from typer.testing import CliRunner

    from tre.cli.app import app
    from tre.federation.keys import NODE_KEY_FILE

    runner = CliRunner()
    before = runner.invoke(app, ["node", "key"])
    assert before.exit_code == 0, before.output
    old = before.output.split()[1]
    rotated = runner.invoke(app, ["node", "key", "--rotate"])
    assert rotated.exit_code == 0, rotated.output
    new = rotated.output.split()[1]
    assert new != old and runner.invoke(app, ["node", "key"]).output.split()[1] == new
    kept = list(settings.keys_dir.glob(f"{NODE_KEY_FILE}.replaced-*"))
    assert len(kept) == 1 and kept[0].stat().st_mode & 0o077 == 0
    audit_key = before.output.split("audit-key", 1)[1].split()[0]
    assert (
        runner.invoke(app, ["hub", "node", "add", "node-a", "--key", old, "--audit-key", audit_key]).exit_code
        == 0
    )
    done = runner.invoke(app, ["hub", "node", "rotate-key", "node-a", "--key", new, "--overlap-hours", "2"])
    assert done.exit_code == 0 and "taken for 2 h more" in done.output, done.output
    shown = runner.invoke(app, ["hub", "node", "list"])
    assert shown.exit_code == 0, shown.output
    rows = [row.split() for row in shown.output.splitlines() if row.startswith("node-a")]
    assert len(rows) == 1, shown.output
    assert rows[0][2] == new and "also taken until" in " ".join(rows[0]) and rows[0][-1] == old, rows
    bad = runner.invoke(app, ["hub", "node", "rotate-key", "node-a", "--key", "nonsense"])
    # A TreError: `tre`'s entry point prints it as one line, exit 1 (tre.cli.main.run).
    assert isinstance(bad.exception, Unprocessable) and "node key" in str(bad.exception)
