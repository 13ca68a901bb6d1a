"""Helpers for federation tests (no tests here): a node's audit log and keys, and signed
agent requests against an in-process hub."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine

from tre import audit
from tre.audit.log import latest_checkpoint
from tre.audit.signing import get_signer
from tre.federation.signing import encode_public_key, sign_request
from tre.store.db import init_db, make_engine, session_scope


@dataclass
class FakeNodeIdentity:
    """A node's two keys as the hub registers them, and a real signed checkpoint of a real
    audit log kept in the node's own database."""

    name: str
    key: Ed25519PrivateKey
    keys_dir: Path
    engine: Engine

    @property
    def public_key(self) -> str:
        return encode_public_key(self.key)

    @property
    def audit_key(self) -> str:
        return get_signer(self.keys_dir).verifier_key.encode()

    def checkpoint(self) -> str:
        with session_scope(self.engine) as s:
            audit.record_event(s, actor="test", action="test.event", details={"n": 1})
        with session_scope(self.engine) as s:
            cp = latest_checkpoint(s)
            assert cp is not None
            return cp.note


def node_identity(tmp: Path, name: str) -> FakeNodeIdentity:
    keys = tmp / name / "keys"
    keys.mkdir(parents=True)
    engine = make_engine(f"sqlite:///{tmp / name / 'node.db'}")
    init_db(engine)
    audit.configure(engine, keys)
    return FakeNodeIdentity(name, Ed25519PrivateKey.generate(), keys, engine)


def signed(
    client: Any,
    node: FakeNodeIdentity,
    method: str,
    path: str,
    payload: Any = None,
    raw: bytes | None = None,
    key: Ed25519PrivateKey | None = None,
    now: float | None = None,
) -> Any:
    body = raw if raw is not None else (b"" if payload is None else json.dumps(payload).encode())
    headers = sign_request(key or node.key, node.name, method, path, body, now=now)
    return client.request(method, path, content=body, headers=headers)
