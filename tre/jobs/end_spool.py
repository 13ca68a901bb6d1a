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
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
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

Finish = Callable[[Session, Job, JobResult], None]


@dataclass(frozen=True)
class SpooledEnd:
    job_id: str
    worker_id: str
    result: JobResult
    path: Path


def spool_dir(settings: Settings) -> Path:
    return settings.home / "spool" / "job-ends"


def _name_ok(job_id: str) -> bool:
    return bool(job_id) and all(c.isalnum() or c in "-_" for c in job_id)


def spool_end(settings: Settings, job_id: str, worker_id: str, result: JobResult) -> Path:
    """Keep ``result`` on disk (raises OSError if the state disk cannot take it either)."""
    if not _name_ok(job_id):
        raise ValueError(f"not a job id: {job_id!r}")
    folder = spool_dir(settings)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"{job_id}.json"
    body = {
        "job_id": job_id,
        "worker_id": worker_id,
        "state": str(result.state),
        "exit_code": result.exit_code,
        "reason": result.reason,
    }
    privatefile.replace(path, json.dumps(body).encode())
    # The rename itself made durable: a power cut must not lose the end the slot was freed for.
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def spooled(settings: Settings) -> list[SpooledEnd]:
    """The ends waiting for the database (a damaged file is named in the log and skipped)."""
    folder = spool_dir(settings)
    if not folder.is_dir():
        return []
    ends = []
    for path in sorted(folder.glob("*.json")):
        try:
            body = json.loads(path.read_text())
            result = JobResult(JobState(body["state"]), body["exit_code"], str(body["reason"]))
            ends.append(SpooledEnd(str(body["job_id"]), str(body["worker_id"]), result, path))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("spooled job end %s cannot be read (%s); left in place for an operator", path, exc)
    return ends


def is_spooled(settings: Settings, job_id: str) -> bool:
    """Whether ``job_id``'s end waits here for the database (one stat; the API asks it of
    each running job it shows)."""
    return _name_ok(job_id) and (spool_dir(settings) / f"{job_id}.json").is_file()


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
    """Write one end (1) or drop it as ended elsewhere (0), then remove its file."""
    with session_scope(engine) as s:
        job = s.get(Job, end.job_id, with_for_update=True)
        ours = job is not None and job.state == JobState.running.value and job.worker_id == end.worker_id
        if job is not None and ours:
            finish(s, job, end.result)
        else:
            log.warning(
                "job %s was ended elsewhere while its end (%s) waited on disk; that end is dropped",
                end.job_id,
                end.result.state,
            )
    # After the commit: a crash between the two leaves a file whose job has ended, which
    # the next replay drops (the check above), never writes again.
    end.path.unlink(missing_ok=True)
    return 1 if ours else 0
