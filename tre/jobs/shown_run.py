"""How a job's end looks to a researcher: its exit code, end reason and times, coarsened.

A job chooses its exit status (0-255: a byte a job, read by its researcher before anyone
reviews anything), the signal it dies of (`kill -<n> $$`: 5 bits) and the microsecond it
ends (`finished_at - started_at` to the microsecond: ~29 bits for a 10-minute job, read at
leisure, no polling needed) (redteam14b). A researcher therefore sees:

- the exit code as a class: 0 when the job exited 0, 1 for any other code, None when it has
  none (the platform stopped it, or it never ran). Whether the job succeeded is the state.
- the reason with the job's numbers taken out: ``exited with code 3`` reads ``exited with a
  non-zero code``, ``killed by SIGUSR1`` reads ``killed by a signal``. Reasons the platform
  writes from its own limits (time, memory, output quota) are kept: the job can pick one of
  those few (a residual, SECURITY.md), not a number.
- its creation, start and end times rounded down to a `GRAIN_S` grid (all three, so they
  stay in order), so a researcher still learns roughly how long it ran (to the minute), and
  no time is shown that lies in the future. The start counts too: a job of the same project
  that ends when it chooses frees the slot the next one starts in.

Staff reviewing a job of a project they are not a member of see the exact values (the same
rule as raw output names, `tre.access.sees_raw_output_names`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

# The precision of the times a researcher sees: a run's length is told to the minute.
GRAIN_S = 60

NON_ZERO = "exited with a non-zero code"
SIGNALLED = "killed by a signal"

_EXITED = re.compile(r"exited with code -?\d+")
_KILLED = re.compile(r"killed by (?:SIG[A-Z0-9+-]+|signal -?\d+)")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def shown_exit_code(code: int | None, *, exact: bool) -> int | None:
    """The exit code a caller sees: exact for staff, else 0, 1 (any other code) or None."""
    if exact or code is None:
        return code
    return exit_class(code)


def exit_class(code: int) -> int:
    """0 for an exit code of 0, 1 for any other: whether the job's process said it succeeded."""
    return 0 if code == 0 else 1


def shown_reason(reason: str | None, *, exact: bool) -> str | None:
    """The end reason without the job's exit code or signal in it (for researchers)."""
    if exact or not reason:
        return reason

    def _exited(match: re.Match[str]) -> str:
        return match.group(0) if match.group(0) == "exited with code 0" else NON_ZERO

    return _KILLED.sub(SIGNALLED, _EXITED.sub(_exited, reason))


def shown_time(value: datetime | None, *, exact: bool) -> datetime | None:
    """``value`` rounded down to the `GRAIN_S` grid for researchers (floor keeps times in order)."""
    if exact or value is None:
        return value
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    grain = GRAIN_S * 1_000_000
    micro = (aware - _EPOCH) // timedelta(microseconds=1)
    shown = _EPOCH + timedelta(microseconds=micro // grain * grain)
    return shown if value.tzinfo is not None else shown.replace(tzinfo=None)


def shown_job_fields(job: Mapping[str, Any], *, exact: bool) -> dict[str, Any]:
    """The fields of ``job`` (a row or a model's dump) that a job chooses, as the caller sees
    them; only keys ``job`` has are answered, so a listing's narrower rows work too."""
    shown: dict[str, Any] = {}
    if "exit_code" in job:
        shown["exit_code"] = shown_exit_code(job["exit_code"], exact=exact)
    if "reason" in job:
        shown["reason"] = shown_reason(job["reason"], exact=exact)
    for name in ("created_at", "started_at", "finished_at"):
        if name in job:
            shown[name] = shown_time(job[name], exact=exact)
    return shown
