"""Whether the process that made a leftover (a scratch folder, a job cgroup) still lives.

A pid alone is not an identity: pids are reused, so a leftover of a worker that died months
ago can carry the pid of some unrelated process running now, and a check on the pid alone
would keep that leftover (its loop mount, its image file) for ever. Names therefore carry the
creator's pid *and* its start time (clock ticks since boot, field 22 of ``/proc/<pid>/stat``);
a leftover is its creator's only while a process with that pid and that start time exists.
A reboot ends every process, and the start times count from the new boot, so a leftover from
before a reboot is never taken for a live worker's.
"""

from __future__ import annotations

import os


def process_start(pid: int) -> int | None:
    """The start time of process ``pid`` in clock ticks since boot; None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may itself hold spaces or ")".
    fields = stat[stat.rfind(b")") + 2 :].split()
    try:
        return int(fields[19])  # field 22 of the whole line
    except (IndexError, ValueError):
        return None


def owner_tag() -> str:
    """``<pid>.<start time>`` of this process: what leftover names carry (see the module).

    Read each time (one small /proc read per job): a cached value would be wrong in a fork."""
    pid = os.getpid()
    return f"{pid}.{process_start(pid) or 0}"


def owner_alive(pid: int, start: int | None) -> bool:
    """Whether the creator named by ``pid`` (and ``start``, when the name holds one) lives.

    Without a start time (names from before start times were recorded) a live pid counts as
    alive: keeping a leftover is safe, removing a live job's is not.
    """
    if pid <= 0:
        return False
    now = process_start(pid)
    if now is None:
        return os.path.exists(f"/proc/{pid}")  # unreadable stat but present: assume alive
    return start is None or now == start
