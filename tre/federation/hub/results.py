"""Released results at the hub: files stored by SHA-256 once their bytes match, a release
accepted only when every file was received intact, the disclosure record names exactly
those hashes as released, and the node's audit checkpoint verifies under its registered key."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from tre.audit import record_event
from tre.audit.log import AuditEvent
from tre.audit.note import NoteError, VerifierKey, open_checkpoint
from tre.config import Settings
from tre.errors import Conflict, NotFound, Unprocessable
from tre.federation.hub.jobs import node_child
from tre.federation.vocabulary import ChildState
from tre.federation.wire import ReleaseIn
from tre.store.base import utcnow
from tre.store.federation_models import FedChild, FedJob, FedNode, FedResultFile, FedUpload


def results_dir(settings: Settings) -> Path:
    path = settings.home / "federation" / "results"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def stored_path(settings: Settings, sha256: str) -> Path:
    return results_dir(settings) / sha256


def _hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def receive_file(session: Session, settings: Settings, node: str, cid: str, sha256: str, data: bytes) -> None:
    """Keep one uploaded file of a child; its bytes must hash to the name it was sent under."""
    child = node_child(session, node, cid)
    if ChildState(child.state).final:
        raise Conflict(f"child {cid} is {child.state}; nothing more is received for it")
    if hashlib.sha256(data).hexdigest() != sha256:
        raise Unprocessable(
            "the uploaded bytes do not hash to the SHA-256 they were sent as", slug="hash-mismatch"
        )
    target = stored_path(settings, sha256)
    if not target.exists():
        tmp = target.with_name(f".{sha256}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        tmp.chmod(0o600)
        tmp.replace(target)
    if session.get(FedUpload, (cid, sha256)) is None:
        session.add(FedUpload(child_id=cid, sha256=sha256, size=len(data)))
        session.flush()
        # Bytes that left the node and now sit on the hub's disk: the hub's log says whose.
        job = session.get(FedJob, child.job_id)
        record_event(
            session,
            actor=f"node:{node}",
            action="federation.result_uploaded",
            project_id=job.project_id if job else None,
            details={"fed_job": child.job_id, "child": cid, "sha256": sha256, "size": len(data)},
        )


def _released_hashes(record: dict[str, object]) -> set[str]:
    files = record.get("files")
    if record.get("released") is not True or not isinstance(files, list):
        return set()
    return {str(f.get("sha256")) for f in files if isinstance(f, dict)}


def accept_release(session: Session, settings: Settings, node: str, cid: str, body: ReleaseIn) -> FedChild:
    """Verify and record a node's released results for one child (idempotent once released)."""
    child = node_child(session, node, cid)
    if child.state == ChildState.released:
        return child
    if ChildState(child.state).final:
        raise Conflict(f"child {cid} is {child.state}; it cannot be released now")
    names = [f.name for f in body.files]
    if len(set(names)) != len(names):
        raise Unprocessable("two released files have the same name")
    released = _released_hashes(body.disclosure_record)
    for f in body.files:
        upload = session.get(FedUpload, (cid, f.sha256))
        path = stored_path(settings, f.sha256)
        if upload is None or upload.size != f.size or not path.is_file():
            raise Unprocessable(f"file {f.sha256} was not uploaded for this child", slug="file-missing")
        if _hash_file(path) != f.sha256:
            raise Unprocessable(f"the stored copy of {f.sha256} no longer matches", slug="hash-mismatch")
        if f.sha256 not in released:
            raise Unprocessable(
                f"the disclosure record does not release {f.sha256}", slug="not-in-disclosure-record"
            )
    registered = session.get(FedNode, node)
    if registered is None:
        raise NotFound(f"no node {node!r}")
    try:
        checkpoint = open_checkpoint(body.checkpoint, VerifierKey.parse(registered.audit_key))
    except (NoteError, ValueError) as exc:
        raise Unprocessable(
            f"the audit checkpoint does not verify under node {node}'s registered key: {exc}",
            slug="checkpoint-invalid",
        ) from exc
    root = checkpoint.root_hash.hex()
    if checkpoint.tree_size < registered.checkpoint_size:
        raise _checkpoint_refused(
            node,
            cid,
            "rollback",
            checkpoint.tree_size,
            root,
            f"node {node}'s audit checkpoint is for tree size {checkpoint.tree_size}, smaller than the "
            f"{registered.checkpoint_size} already verified: its log cannot shrink",
        )
    if checkpoint.tree_size == registered.checkpoint_size and registered.checkpoint_root not in (None, root):
        # Two signed checkpoints of one size with different roots: the node's log forked (two
        # histories, one shown with each release), whoever holds its key.
        raise _checkpoint_refused(
            node,
            cid,
            "fork",
            checkpoint.tree_size,
            root,
            f"node {node}'s audit checkpoint for tree size {checkpoint.tree_size} has another root "
            "than the one already verified at that size: its log forked",
        )
    registered.checkpoint_size, registered.checkpoint_root = checkpoint.tree_size, root
    for f in body.files:
        session.add(FedResultFile(child_id=cid, name=f.name, sha256=f.sha256, size=f.size))
    child.state, child.reason, child.updated_at = ChildState.released.value, "", utcnow()
    child.disclosure_record, child.checkpoint = body.disclosure_record, body.checkpoint
    job = session.get(FedJob, child.job_id)
    session.flush()
    record_event(
        session,
        actor=f"node:{node}",
        action="federation.results_received",
        project_id=job.project_id if job else None,
        details={
            "fed_job": child.job_id,
            "child": cid,
            "files": [{"name": f.name, "sha256": f.sha256, "size": f.size} for f in body.files],
            "node_checkpoint": {"tree_size": checkpoint.tree_size, "root_hash": checkpoint.root_hash.hex()},
        },
    )
    return child


def _checkpoint_refused(node: str, cid: str, reason: str, size: int, root: str, detail: str) -> Unprocessable:
    """A node checkpoint that contradicts one the hub verified (a shrunk or forked log): the
    release is refused and the refusal is an entry of the hub's log
    (``federation.node_checkpoint_refused``), written after the rollback (`TreError.refusals`)."""
    exc = Unprocessable(detail, slug=f"checkpoint-{reason}")
    exc.refusals = (
        AuditEvent(
            f"node:{node}",
            "federation.node_checkpoint_refused",
            details={"reason": reason, "child": cid, "tree_size": size, "root_hash": root},
        ),
    )
    return exc


def result_file(
    session: Session, settings: Settings, job: FedJob, node: str, name: str
) -> tuple[FedResultFile, Path]:
    row = session.scalars(
        select(FedResultFile)
        .join(FedChild, FedChild.id == FedResultFile.child_id)
        .where(FedChild.job_id == job.id, FedChild.node == node, FedResultFile.name == name)
    ).one_or_none()
    if row is None:
        raise NotFound(f"no released file {name!r} from node {node!r}")
    return row, stored_path(settings, row.sha256)
