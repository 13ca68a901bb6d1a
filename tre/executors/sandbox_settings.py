"""The local sandbox's settings, checked when a process that will run jobs starts.

Why here and not in `tre.config`: these values are only wrong in relation to the host (a
user that does not exist, a cgroup folder that is not a usable cgroup v2 parent), and only
matter where the local executor runs jobs: `tre serve` with its worker, `tre worker`. Before,
they were read when the first job ran, so a typo let the service start and then failed (the
job user) or silently weakened (the cgroup parent: jobs fell back to other cgroups, or to
rlimits) every job. Now a wrong value stops the process at start with one line naming the
variable, like any other bad setting (`tre.config.SettingsError`).
"""

from __future__ import annotations

import os
import pwd
import shutil
from pathlib import Path

from tre.config import Settings, SettingsError
from tre.executors.jobuids import SUBID_FILES

# The cgroup v2 controllers a job cgroup needs under a configured parent (tre.executors.cgroups).
REQUIRED_CONTROLLERS = ("memory", "pids")


def job_user_ids(name: str) -> tuple[int, int]:
    """The job user's host uid and gid; refuses a missing user, root, and the calling
    process's own user (a job must never run with the worker's rights). Raises
    `ValueError` with the reason."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise ValueError(f"the job user {name!r} does not exist; run scripts/install-system-deps") from None
    if entry.pw_uid == 0 or entry.pw_gid == 0 or entry.pw_uid == os.getuid():
        raise ValueError(f"the job user {name!r} must be neither root nor the worker's user")
    return entry.pw_uid, entry.pw_gid


def cgroup_parent_problem(parent: Path) -> str | None:
    """Why ``parent`` cannot hold job cgroups, or None: it must be a cgroup v2 folder that
    offers the memory and pids controllers (a delegated, process-free one; docs/sandbox.md)."""
    if not parent.is_absolute():
        return "not an absolute path"
    if not parent.is_dir():
        return "no such folder"
    controllers = parent / "cgroup.controllers"
    if not controllers.is_file():
        return "not a cgroup v2 folder (no cgroup.controllers)"
    try:
        offered = set(controllers.read_text().split())
    except OSError as exc:
        return f"cannot read its cgroup.controllers ({exc.strerror})"
    missing = [c for c in REQUIRED_CONTROLLERS if c not in offered]
    if missing:
        return f"its cgroup.controllers lacks {', '.join(missing)}"
    if not os.access(parent, os.W_OK):
        return "not writable by this process"
    return None


NOBODY_UID = 65534  # the kernel's overflow uid and the usual `nobody`: owner of every unmapped id


def _overflow_uid() -> int:
    try:
        return int(Path("/proc/sys/kernel/overflowuid").read_text())
    except (OSError, ValueError):
        return NOBODY_UID


def _subordinate_ranges(path: Path) -> list[tuple[str, int, int]]:
    """``(owner, first, count)`` of each line of /etc/subuid: the host uids rootless
    containers of that owner run as."""
    try:
        text = path.read_text()
    except OSError:
        return []
    ranges = []
    for line in text.splitlines():
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            ranges.append((parts[0], int(parts[1]), int(parts[2])))
    return ranges


def uid_range_problem(
    base: int, count: int, job_uid: int | None, subid_files: tuple[Path, ...] = SUBID_FILES
) -> str | None:
    """Why the per-job host uids ``base`` .. ``base + count - 1`` cannot be used, or None.

    Why: a job's uid must be its own. A uid that is also an account (the job user, tre's own
    service user, ``nobody``, a person), the kernel's overflow uid (what every unmapped id
    shows as), or one of the uids a user's rootless containers run as (/etc/subuid) would
    share the per-user kernel counters with, and could signal or trace, something that is
    not this job. Accounts are also skipped when a uid is handed out, but a listed one in
    the range is a configuration mistake, said at start.
    """
    if count == 0:
        return None
    end = base + count  # exclusive
    named = {
        **({job_uid: "the job user's uid"} if job_uid is not None else {}),
        os.getuid(): "tre's own uid",
        os.geteuid(): "tre's own uid",
        NOBODY_UID: "nobody's uid",
        _overflow_uid(): "the kernel's overflow uid (nobody)",  # usually the same, said so
    }
    for uid, what in sorted(named.items()):
        if base <= uid < end:
            return f"the range {base}..{end - 1} holds {uid}, {what}"
    for entry in pwd.getpwall():
        if base <= entry.pw_uid < end:
            return (
                f"the range {base}..{end - 1} holds {entry.pw_uid}, the uid of the account {entry.pw_name!r}"
            )
    for subid_file in subid_files:
        for owner, first, length in _subordinate_ranges(subid_file):
            if first < end and base < first + length:
                return (
                    f"the range {base}..{end - 1} overlaps {first}..{first + length - 1}, the subordinate "
                    f"ids of {owner!r} in {subid_file}"
                )
    return None


def check_sandbox_uid_range(settings: Settings, job_uid: int | None = None) -> None:
    """The per-job uid range against this host (`uid_range_problem`), one line if wrong: for
    the local executor and the Docker executor, which both hand out its uids."""
    base, count = settings.sandbox_uid_base, settings.sandbox_uid_count
    problem = uid_range_problem(base, count, job_uid)
    if problem is not None:
        raise SettingsError(
            f"invalid setting TRE_SANDBOX_UID_BASE={base} with TRE_SANDBOX_UID_COUNT={count}: {problem}; "
            "choose a range of unused uids (docs/configuration.md)"
        )


def check_local_sandbox_settings(settings: Settings) -> None:
    """Every ``TRE_SANDBOX_*`` value the local executor will use, checked against the host now.
    (``TRE_SANDBOX_UID``/``GID`` ranges, the per-job uid range's end and
    ``TRE_SANDBOX_HOST_TOOLCHAIN`` are checked with the other settings when they are read;
    what the per-job uid range holds on this host is checked here.) First what
    ``TRE_EXECUTOR=local`` (the default) needs of the host at all: root, which runs each
    job as the job user and mounts its size-limited /output, and bubblewrap; before, each
    job failed with that reason."""
    if os.geteuid() != 0:
        raise SettingsError(
            "invalid setting TRE_EXECUTOR='local': the local sandbox runs jobs only when tre runs as "
            "root (it runs each job as TRE_SANDBOX_JOB_USER and mounts its /output); start it as root, "
            "or run the API alone with --no-worker"
        )
    if shutil.which("bwrap") is None:
        raise SettingsError(
            "invalid setting TRE_EXECUTOR='local': bubblewrap (bwrap) is not installed; "
            "run scripts/install-system-deps"
        )
    try:
        job_uid, _job_gid = job_user_ids(settings.sandbox_job_user)
    except ValueError as exc:
        name = settings.sandbox_job_user
        raise SettingsError(f"invalid setting TRE_SANDBOX_JOB_USER={name!r}: {exc}") from None
    check_sandbox_uid_range(settings, job_uid)
    parent = settings.sandbox_cgroup_parent
    if parent is not None:
        problem = cgroup_parent_problem(Path(parent))
        if problem is not None:
            raise SettingsError(f"invalid setting TRE_SANDBOX_CGROUP_PARENT={str(parent)!r}: {problem}")
