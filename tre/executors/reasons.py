"""The fixed vocabulary of job-end reasons that the local sandbox gives a researcher.

A job's ``reason`` is shown to researchers unscreened (also under ``log_visibility:
status_only``), so it must never carry text the job controls: no stderr, no file names,
no messages from bubblewrap that a job could imitate. Every reason is built here from
numbers and names the platform chose; details meant for staff (bubblewrap's own error, the
failing mount) go to the worker log under a reference id that the reason names.
"""

from __future__ import annotations

import signal
import uuid

SUCCEEDED = "exited with code 0"
CANCELLED = "cancelled on request"
TMP_FULL = "disk full in /tmp"
# The platform's own disk (the code store, the job's folders), not the job's /tmp or outputs.
STORAGE_FULL = "the server's storage was full; submit the job again once an admin made room"


def storage_full(reference: str) -> str:
    return f"{STORAGE_FULL} (ref: {reference})"


def exit_code(code: int) -> str:
    return f"exited with code {int(code)}"


def killed_by_signal(signum: int) -> str:
    try:
        name = signal.Signals(int(signum)).name
    except ValueError:
        name = f"signal {int(signum)}"
    return f"killed by {name}"


def time_limit(seconds: int) -> str:
    return f"exceeded time limit of {int(seconds)} s"


def memory_limit(mib: int) -> str:
    return f"killed: out of memory (limit {int(mib)} MiB)"


def output_quota(mib: int) -> str:
    return f"output quota of {int(mib)} MiB exceeded"


def output_entries(limit: int) -> str:
    return f"output holds more than {int(limit)} files and folders"


def output_depth(limit: int) -> str:
    return f"output folders nest deeper than {int(limit)} levels"


def process_limit_note(limit: int) -> str:
    """Appended to another reason when the process limit was hit on the way."""
    return f" (process limit of {int(limit)} reached)"


def new_reference() -> str:
    """A short id that ties a researcher-visible reason to the staff-only detail in the log."""
    return uuid.uuid4().hex[:12]


def setup_failed(ref: str) -> str:
    return f"sandbox setup failed (ref: {ref})"
