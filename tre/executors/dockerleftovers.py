"""What a Docker worker that died left mounted on the host, swept by the next one.

Why (redteam round 15): a root Docker worker mounts, beside each job's output folder, the
job's read-only covers (`tre.executors.rocover`, ``.docker-cover-*``) and its output file
system (a loop-mounted image in ``.docker-output-*``). A worker that reattaches to the
container unmounts them at the end; a worker that never comes back, or whose container is
gone by then, left them mounted for good: loop devices, overlays and tmpfs mounts piling up
on the host, and the job's outputs inside an image nobody copies out. The local sandbox has
swept its own leftovers since round 11 (`tre.executors.outputfs.recover_stale`); these are
swept the same way.

Whose is a leftover: its name carries the creating worker's pid and start time
(`tre.executors.liveness`), so a live worker's are never touched, whichever worker looks; a
worker that reattaches renames the folders it takes over to its own name first (`adopt`),
so another worker's sweep leaves them to it. A dead worker's are kept while the job's
container still exists (or the engine cannot say): a worker will reattach to it and needs
them. Names made before round 15 carry no owner and count as a dead worker's.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from pathlib import Path

from tre.executors import liveness, outputfs, rocover
from tre.plural import count

log = logging.getLogger(__name__)

OUTPUT_PREFIX = ".docker-output-"
COVER_PREFIX = rocover.SCRATCH_PREFIX


def _pattern(prefix: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(prefix)}(?:(?P<pid>\d+)\.(?P<start>\d+)-)?(?P<token>[0-9a-f]{{8}})$")


OUTPUT_NAME = _pattern(OUTPUT_PREFIX)
COVER_NAME = _pattern(COVER_PREFIX)


def scratch_name(prefix: str) -> str:
    """``<prefix><pid>.<start time>-<token>``: a new scratch folder's name, this worker's."""
    return f"{prefix}{liveness.owner_tag()}-{uuid.uuid4().hex[:8]}"


def adopt(scratch: Path) -> Path:
    """Rename a scratch folder a dead worker left to this worker's name (its mounts move with
    it) and return the new path; where that fails, the old one."""
    for prefix, pattern in ((OUTPUT_PREFIX, OUTPUT_NAME), (COVER_PREFIX, COVER_NAME)):
        match = pattern.match(scratch.name)
        if match is None:
            continue
        target = scratch.with_name(f"{prefix}{liveness.owner_tag()}-{match['token']}")
        if target == scratch:
            return scratch
        try:
            scratch.rename(target)
        except OSError as exc:
            log.warning("could not take over %s: %s", scratch, exc)
            return scratch
        return target
    return scratch


def sweep(jobs_dir: Path, container_exists: Callable[[str], bool], uid: int, gid: int) -> int:
    """Unmount and remove the scratch folders under ``<jobs_dir>/<job id>/`` of workers that
    died, whose job's container no longer exists (``container_exists(job id)``); the outputs
    in a left output file system become plain files of ``uid``:``gid`` first. Returns how
    many folders were cleaned."""

    def keep(scratch: Path) -> bool:
        return container_exists(scratch.parent.name)

    recovered = outputfs.recover_stale([jobs_dir], uid, gid, pattern=OUTPUT_NAME, keep=keep)
    covers = outputfs.find_leftovers([jobs_dir], COVER_NAME, keep)
    for left in covers:
        rocover.unmount_all(left.scratch)
    if recovered or covers:
        log.warning(
            "cleaned what a Docker worker that died left: %s, %s",
            count(len(recovered), "output file system"),
            count(len(covers), "cover folder"),
        )
    return len(recovered) + len(covers)
