"""The hub's registry of nodes and federated projects (its admin's decisions, audited)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tre import registry
from tre.audit import record_event
from tre.audit.note import NoteError, VerifierKey
from tre.errors import Conflict, NotFound, Unprocessable
from tre.federation.signing import parse_public_key
from tre.federation.vocabulary import ChildState
from tre.store.base import utcnow
from tre.store.federation_models import FedChild, FedNode, FedProjectNode
from tre.store.models import Project

# The longest a replaced agent key is still taken (`rotate_node_key`): long enough for a
# node's admin to restart its agent, short enough that an old key does not linger.
MAX_KEY_OVERLAP_S = 7 * 24 * 3600


def add_node(session: Session, actor: str, name: str, public_key: str, audit_key: str) -> FedNode:
    """Register a node: its agent's request-signing key and its audit log's verifier key."""
    registry.check_slug("node", name)
    try:
        parse_public_key(public_key)
    except ValueError as exc:
        raise Unprocessable(f"node key: {exc}") from exc
    try:
        VerifierKey.parse(audit_key.strip())
    except (NoteError, ValueError) as exc:
        raise Unprocessable(f"audit key: {exc}") from exc
    if session.get(FedNode, name) is not None:
        raise Conflict(f"node {name!r} is already registered")
    node = FedNode(name=name, public_key=public_key.strip(), audit_key=audit_key.strip(), added_by=actor)
    session.add(node)
    session.flush()
    record_event(
        session,
        actor=actor,
        action="federation.node_added",
        details={"node": name, "public_key": node.public_key, "audit_key": node.audit_key},
    )
    return node


def revoke_node(session: Session, actor: str, name: str) -> FedNode:
    """Stop trusting a node (its key leaked, or it left the federation): every request it signs
    is refused from now on, and its open children count as lost. Released results received
    before stay, each verified when it came. Revocation is final; a node that comes back is
    registered under a new name with new keys, so no request signed by the old key is ever
    taken again."""
    node = session.get(FedNode, name)
    if node is None:
        raise NotFound(f"no node {name!r} is registered")
    if node.revoked_at is not None:
        raise Conflict(f"node {name!r} was already revoked")
    node.revoked_at, node.revoked_by = utcnow(), actor
    open_children = session.scalars(
        select(FedChild.id).where(
            FedChild.node == name,
            FedChild.state.not_in([s.value for s in ChildState if s.final]),
        )
    )
    record_event(
        session,
        actor=actor,
        action="federation.node_revoked",
        details={"node": name, "public_key": node.public_key, "open_children": sorted(open_children)},
    )
    return node


def rotate_node_key(session: Session, actor: str, name: str, public_key: str, overlap_s: float) -> FedNode:
    """Register a node's new agent key; the key it replaces is still taken for ``overlap_s``
    seconds (0: refused at once, for a key that leaked), so the node's agent can switch (a
    restart) without a refused request. The node keeps its name, children and results, which
    a revocation and a new name did not. One rotation at a time: a key replaced earlier whose
    overlap has not ended must end first (it would otherwise be trusted with no record of
    which key the node now holds)."""
    try:
        parse_public_key(public_key)
    except ValueError as exc:
        raise Unprocessable(f"node key: {exc}") from exc
    if overlap_s < 0 or overlap_s > MAX_KEY_OVERLAP_S:
        raise Unprocessable(f"the overlap is 0 to {MAX_KEY_OVERLAP_S // 3600} hours")
    node = session.get(FedNode, name, with_for_update=True)
    if node is None:
        raise NotFound(f"no node {name!r} is registered")
    if node.revoked_at is not None:
        raise Conflict(f"node {name!r} was revoked; a revoked node's key is never taken again")
    new = public_key.strip()
    if new in (node.public_key, node.previous_public_key):
        raise Conflict(f"node {name!r} holds or held this key already; rotate to a new one")
    now = utcnow()
    if node.previous_key_until is not None and node.previous_key_until > now:
        raise Conflict(
            f"node {name!r} is still in the overlap of its last rotation (until "
            f"{node.previous_key_until.isoformat(timespec='seconds')}); rotate again after it"
        )
    until = now + timedelta(seconds=overlap_s)
    previous = node.public_key
    node.public_key = new
    node.previous_public_key, node.previous_key_until = (previous, until) if overlap_s > 0 else (None, None)
    record_event(
        session,
        actor=actor,
        action="federation.node_key_rotated",
        details={
            "node": name,
            "public_key": new,
            "previous_key": previous,
            "previous_taken_until": until.isoformat() if overlap_s > 0 else None,
        },
    )
    return node


def previous_key_taken(node: FedNode) -> tuple[str, datetime] | None:
    """The key a rotation replaced and until when it is still taken, while that lasts (None
    after, or when the rotation had no overlap). Shown in the node listing: an old key the
    hub still trusts is never invisible to its admin."""
    if node.previous_public_key and node.previous_key_until and utcnow() < node.previous_key_until:
        return node.previous_public_key, node.previous_key_until
    return None


def keys_taken(node: FedNode) -> list[str]:
    """The agent keys a request of this node may be signed with now: its key, and the one it
    replaced while the rotation's overlap lasts."""
    previous = previous_key_taken(node)
    return [node.public_key, *([previous[0]] if previous else [])]


def listed(node: FedNode, lease_s: float) -> dict[str, Any]:
    """A node as the hub's listing shows it (`GET /hub/v1/nodes`, `tre hub node list`)."""
    previous = previous_key_taken(node)
    return {
        "name": node.name,
        "public_key": node.public_key,
        "audit_key": node.audit_key,
        "status": node_status(node, lease_s),
        "last_seen_at": node.last_seen_at.isoformat() if node.last_seen_at else None,
        "previous_key": previous[0] if previous else None,
        "previous_key_until": previous[1].isoformat() if previous else None,
    }


def node_status(node: FedNode | None, lease_s: float) -> str:
    """What the researcher is shown about a child's node: ``online``, ``offline`` (silent for
    longer than the lease) or ``revoked`` (the hub's admin stopped trusting it)."""
    if node is not None and node.revoked_at is not None:
        return "revoked"
    return "online" if is_online(node, lease_s) else "offline"


def list_nodes(session: Session) -> list[FedNode]:
    return list(session.scalars(select(FedNode).order_by(FedNode.name)))


def is_online(node: FedNode | None, lease_s: float) -> bool:
    """A node is online while it has polled within the lease (a revoked node never is)."""
    if node is None or node.last_seen_at is None or node.revoked_at is not None:
        return False
    return utcnow() - node.last_seen_at <= timedelta(seconds=lease_s)


def create_project(session: Session, actor: str, project_id: str, name: str, nodes: list[str]) -> Project:
    """A federated project: a hub project (members, code uploads) spanning these nodes."""
    if not nodes:
        raise Unprocessable("a federated project spans at least one node")
    for node in nodes:
        if session.get(FedNode, node) is None:
            raise NotFound(f"no node {node!r} is registered")
    project = registry.create_project(session, actor, project_id, name or project_id)
    for node in dict.fromkeys(nodes):
        session.add(FedProjectNode(project_id=project_id, node=node))
    session.flush()
    record_event(
        session,
        actor=actor,
        action="federation.project_created",
        project_id=project_id,
        details={"nodes": sorted(set(nodes))},
    )
    return project


def project_nodes(session: Session, project_id: str) -> list[str]:
    rows = session.scalars(
        select(FedProjectNode.node)
        .where(FedProjectNode.project_id == project_id)
        .order_by(FedProjectNode.node)
    )
    return list(rows)
