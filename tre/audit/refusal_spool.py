"""Refusal entries whose write failed, kept on local disk until the store takes them.

Refusals (``auth.refused``, ``federation.node_refused``, ``federation.submission_refused``)
are written in a unit of work of their own after the answer. When that write fails (the
store busy under load, the database away, the key briefly unavailable) the entries used to
wait in the server's memory for the next write, and a SIGKILL, an out-of-memory kill or a
power cut lost them. Now each failed batch is written here first: one small JSON file per
batch under ``<home>/spool/audit-refusals``, synced and renamed into place (whole or absent),
the folder synced after. The next write of the same process takes them, so does the next
start of a server on this home and ``tre admin doctor``.

A batch is *claimed* by renaming its file to ``<name>.taken-<pid>`` before it is written, so
two processes on one home never both write it; a claimed file whose process is gone (killed
while writing) is taken again. The file is removed after the write commits.

Whoever can write the state directory can write this folder, and what it holds is written to
the log and signed by the server: no key, token or API call needed. So (round 16) the spool
carries refusal entries only (`is_refusal_action`, deny by default): a batch holding anything
else (a DAC vote, a role, an admission) is set aside as damaged, with a CRITICAL alert, and
nothing of it is written. And each batch is written once: its digest (SHA-256 of its entries)
is stored with its entries, in their transaction (`audit_spool_batches`), so the same batch
found again, a copy put back or a crash between the write and the file's removal, is dropped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tre import privatefile
from tre.audit.log import AuditEvent, check_event
from tre.executors import liveness
from tre.store.models import AuditSpoolBatch

log = logging.getLogger(__name__)
ALERT = logging.getLogger("tre.audit.alert")

SPOOL = Path("spool") / "audit-refusals"
SUFFIX = ".json"
TAKEN = ".taken-"
BATCH_FIELD = "spool_batch"  # in the details of an entry written from the spool: the batch's digest
_held: set[str] = set()  # files this process has claimed and not yet released or given back
_held_lock = threading.Lock()


# What a refusal path puts in the spool: refusals (``auth.refused``, ``job.denied``,
# ``egress.vote_refused``, ``federation.node_refused``, ...), their ``_overflow`` counts, and a
# failed request's ``auth.token_used``. The naming convention is the rule: an action a refusal
# path records must end in ``refused`` or ``denied``.
_REFUSAL_ACTION = re.compile(r"[a-z0-9_.:/-]*[._](refused|denied)(_overflow)?|auth\.token_used(_overflow)?")


def is_refusal_action(action: str) -> bool:
    """Whether an entry of ``action`` may come from the spool (deny by default)."""
    return _REFUSAL_ACTION.fullmatch(action) is not None


def spool_dir(home: Path) -> Path:
    return Path(home) / SPOOL


class NotARefusal(ValueError):
    """A spooled batch holding an entry no refusal path writes: not the server's."""


@dataclass(frozen=True)
class Claimed:
    """A batch taken from the spool by this process: its entries, the file to remove, and the
    batch's digest (SHA-256 of its entries' canonical JSON, whatever the file's name or
    spelling), under which its write is remembered."""

    path: Path
    events: list[AuditEvent]
    digest: str = ""


def _encode(ev: AuditEvent) -> dict[str, Any]:
    ts = ev.timestamp or datetime.now(UTC)
    return {
        "actor": ev.actor,
        "action": ev.action,
        "project_id": ev.project_id,
        "dataset_id": ev.dataset_id,
        "job_id": ev.job_id,
        "details": dict(ev.details) if ev.details is not None else None,
        "ts": ts.astimezone(UTC).isoformat(),
    }


def _decode(obj: dict[str, Any]) -> AuditEvent:
    if not is_refusal_action(str(obj["action"])):
        raise NotARefusal(f"it holds a {str(obj['action'])[:64]!r} entry, which no refusal path writes")
    event = AuditEvent(
        str(obj["actor"]),
        str(obj["action"]),
        project_id=obj.get("project_id"),
        dataset_id=obj.get("dataset_id"),
        job_id=obj.get("job_id"),
        details=obj.get("details"),
        timestamp=datetime.fromisoformat(str(obj["ts"])),
    )
    # One that cannot be written (a bad actor, an entry too large) would fail every write it
    # waits in, and every refusal after it would wait on disk with it.
    check_event(event)
    return event


def digest_of(events: list[AuditEvent]) -> str:
    """The batch's identity: its entries, not the file's name or spelling."""
    canonical = json.dumps([_encode(e) for e in events], default=str, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def keep(home: Path, events: list[AuditEvent]) -> Path:
    """Write ``events`` to the spool durably (raises OSError if the state disk cannot take them
    either). Each keeps the time of its refusal, not of its later write."""
    folder = spool_dir(home)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    name = f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')}-{uuid.uuid4().hex}{SUFFIX}"
    path = folder / name
    body = json.dumps([_encode(e) for e in events], default=str, separators=(",", ":"))
    privatefile.replace(path, body.encode())  # data synced, renamed into place, folder synced
    return path


def _takeable(path: Path) -> bool:
    """A batch nobody holds: never claimed, or claimed by a process that is gone."""
    if path.name.endswith(SUFFIX):
        return not path.name.startswith(".")
    head, _, pid = path.name.rpartition(TAKEN)
    if not head or not pid.isdigit():
        return False
    if int(pid) == os.getpid():  # ours, unless an earlier process of the same id left it
        with _held_lock:
            return str(path) not in _held
    return not liveness.owner_alive(int(pid), None)


def waiting(home: Path) -> list[Path]:
    """The batches on disk that this process could take now, oldest first."""
    folder = spool_dir(home)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and _takeable(p))


def claim(home: Path) -> list[Claimed]:
    """Take every batch waiting on disk (renamed to this process's name first). A file that
    cannot be read is named in the log and left for an operator (`tre admin doctor` says so)."""
    out = []
    for path in waiting(home):
        base = path.name.rpartition(TAKEN)[0] or path.name
        mine = path.with_name(f"{base}{TAKEN}{os.getpid()}")
        try:
            os.rename(path, mine)  # atomic: another process that took it first wins
        except FileNotFoundError:
            continue
        try:
            events = [_decode(o) for o in json.loads(mine.read_bytes())]
        except NotARefusal as exc:
            ALERT.critical(
                "spooled batch %s is not the server's (%s): nothing of it is written; the state "
                "directory was written by someone else, keep the file as evidence",
                mine,
                exc,
            )
            os.rename(mine, mine.with_name(f".damaged-{base}"))
            continue
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:200]
            log.error("spooled refusal entries %s cannot be read (%s); left for an operator", mine, why)
            os.rename(mine, mine.with_name(f".damaged-{base}"))
            continue
        digest = digest_of(events)
        # Each entry names its batch: a batch written twice (its memory lost with the table)
        # shows in the signed log itself, and `tre audit check` names it.
        events = [replace(e, details={**(e.details or {}), BATCH_FIELD: digest}) for e in events]
        with _held_lock:
            _held.add(str(mine))
        out.append(Claimed(mine, events, digest))
    return out


def not_yet_written(session: Session, claimed: list[Claimed]) -> set[int]:
    """In ``session`` (the transaction that writes the entries): remember each claimed batch
    as written, and return the ``id()`` of the entries of those written before (or claimed
    twice here), which must not be written again. A batch two processes write at once: the
    second commit fails on the digest's key, and its file waits for the next write."""
    digests = {c.digest for c in claimed if c.digest}
    done = set(session.scalars(select(AuditSpoolBatch.digest).where(AuditSpoolBatch.digest.in_(digests))))
    skip: set[int] = set()
    for c in claimed:
        if not c.digest:
            continue
        if c.digest in done:
            log.warning(
                "spooled batch %s was written before (digest %s); not written again", c.path, c.digest
            )
            skip.update(id(e) for e in c.events)
            continue
        done.add(c.digest)
        session.add(AuditSpoolBatch(digest=c.digest))
    return skip


def give_back(claimed: list[Claimed]) -> None:
    """Writing the claimed batches failed: they wait on disk again (under this process's name,
    which it takes again; another process only once this one is gone)."""
    with _held_lock:
        _held.difference_update(str(c.path) for c in claimed)


def release(claimed: list[Claimed]) -> None:
    """The claimed batches were written (committed): remove their files."""
    for c in claimed:
        c.path.unlink(missing_ok=True)
    give_back(claimed)
    if claimed:
        privatefile.fsync_dir(claimed[0].path.parent)


def damaged(home: Path) -> list[Path]:
    folder = spool_dir(home)
    return sorted(folder.glob(".damaged-*")) if folder.is_dir() else []
