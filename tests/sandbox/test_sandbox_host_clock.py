"""A local job learns neither when the host booted nor which boot it runs in (redteam round 15).

Before: a job's ``CLOCK_BOOTTIME`` and ``CLOCK_MONOTONIC`` were the host's (seconds since the
host booted), /proc/uptime and ``sysinfo``'s uptime the host's uptime at the job's start,
/proc/stat's ``btime`` the host's boot instant, its own start time in /proc/self/stat counted
from the host's boot, and /proc/sys/kernel/random/boot_id the host's boot id: each one a
fingerprint of the machine, and of its reboots, the same in every job on it. Now the job
runs in a time namespace whose boot is its start (`tre.executors.jobclock`), its /proc files
and ``sysinfo`` follow that clock, and boot_id is masked.
"""

from __future__ import annotations

import math
import os
import textwrap
import time
from pathlib import Path

import pytest

from tests.sandbox.conftest import Sandbox
from tre.executors import jobclock

PROBE = textwrap.dedent(
    """
    import ctypes, json, time
    def read(p):
        try:
            with open(p) as fh:
                return fh.read()
        except OSError as exc:
            return f"error {exc.errno}"
    class SI(ctypes.Structure):
        _fields_ = [("uptime", ctypes.c_long), ("rest", ctypes.c_ulong * 9), ("procs", ctypes.c_ushort),
                    ("pad", ctypes.c_ushort), ("high", ctypes.c_ulong * 2), ("unit", ctypes.c_uint),
                    ("f", ctypes.c_char * 8)]
    si = SI()
    ctypes.CDLL(None).sysinfo(ctypes.byref(si))
    stat = read("/proc/self/stat")
    print(json.dumps({
        "boottime": time.clock_gettime(time.CLOCK_BOOTTIME),
        "monotonic": time.clock_gettime(time.CLOCK_MONOTONIC),
        "realtime": time.time(),
        "uptime": float(read("/proc/uptime").split()[0]),
        "btime": int(next(l.split()[1] for l in read("/proc/stat").splitlines() if l.startswith("btime"))),
        "start_ticks": int(stat[stat.rfind(")") + 2:].split()[19]),
        "sysinfo_uptime": si.uptime,
        "boot_id": read("/proc/sys/kernel/random/boot_id").strip(),
    }))
    """
)


@pytest.mark.skipif(not jobclock.supported(), reason="this kernel has no time namespaces")
def test_a_job_cannot_tell_when_the_host_booted(sandbox: Sandbox) -> None:
    before_boot = time.clock_gettime(time.CLOCK_BOOTTIME)
    before_mono = time.clock_gettime(time.CLOCK_MONOTONIC)
    host_btime = time.time() - before_boot
    run = sandbox.run(PROBE)
    after_boot = time.clock_gettime(time.CLOCK_BOOTTIME)
    after_mono = time.clock_gettime(time.CLOCK_MONOTONIC)
    assert run.result.state == "succeeded", run.log
    seen = run.json_lines()[-1]
    # Shifted back by at least the host's whole seconds before the job started: the job's
    # clocks count from its own start, not from the host's boot.
    bound_boot = after_boot - math.floor(before_boot)
    assert seen["boottime"] <= bound_boot, (seen, before_boot)
    assert seen["monotonic"] <= after_mono - math.floor(before_mono), (seen, before_mono)
    for key in ("uptime", "sysinfo_uptime"):
        assert seen[key] <= bound_boot, (key, seen, before_boot)
    # Its boot instant is its start (to the second), not the host's; its start time agrees.
    assert seen["btime"] >= math.floor(host_btime) + math.floor(before_boot) - 1, (seen, host_btime)
    assert seen["start_ticks"] / os.sysconf("SC_CLK_TCK") <= bound_boot, seen
    assert abs((seen["realtime"] - seen["boottime"]) - seen["btime"]) < 2, seen
    host_boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert host_boot_id not in seen["boot_id"] and seen["boot_id"] == "", seen
