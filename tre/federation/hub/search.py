"""Federated search at the hub: a count query goes to every registered node through the
agents' channel; each node answers counts only (or nothing), under its own policy."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from tre.audit import record_event
from tre.auth.principal import Principal
from tre.errors import NotFound
from tre.federation.hub.nodes import list_nodes
from tre.federation.wire import SearchAnswerIn, SearchWork
from tre.store.base import utcnow
from tre.store.federation_models import FedSearch, FedSearchAnswer

# A search is offered to nodes for this long; later it is shown with "no answer" where none came.
SEARCH_TTL_S = 600


def create(session: Session, principal: Principal, query: dict[str, Any]) -> FedSearch:
    search = FedSearch(query=query, asked_by=principal.user_id)
    session.add(search)
    session.flush()
    for node in list_nodes(session):
        if node.revoked_at is not None:
            continue  # a revoked node is asked nothing (it could not answer anyway)
        session.add(FedSearchAnswer(search_id=search.id, node=node.name))
    session.flush()
    record_event(
        session,
        actor=principal.user_id,
        action="federation.search",
        details={"search": search.id, "query": query},
    )
    return search


def take(session: Session, node: str, lease_s: float) -> list[SearchWork]:
    now = utcnow()
    stale = now - timedelta(seconds=lease_s)
    rows = session.execute(
        select(FedSearchAnswer, FedSearch)
        .join(FedSearch, FedSearch.id == FedSearchAnswer.search_id)
        .where(FedSearchAnswer.node == node, FedSearchAnswer.state == "pending")
        .where(FedSearch.created_at > now - timedelta(seconds=SEARCH_TTL_S))
        .where(or_(FedSearchAnswer.delivered_at.is_(None), FedSearchAnswer.delivered_at < stale))
        .limit(50)
    ).all()
    work = []
    for answer, search in rows:
        answer.delivered_at = now
        work.append(SearchWork(search_id=search.id, query=search.query, asked_by=search.asked_by))
    return work


def answer(session: Session, node: str, search_id: str, body: SearchAnswerIn) -> None:
    row = session.get(FedSearchAnswer, (search_id, node))
    if row is None:
        raise NotFound(f"no search {search_id!r} for node {node!r}")
    if row.state != "pending":
        return
    row.state, row.answer, row.answered_at = body.state, body.answer, utcnow()
    # The figures researchers will read came from this node: the digest of what it sent
    # (the figures themselves are in the node's own log, beside the query it answered).
    canonical = json.dumps(body.answer, sort_keys=True, separators=(",", ":")).encode()
    record_event(
        session,
        actor=f"node:{node}",
        action="federation.search_answered",
        details={
            "search": search_id,
            "state": body.state,
            "answer_sha256": hashlib.sha256(canonical).hexdigest() if body.answer is not None else None,
        },
    )


def visible(session: Session, principal: Principal, search_id: str) -> FedSearch:
    search = session.get(FedSearch, search_id)
    if search is None or (search.asked_by != principal.user_id and not principal.has("admin", "auditor")):
        raise NotFound(f"no search {search_id!r}")
    return search


def view(session: Session, search: FedSearch) -> dict[str, Any]:
    answers = session.scalars(
        select(FedSearchAnswer).where(FedSearchAnswer.search_id == search.id).order_by(FedSearchAnswer.node)
    )
    nodes = []
    for a in answers:
        shown = {"pending": "waiting", "no_answer": "no answer"}.get(a.state, "answered")
        datasets = (a.answer or {}).get("datasets", []) if a.state == "answered" else []
        suppressed = any(d.get("subjects_suppressed") or d.get("studies_suppressed") for d in datasets)
        nodes.append(
            {
                "node": a.node,
                "state": "suppressed" if shown == "answered" and suppressed else shown,
                "answer": a.answer if a.state == "answered" else None,
            }
        )
    return {
        "id": search.id,
        "query": search.query,
        "created_at": search.created_at.isoformat(),
        "nodes": nodes,
    }


def all_answered(session: Session, search_id: str) -> bool:
    return (
        session.scalar(
            select(FedSearchAnswer.node)
            .where(FedSearchAnswer.search_id == search_id, FedSearchAnswer.state == "pending")
            .limit(1)
        )
        is None
    )
