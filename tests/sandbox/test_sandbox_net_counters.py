"""What a job's /proc/net shows of other jobs and of the host (redteam round 14).

`/proc/net` links to the job's own network namespace's files, so round 12's reader (which
walked /proc without following the `net` link) never read them. A job can make only UNIX
sockets (seccomp refuses the other families), and the files of its namespace (`unix`,
`netstat`, `snmp`, `dev`, `sockstat`'s `sockets: used` and `inuse` ...) do not move with
another job's sockets. Two files print kernel-wide figures whatever the namespace:
`sockstat` (TCP sockets allocated, orphans, TCP and UDP memory) and `softnet_stat` (packets
each CPU processed): measured here, both moved while the host made 200 TCP sockets and sent
100 UDP datagrams. No job can move them (no INET socket), so they tell a job how busy the
host's network is, not what another job does; `/proc/<pid>/net` is a folder per process,
which a bind at the job's start cannot cover for processes started later, so they remain
(SECURITY.md, residual risks; gVisor's /proc/net is its own).
"""

from __future__ import annotations

import textwrap
import threading
import time
from pathlib import Path

from tests.sandbox.conftest import Run, Sandbox

# Files of /proc/net whose figures are the kernel's, not the namespace's (see above).
# protocols: its `memory` column is each protocol's pages allocated, kernel-wide (seen moving
# with the host's UDP traffic in round 15; its `sockets` column is the namespace's).
HOST_WIDE = {"/proc/net/sockstat", "/proc/net/softnet_stat", "/proc/net/protocols"}

# Reads every file under /proc/net (its own namespace's) and then again every 0.1 s until
# told time is up; reports the files whose bytes changed.
READER = textwrap.dedent(
    """
    import json, os, sys, time
    files = sorted(os.path.join("/proc/net", f) for f in os.listdir("/proc/net")
                   if os.path.isfile(os.path.join("/proc/net", f)))
    def read(p):
        try:
            with open(p, "rb") as fh:
                return fh.read(1 << 20)
        except OSError:
            return None
    first = {p: read(p) for p in files}
    print(json.dumps({"ready": len([p for p in files if first[p] is not None]),
                      "sockstat": (first.get("/proc/net/sockstat") or b"").decode()}), flush=True)
    moved = set()
    end = time.monotonic() + float(sys.argv[1])
    while time.monotonic() < end:
        moved |= {p for p in files if p not in moved and read(p) != first[p]}
        time.sleep(0.1)
    print(json.dumps({"moved": sorted(moved)}), flush=True)
    """
)

# What the other project's job does: UNIX sockets held open and written to (a job may make
# no other kind: seccomp refuses the INET families).
NOISE = textwrap.dedent(
    """
    import socket, time
    keep = [socket.socketpair() for _ in range(150)]
    for a, b in keep[:50]:
        a.send(b"x" * 8000)
    time.sleep(2.0)
    print("noise done", len(keep) * 2, flush=True)
    """
)


def _host_noise() -> None:
    """What the host does meanwhile: TCP sockets (the API, a registry pull), UDP traffic."""
    import socket

    keep = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(200)]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", 0))
    for _ in range(100):
        u.sendto(b"x" * 8000, u.getsockname())
    time.sleep(1.0)
    for s in [*keep, u]:
        s.close()


def test_the_jobs_proc_net_moves_only_with_the_hosts_network(sandbox: Sandbox, tmp_path: Path) -> None:
    holder: dict[str, Run] = {}

    def reader() -> None:
        holder["run"] = sandbox.run("", command=["python3", "-c", READER, "12"], time_limit_s=90)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:
            logs = list(tmp_path.glob("*/log.txt"))
            if logs and '"ready"' in logs[0].read_text(errors="replace"):
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the reading job did not start")
        noise = sandbox.run(NOISE, time_limit_s=60)
        _host_noise()
        reader_log = logs[0].read_text(errors="replace")
    finally:
        thread.join()
    assert noise.result.exit_code == 0 and "noise done 300" in noise.log, noise.log
    assert '"moved"' not in reader_log, "the noise ended after the reader stopped looking"
    run = holder["run"]
    assert run.result.exit_code == 0, run.log
    lines = {k: v for line in run.json_lines() for k, v in line.items()}
    assert lines["ready"] > 10  # the namespace's own files were read, not refused
    # Only the kernel-wide figures move, with the host's TCP and UDP, never a job's sockets.
    assert set(lines["moved"]) <= HOST_WIDE, lines["moved"]
    assert "TCP: inuse 0" in lines["sockstat"]  # the namespace's own count: none
