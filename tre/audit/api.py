"""Audit API (``/api/v1/audit``): checkpoints, search, proofs, export bundle, public key.

Access: role ``auditor`` for everything. Role ``admin`` may read only the public key and
the latest checkpoint (operators publish the key and watch that the log is alive) but not
entries, proofs or exports: admins are among the people the log holds to account, and the
entries reveal who touched which patient dataset. Exports are themselves audited.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import PlainTextResponse, Response, StreamingResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from tre.api.bounds import MAX_INT64
from tre.api.deps import DbSession, require_roles
from tre.api.openapi import body_of
from tre.api.problems import Problem
from tre.audit import service, tiles
from tre.audit.events import record_read
from tre.audit.guard import damaged
from tre.audit.log import checkpoint, record_event
from tre.audit.merkle import ProofError
from tre.audit.signing import AuditSigner, configure, get_signer
from tre.audit.witnessing import witness_latest
from tre.auth.principal import Principal
from tre.store.db import session_factory
from tre.store.models import AuditEntry

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])
auditor_only = require_roles("auditor")
auditor_or_admin = require_roles("auditor", "admin")
CHECKPOINT_MAX_AGE_S = 60.0
WITNESS_TIMEOUT_S = 3.0


def audit_signer(request: Request) -> AuditSigner:
    """The log's signer for this app's keys folder (and bind it to the app's engine)."""
    keys_dir = request.app.state.settings.keys_dir
    configure(request.app.state.engine, keys_dir)
    return get_signer(keys_dir)


def _hex(hashes: list[bytes]) -> list[str]:
    return [h.hex() for h in hashes]


@router.get("/public-key")
def public_key(
    _: Principal = Depends(auditor_or_admin), signer: AuditSigner = Depends(audit_signer)
) -> dict[str, object]:
    """The key to pin: C2SP verifier key string, raw key and PEM."""
    return {
        "origin": signer.name,
        "key_history": list(signer.history),
        "vkey": signer.verifier_key.encode(),
        "key_id": signer.verifier_key.key_id.hex(),
        "algorithm": "Ed25519",
        "public_key_pem": signer.public_key_pem,
    }


@router.get("/checkpoint")
def latest(
    session: DbSession,
    _: Principal = Depends(auditor_or_admin),
    signer: AuditSigner = Depends(audit_signer),
) -> dict[str, object]:
    """The latest signed checkpoint, re-signed if older than a minute (proves liveness)."""
    return service.checkpoint_json(checkpoint(session, max_age_s=CHECKPOINT_MAX_AGE_S, signer=signer))


@router.get("/entries")
def entries(
    session: DbSession,
    principal: Principal = Depends(auditor_only),
    actor: Annotated[str | None, Query(description="user or service that acted")] = None,
    action: str | None = None,
    project_id: str | None = None,
    dataset_id: str | None = None,
    job_id: str | None = None,
    since: Annotated[datetime | None, Query(description="inclusive, ISO 8601 with zone")] = None,
    until: Annotated[datetime | None, Query(description="exclusive, ISO 8601 with zone")] = None,
    after: Annotated[int, Query(ge=-1, le=MAX_INT64, description="return entries with index > after")] = -1,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Search entries (all filters AND-ed), oldest first; page with ``after=next_after``."""
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise Problem(422, "Invalid request", f"{name} needs a time zone (e.g. 2026-01-01T00:00:00Z)")
    flt = service.EntryFilter(actor, action, project_id, dataset_id, job_id, since, until)
    result = service.search(session, flt, after, limit)
    closest = None
    if action is not None and after == -1 and not result.entries and result.last_scanned is None:
        closest = service.closest_actions(session, action)
    # Auditors are accountable too: what they looked for is itself in the log.
    query = {k: v for k, v in flt.__dict__.items() if v is not None}
    record_event(session, actor=principal.user_id, action="audit.search", details={"query": query})
    session.commit()
    answer: dict[str, Any] = {
        "items": [service.entry_json(e) for e in result.entries],
        "damaged": result.damaged,
        "next_after": result.last_scanned,
    }
    if closest is not None:  # no entry at all has this action: say so, and what is near
        answer["unknown_action"] = {"action": action, "closest": closest}
    return answer


@router.get("/entries/{idx}")
def entry(
    session: DbSession,
    idx: Annotated[int, PathParam(ge=0, le=MAX_INT64)],
    principal: Principal = Depends(auditor_only),
) -> dict[str, Any]:
    """One entry as its hashed body says; a row whose body does not hash to its leaf is damage."""
    row = session.scalar(select(AuditEntry).where(AuditEntry.idx == idx))
    if row is None:
        if idx < service.tree_size(session):
            raise damaged(f"entry {idx} is missing from the database")
        raise Problem(404, "Not found", f"no audit entry with index {idx}", "audit-entry-not-found")
    verified = service.verified_entry(row)
    if verified is None:
        raise damaged(f"entry {idx}'s stored body does not match its leaf hash")
    record_event(session, actor=principal.user_id, action="audit.entry", details={"index": idx})
    session.commit()
    return service.entry_json(verified)


def _tree(session: Session, size: int) -> service.StoredTree:
    try:
        return service.StoredTree(session, size)
    except service.AuditLogError as e:
        raise Problem(404, "Not found", str(e), "audit-tree-size") from e


@router.get("/proof/inclusion")
def inclusion(
    session: DbSession,
    index: Annotated[int, Query(ge=0, le=MAX_INT64)],
    tree_size: Annotated[int, Query(ge=1, le=MAX_INT64)],
    principal: Principal = Depends(auditor_only),
) -> dict[str, Any]:
    """RFC 9162 inclusion proof of leaf ``index`` in the tree of ``tree_size`` leaves."""
    tree = _tree(session, tree_size)
    try:
        proof = tree.inclusion(index)
    except ProofError as e:
        raise Problem(422, "Invalid request", str(e), "bad-proof-request") from e
    leaf = tree.leaves(index, index + 1)[0]
    record_event(
        session,
        actor=principal.user_id,
        action="audit.proof",
        details={"kind": "inclusion", "index": index, "tree_size": tree_size},
    )
    session.commit()
    return {"index": index, "tree_size": tree_size, "leaf_hash": leaf.hex(), "proof": _hex(proof)}


@router.get("/proof/consistency")
def consistency(
    session: DbSession,
    first: Annotated[int, Query(ge=0, le=MAX_INT64)],
    second: Annotated[int, Query(ge=0, le=MAX_INT64)],
    principal: Principal = Depends(auditor_only),
) -> dict[str, Any]:
    """RFC 9162 consistency proof that tree ``second`` extends tree ``first`` (fork check)."""
    if first > second:
        raise Problem(422, "Invalid request", "first must not exceed second", "bad-proof-request")
    tree = _tree(session, second)
    proof = _hex(tree.consistency(first))
    record_event(
        session,
        actor=principal.user_id,
        action="audit.proof",
        details={"kind": "consistency", "first": first, "second": second},
    )
    session.commit()
    return {"first": first, "second": second, "proof": proof}


@router.get("/export", responses=body_of("application/x-ndjson", "An export bundle: a JSON document a line"))
def export(
    session: DbSession,
    request: Request,
    principal: Principal = Depends(auditor_only),
    signer: AuditSigner = Depends(audit_signer),
    tree_size: Annotated[
        int | None, Query(ge=0, le=MAX_INT64, description="default: latest checkpoint")
    ] = None,
    max_checkpoints: Annotated[int, Query(ge=1, le=100_000)] = 1000,
) -> StreamingResponse:
    """Stream a ``tre-audit-bundle/1`` for ``tre audit verify`` (offline)."""
    if tree_size is None:
        # Have the newest checkpoint cosigned first, so the bundle ends at a witnessed size.
        session.commit()
        witness_latest(session_factory(request.app.state.engine), signer, timeout_s=WITNESS_TIMEOUT_S)
    try:
        plan = service.plan_export(session, signer, size=tree_size, max_checkpoints=max_checkpoints)
    except service.NotSignedError as e:
        raise Problem(422, "Invalid request", str(e), "audit-size-not-signed") from e
    except service.AuditLogError as e:
        raise Problem(404, "Not found", str(e), "audit-tree-size") from e
    record_event(session, actor=principal.user_id, action="audit.export", details={"tree_size": plan.size})
    # Commit now: the stream reads in its own short transactions and must not wait on ours.
    session.commit()
    maker = session_factory(request.app.state.engine)
    return StreamingResponse(
        service.iter_export(plan, maker),
        media_type="application/x-ndjson",
        headers={"Content-Disposition": f'attachment; filename="audit-{plan.size}.tlog.jsonl"'},
    )


# --- C2SP tlog-tiles read API (see tre.audit.tiles) -------------------------------------------

TILE_TYPE = "application/octet-stream"
# `private`: a tile is an authenticated answer (auditors only), never one for a shared cache.
# Partial tiles too: ``.p/W`` names the first W hashes, which never change either (tlog-tiles
# calls the whole endpoint immutable); a log that changed one would be caught by the root.
_IMMUTABLE = {"Cache-Control": "private, max-age=31536000, immutable"}


def _tile_response(data: bytes) -> Response:
    return Response(data, media_type=TILE_TYPE, headers=_IMMUTABLE)


@router.get("/tlog/checkpoint", response_class=PlainTextResponse)
def tlog_checkpoint(
    session: DbSession,
    _: Principal = Depends(auditor_or_admin),
    signer: AuditSigner = Depends(audit_signer),
) -> PlainTextResponse:
    """The latest signed checkpoint note, as tlog-tiles clients expect it (text)."""
    note = checkpoint(session, max_age_s=CHECKPOINT_MAX_AGE_S, signer=signer).note
    session.commit()
    return PlainTextResponse(note, headers={"Cache-Control": "no-store"})


@router.get("/tlog/tile/entries/{path:path}", responses=body_of(TILE_TYPE, "An entry bundle tile."))
def tlog_entries(
    session: DbSession,
    path: str,
    principal: Principal = Depends(auditor_only),
    signer: AuditSigner = Depends(audit_signer),
) -> Response:
    """Entry bundle: the exact hashed bodies (pseudonymous ids only), uint16-length-prefixed.

    Recorded (``audit.entries_read``: which entries), as `entry` and `export` are: the same
    bodies through tiles left no entry until round 16, so an auditor could read the whole
    log, who touched which dataset, unaccountably. Aggregated per reader and tile (a client
    following the log reads each tile many times)."""
    try:
        bundle = tiles.entry_bundle(session, tiles.signed_tree_size(session, signer), path)
    except tiles.TileNotFound as e:
        raise Problem(404, "Not found", str(e), "audit-tile-not-found") from e
    record_read(
        session,
        actor=principal.user_id,
        action="audit.entries_read",
        details={"first": bundle.first, "count": bundle.count, "via": "tile"},
    )
    return _tile_response(bundle.data)


@router.get("/tlog/tile/{level}/{path:path}", responses=body_of(TILE_TYPE, "A hash tile."))
def tlog_tile(
    session: DbSession,
    level: str,
    path: str,
    _: Principal = Depends(auditor_or_admin),
    signer: AuditSigner = Depends(audit_signer),
) -> Response:
    """Hash tile: node hashes at tree level 8*level, 32 bytes each."""
    try:
        data = tiles.hash_tile(
            session, tiles.signed_tree_size(session, signer), tiles.parse_level(level), path
        )
    except tiles.TileNotFound as e:
        raise Problem(404, "Not found", str(e), "audit-tile-not-found") from e
    return _tile_response(data)
