"""A local job's own clocks since boot: a time namespace whose boot is the job's start.

Why (redteam round 15): a job read the host's ``CLOCK_BOOTTIME`` and ``CLOCK_MONOTONIC``
(seconds since the host booted, to the nanosecond), the host's boot time in /proc/stat's
``btime`` and the host's uptime at the job's start in /proc/uptime and ``sysinfo``, and every
process start time in /proc/<pid>/stat counted from the host's boot. The boot instant is a
fingerprint of the machine (two jobs whose clocks agree ran on the same host, one whose
boot moved ran after a reboot), the same identifier as /proc/sys/kernel/random/boot_id. A
time namespace (Linux 5.6) shifts both clocks for the processes in it: the launcher's
``unshare --time`` puts every process of the job in one whose clocks read about zero at its
start. Wall-clock time (``CLOCK_REALTIME``) is not namespaced and stays the true time.

What remains: the offsets are whole seconds (``unshare``'s unit), so the job's clocks start
between zero and one second plus the launch time, and that fraction is the host's.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path


def supported(ns: Path = Path("/proc/self/ns/time")) -> bool:
    """Whether this kernel has time namespaces."""
    return ns.exists()


@dataclass(frozen=True)
class JobClock:
    """Seconds added to the host's monotonic and boot-time clocks inside the job (<= 0)."""

    monotonic_offset: int = 0
    boottime_offset: int = 0

    @classmethod
    def starting_now(cls) -> JobClock:
        """Offsets that bring both clocks to (almost) zero now: the job's boot is its start."""
        return cls(
            -math.floor(time.clock_gettime(time.CLOCK_MONOTONIC)),
            -math.floor(time.clock_gettime(time.CLOCK_BOOTTIME)),
        )

    def unshare_args(self) -> list[str]:
        """util-linux ``unshare`` options: a new time namespace with these offsets (its
        children enter it; the ``=`` keeps a negative number from reading as an option)."""
        return ["--time", f"--monotonic={self.monotonic_offset}", f"--boottime={self.boottime_offset}"]

    def boottime(self) -> float:
        """The job's ``CLOCK_BOOTTIME`` now: what its uptime is."""
        return time.clock_gettime(time.CLOCK_BOOTTIME) + self.boottime_offset
