"""Tamper round 18: the job-end spool sets aside only the damaged file it read.

Two workers replay the spool. Between one worker's read of a damaged file and its move of
that file aside, a worker may put its job's real end in the same place (`spool_end` replaces
the file whole): the move by name then set the real end aside and the job was ended as lost.
The interleaving is played in order here on real files (no mocks): read, replace, set aside.
All three cases with a replacement failed before the fix (no identity was kept).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tre.config import Settings
from tre.executors.base import JobResult
from tre.jobs import end_spool
from tre.states import JobState

WORKER = "worker-a"


def _garbage(path: Path) -> None:
    path.write_bytes(b"not what a worker writes")


def _link(path: Path) -> None:
    os.symlink("/etc/hostname", path)


def _fields(path: Path) -> None:
    path.write_bytes(b'{"job_id": "x"}')


@pytest.mark.parametrize("plant", [_garbage, _link, _fields], ids=["not-json", "symlink", "fields"])
@pytest.mark.parametrize("replaced", [True, False], ids=["replaced", "left"])
def test_only_the_damaged_file_read_is_set_aside(
    settings: Settings, plant: Callable[[Path], None], replaced: bool
) -> None:
    job = f"job{plant.__name__.strip('_')}"
    folder = end_spool.spool_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{job}.json"
    plant(path)
    with pytest.raises(end_spool.DamagedEnd) as damage:
        end_spool.read_end(path)
    if replaced:  # the job's worker writes its real end now, in the damaged file's place
        end_spool.spool_end(settings, job, WORKER, JobResult(JobState.failed, 3, "exit 3"))
    end_spool._set_aside(path, str(damage.value), damage.value.identity)
    if replaced:
        kept = end_spool.read_end(path)
        assert (kept.job_id, kept.worker_id, kept.result.exit_code) == (job, WORKER, 3)
        assert end_spool.damaged(settings) == []
    else:
        assert not os.path.lexists(path)
        assert [p.name for p in end_spool.damaged(settings)] == [f"{job}.json{end_spool.DAMAGED}"]
