"""A job's CPU affinity is its CPU limit, not the host's processors (redteam round 13).

Before: ``os.sched_getaffinity(0)``, coreutils' and busybox's ``nproc`` and
``Cpus_allowed_list`` in ``/proc/self/status`` listed every CPU of the host (the host's
size), although ``os.cpu_count()`` said ``ceil(cpu)``; a job could also widen its own
affinity with ``sched_setaffinity`` and probe which CPU numbers exist. Now the job's cgroup
has a cpuset of ``ceil(cpu)`` CPUs, drawn at random from the worker's own (independent of
what other jobs hold, so it tells nothing about them), and the kernel keeps every process of
the job inside it whatever the job asks for.
"""

from __future__ import annotations

import math
import os
import textwrap

from tests.sandbox.conftest import Sandbox
from tre.executors import procview

PROGRAM = textwrap.dedent(
    """
    import json, os, subprocess
    import numpy as np
    status = dict(l.split(":", 1) for l in open("/proc/self/status") if ":" in l)
    before = sorted(os.sched_getaffinity(0))
    try:
        os.sched_setaffinity(0, range(64))  # widen to whatever exists
        widened = "ok"
    except OSError as exc:
        widened = exc.errno
    a = np.ones((200, 200))
    print(json.dumps({
        "affinity": before,
        "after_widening": sorted(os.sched_getaffinity(0)),
        "widened": widened,
        "status_list": status["Cpus_allowed_list"].strip(),
        "nproc": subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip(),
        "cpu_count": os.cpu_count(),
        "numpy": float((a @ a).sum()),
    }))
    """
)


def _cpu_list(cpus: list[int]) -> set[int]:
    return set(cpus)


def _parse_list(text: str) -> set[int]:
    out: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


def test_a_jobs_affinity_is_its_cpu_limit_and_cannot_be_widened(sandbox: Sandbox) -> None:
    host = os.sched_getaffinity(0)
    run = sandbox.run(PROGRAM, cpu=1, time_limit_s=60)
    assert run.result.exit_code == 0, run.log
    got = run.json_lines()[0]
    wanted = procview.job_cpus(1, len(host))
    assert len(got["affinity"]) == wanted, got
    assert set(got["affinity"]) <= host
    assert _parse_list(got["status_list"]) == set(got["affinity"]), got
    # sched_setaffinity to more CPUs succeeds (the kernel narrows it) but stays in the set.
    assert got["after_widening"] == got["affinity"], got
    assert int(got["nproc"]) == got["cpu_count"] == wanted, got
    assert got["numpy"] == 200.0**3


def test_a_fractional_limit_is_rounded_up(sandbox: Sandbox) -> None:
    host = os.sched_getaffinity(0)
    run = sandbox.run(PROGRAM, cpu=1.5, time_limit_s=60)
    assert run.result.exit_code == 0, run.log
    got = run.json_lines()[0]
    assert len(got["affinity"]) == min(math.ceil(1.5), len(host)) == got["cpu_count"], got
