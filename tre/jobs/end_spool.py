"""How a job ended, kept on local disk while the database cannot take it.

A worker whose database stays away (a server gone for good, a disk that stays full) used to
hold the job's slot retrying for ever, and the job stayed "running". Now the end is written
here at once (one small JSON file per job under ``<home>/spool/job-ends``, synced and
renamed into place, so a file is whole or absent) and the slot is freed. The end is written
to the database, once, by whichever comes first when it answers again: the worker's next
round (this one or any other on the state directory), or ``tre admin doctor``.

A spooled end is written only while the job is still running under the worker that spooled
it: if meanwhile another worker ended it as lost, the file is dropped (a job never ends
twice). The row is locked while it is checked and written, so two replayers cannot both
write it.

Whoever can write the state directory can write this folder (round 17 probed it as round 16
did the refusal spool). A file is read only as what `spool_end` writes (`read_end`): a
regular file (not a FIFO, whose open blocked the worker round for ever, nor a link), at
most `MAX_FILE_BYTES`, a JSON object of exactly its five fields, no repeated key, its
``job_id`` the file's own name (a file named after one job ending another was written, and
kept the named job from being ended as lost), a terminal state, a 32-bit exit code or none,
a worker id that fits its column. Anything else is set aside as ``<name>.damaged`` with a
CRITICAL line, never written, and no longer stands for the job's end: the job is ended as
lost by the next worker round, as if the file had been deleted (a deleted file is that too).
A copy put back after its end was written finds the job ended and is dropped.

A file in exactly that form with the running job's worker id (no secret: the API and the log
name it) was written as the job's end (round 17's residual). So the worker seals what it
writes (``seal``: HMAC-SHA-256 of the five fields under the job's ``end_key``, a secret it
drew when it claimed or took over the job, kept in the job's row and its memory, never on
this disk): an end whose job row holds a key is written only with that key's seal;
otherwise it is set aside like a damaged file, and the job runs on (or is ended as lost if
its worker is gone). A row without a key (claimed before migration 0020) takes an unsealed
end as before. Residual: whoever can also read the database (an SQLite file in the same
state directory) can read the key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from tre import privatefile
from tre.config import Settings
from tre.executors.base import JobResult
from tre.states import JobState
from tre.store.db import session_scope
from tre.store.models import Job

log = logging.getLogger(__name__)
ALERT = logging.getLogger("tre.audit.alert")

# What `spool_end` writes is a few hundred bytes; the reason is the executor's sentence.
MAX_FILE_BYTES = 64 * 1024
DAMAGED = ".damaged"
_FIELDS = frozenset({"job_id", "worker_id", "state", "exit_code", "reason"})
SEAL = "seal"  # the optional sixth field: `seal_of` the five
_INT32 = (-(2**31), 2**31 - 1)
_WORKER_ID_MAX = 64  # jobs.worker_id's width
_REASON_MAX_CHARS = 8192

Finish = Callable[[Session, Job, JobResult], None]


@dataclass(frozen=True)
class SpooledEnd:
    job_id: str
    worker_id: str
    result: JobResult
    path: Path
    seal: str | None = None
    identity: tuple[int, int] | None = None  # (device, inode) of the file read

    def sealed_by(self, key: str | None) -> bool:
        """Whether this end may be written for a job whose row holds ``key`` (none: any)."""
        if key is None:
            return True
        want = seal_of(key, self.job_id, self.worker_id, self.result)
        return self.seal is not None and hmac.compare_digest(self.seal, want)


def seal_of(key: str, job_id: str, worker_id: str, result: JobResult) -> str:
    """HMAC-SHA-256 under the job's ``end_key`` of the five fields as written (canonical JSON)."""
    fields = [job_id, worker_id, str(result.state), result.exit_code, result.reason]
    message = json.dumps(fields, separators=(",", ":"), ensure_ascii=True).encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def spool_dir(settings: Settings) -> Path:
    return settings.home / "spool" / "job-ends"


def _name_ok(job_id: str) -> bool:
    return bool(job_id) and all(c.isalnum() or c in "-_" for c in job_id)


def spool_end(
    settings: Settings, job_id: str, worker_id: str, result: JobResult, key: str | None = None
) -> Path:
    """Keep ``result`` on disk (raises OSError if the state disk cannot take it either),
    sealed with the job's ``end_key`` when the worker holds one."""
    if not _name_ok(job_id):
        raise ValueError(f"not a job id: {job_id!r}")
    folder = spool_dir(settings)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"{job_id}.json"
    reason = result.reason[:_REASON_MAX_CHARS]
    body: dict[str, object] = {
        "job_id": job_id,
        "worker_id": worker_id,
        "state": str(result.state),
        "exit_code": result.exit_code,
        # Bounded so that what is written here is always read back (`MAX_FILE_BYTES`: each
        # character is at most 6 bytes of JSON); the executors' sentences are far shorter.
        "reason": reason,
    }
    if key is not None:
        body[SEAL] = seal_of(key, job_id, worker_id, JobResult(result.state, result.exit_code, reason))
    privatefile.replace(path, json.dumps(body).encode())
    # The rename itself made durable: a power cut must not lose the end the slot was freed for.
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


class DamagedEnd(ValueError):
    """A spool file that is not what `spool_end` writes; the message says how (no content).

    ``identity`` is the (device, inode) of the file that was read, None when none could be
    opened: `_set_aside` moves that file only, never one a worker put in its place since."""

    def __init__(self, why: str, identity: tuple[int, int] | None = None) -> None:
        super().__init__(why)
        self.identity = identity


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise DamagedEnd("a field is repeated")
    return dict(pairs)


def _read_bounded(path: Path) -> tuple[bytes, tuple[int, int]]:
    """The file's bytes, if it is a regular file of at most `MAX_FILE_BYTES` (never blocks:
    a FIFO is opened non-blocking and refused, a symbolic link is not followed)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise  # written and removed by another worker since the folder was listed: no damage
    except OSError as exc:
        raise DamagedEnd(f"cannot be opened as a plain file ({exc.strerror})") from exc
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        identity = (st.st_dev, st.st_ino)
        if not stat.S_ISREG(st.st_mode):
            raise DamagedEnd("is not a regular file", identity)
        if st.st_size > MAX_FILE_BYTES:
            raise DamagedEnd(f"is {st.st_size} bytes, more than {MAX_FILE_BYTES}", identity)
        data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise DamagedEnd(f"is more than {MAX_FILE_BYTES} bytes", identity)
    return data, identity


def read_end(path: Path) -> SpooledEnd:
    """One spool file as `spool_end` wrote it, or `DamagedEnd` saying what is wrong."""
    data, identity = _read_bounded(path)
    try:
        return replace(_parse_end(path, data), identity=identity)
    except DamagedEnd as exc:
        exc.identity = identity
        raise


def _parse_end(path: Path, data: bytes) -> SpooledEnd:
    """The end ``data`` (read from ``path``) states, or `DamagedEnd`."""
    try:
        body = json.loads(data.decode("utf-8"), object_pairs_hook=_unique_keys)
    except (UnicodeDecodeError, RecursionError, json.JSONDecodeError) as exc:
        raise DamagedEnd("is not UTF-8 JSON") from exc
    if not isinstance(body, dict) or set(body) - {SEAL} != _FIELDS:
        raise DamagedEnd(f"is not an object of exactly the fields {sorted(_FIELDS)} (and a seal)")
    seal = body.get(SEAL)
    if seal is not None and (not isinstance(seal, str) or len(seal) != 64):
        raise DamagedEnd("has a seal that is not 64 hex digits")
    job_id, worker_id, code, reason = body["job_id"], body["worker_id"], body["exit_code"], body["reason"]
    if not isinstance(job_id, str) or not _name_ok(job_id) or f"{job_id}.json" != path.name:
        raise DamagedEnd("names another job than its file name")
    if not isinstance(worker_id, str) or not 0 < len(worker_id) <= _WORKER_ID_MAX:
        raise DamagedEnd("has no usable worker id")
    if code is not None and (
        not isinstance(code, int) or isinstance(code, bool) or not _INT32[0] <= code <= _INT32[1]
    ):
        raise DamagedEnd("has an exit code that is not a 32-bit integer or null")
    if not isinstance(reason, str):
        raise DamagedEnd("has a reason that is not text")
    try:
        result = JobResult(JobState(body["state"]), code, reason)
    except ValueError as exc:  # not a state, or not a terminal one
        raise DamagedEnd("has no terminal job state") from exc
    return SpooledEnd(job_id, worker_id, result, path, seal if isinstance(seal, str) else None)


def _set_aside(path: Path, why: str, identity: tuple[int, int] | None = None) -> None:
    """Move a damaged file out of the spool (kept for an operator as ``<name>.damaged``).

    Only the file that was read (``identity``; with none, a path that is still no regular
    file): a worker may have put its job's real end in the damaged one's place since (red
    team round 18: that end was set aside and its job ended as lost). The new file is read
    next round. Residual: a replacement in the microseconds between this check and the move."""
    try:
        now = path.lstat()
    except FileNotFoundError:
        return  # removed since: nothing to set aside
    except OSError:
        now = None
    if now is not None and (
        (now.st_dev, now.st_ino) != identity if identity is not None else stat.S_ISREG(now.st_mode)
    ):
        log.warning("spooled job end %s was replaced since it was read; read again next round", path)
        return
    ALERT.critical(
        "spooled job end %s %s: not what a worker writes; set aside as %s%s, not written",
        path,
        why,
        path.name,
        DAMAGED,
    )
    try:
        os.replace(path, path.with_name(path.name + DAMAGED))
    except OSError as exc:  # left in place: read again (and refused again) next time
        log.error("cannot set %s aside (%s)", path, exc.strerror)


def spooled(settings: Settings) -> list[SpooledEnd]:
    """The ends waiting for the database; a damaged file is set aside (`read_end`)."""
    folder = spool_dir(settings)
    if not folder.is_dir():
        return []
    ends = []
    for path in sorted(folder.glob("*.json")):
        try:
            ends.append(read_end(path))
        except FileNotFoundError:
            continue  # another worker wrote this end and removed its file since the listing
        except DamagedEnd as exc:
            _set_aside(path, str(exc), exc.identity)
    return ends


def damaged(settings: Settings) -> list[Path]:
    """Spool files set aside as damaged (`tre admin doctor` names them)."""
    folder = spool_dir(settings)
    return sorted(folder.glob(f"*.json{DAMAGED}")) if folder.is_dir() else []


def is_spooled(settings: Settings, job_id: str) -> bool:
    """Whether ``job_id``'s end waits here for the database (one stat, not following a
    link; the API asks it of each running job it shows)."""
    if not _name_ok(job_id):
        return False
    try:
        return stat.S_ISREG((spool_dir(settings) / f"{job_id}.json").lstat().st_mode)
    except OSError:
        return False


def spooled_job_ids(settings: Settings) -> set[str]:
    return {e.job_id for e in spooled(settings)}


def replay(settings: Settings, engine: Engine, finish: Finish, away: tuple[type[BaseException], ...]) -> int:
    """Write every spooled end the database will take now; how many were written.

    Raises what the database raises when it is still away (``away``: the files stay for the
    next try). Any other failure of one end is logged and that file left for an operator
    (`tre admin doctor` names it), so that one bad end never holds up the others, nor the
    worker round that called this."""
    written = 0
    for end in spooled(settings):
        try:
            written += _write(engine, finish, end)
        except away:
            raise
        except Exception:  # noqa: BLE001 - one end must not stop the others
            log.exception(
                "spooled end of job %s could not be written; %s left in place", end.job_id, end.path
            )
    return written


def _write(engine: Engine, finish: Finish, end: SpooledEnd) -> int:
    """Write one end (1) or drop it as ended elsewhere (0), then remove its file; an end not
    sealed with its job's key is set aside (0), never written."""
    with session_scope(engine) as s:
        job = s.get(Job, end.job_id, with_for_update=True)
        ours = job is not None and job.state == JobState.running.value and job.worker_id == end.worker_id
        forged = job is not None and ours and not end.sealed_by(job.end_key)
        if job is not None and ours and not forged:
            finish(s, job, end.result)
        elif not forged:
            log.warning(
                "job %s was ended elsewhere while its end (%s) waited on disk; that end is dropped",
                end.job_id,
                end.result.state,
            )
    if forged:  # the job runs on under its worker (or is ended as lost if that is gone)
        _set_aside(end.path, "is not sealed with its job's key", end.identity)
        return 0
    # After the commit: a crash between the two leaves a file whose job has ended, which
    # the next replay drops (the check above), never writes again.
    end.path.unlink(missing_ok=True)
    return 1 if ours else 0
