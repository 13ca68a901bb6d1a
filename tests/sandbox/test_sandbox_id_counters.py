"""Which kernel counters a job reads move with another project's concurrent job (round 13).

Identifiers the kernel hands out from a counter are a covert channel between two concurrent
jobs when the counter is shared: one job allocates many, the other sees the next number it
gets jump. Measured with two real jobs: a reader that every 50 ms takes one of each (a
child's pid, a new file's inode number in /tmp, /dev/shm and /output, a pipe's and a UNIX
socket's inode number) and a noise job that creates 5,000 files, pipes, sockets and 300
processes meanwhile. Per-job namespaces and file systems keep the first four to the job
(its own pid namespace, tmpfs and ext4 counters). Pipes and sockets get their inode numbers
from one counter of the whole kernel (``get_next_ino``, handed to each CPU in batches of
1,024), which no namespace separates: that channel remains (SECURITY.md, residual risks;
gVisor's kernel has its own).
"""

from __future__ import annotations

import textwrap
import threading
import time
from pathlib import Path

from tests.sandbox.conftest import Run, Sandbox

READER = textwrap.dedent(
    """
    import json, os, socket, sys, time
    def sample():
        out = {}
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        out["pid"] = pid
        for key, folder in (("tmp", "/tmp"), ("shm", "/dev/shm"), ("output", "/output")):
            path = os.path.join(folder, "probe")
            with open(path, "w"):
                pass
            out[key] = os.stat(path).st_ino
            os.unlink(path)
        r, w = os.pipe()
        out["pipe"] = os.fstat(r).st_ino
        os.close(r); os.close(w)
        s = socket.socket(socket.AF_UNIX)
        out["socket"] = os.fstat(s.fileno()).st_ino
        s.close()
        return out
    samples = [sample()]
    print(json.dumps({"ready": True}), flush=True)
    end = time.monotonic() + float(sys.argv[1])
    while time.monotonic() < end:
        samples.append(sample())
        time.sleep(0.05)
    drift = {k: samples[-1][k] - samples[0][k] for k in samples[0]}
    print(json.dumps({"drift": drift, "samples": len(samples)}), flush=True)
    """
)

NOISE = textwrap.dedent(
    """
    import os, socket
    for i in range(5000):
        r, w = os.pipe(); os.close(r); os.close(w)
        socket.socket(socket.AF_UNIX).close()
        path = f"/tmp/n{i}"
        open(path, "w").close(); os.unlink(path)
        path = f"/dev/shm/n{i}"
        open(path, "w").close(); os.unlink(path)
        path = f"/output/n{i}"
        open(path, "w").close(); os.unlink(path)
    for _ in range(300):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
    print("noise done", flush=True)
    """
)


def _own(samples: int) -> int:
    """The most a counter of the reader's own moves: one allocation per sample, a few of
    Python's own; the noise makes 5,000 of each."""
    return 3 * samples + 100


def _drift(sandbox: Sandbox, tmp_path: Path) -> tuple[dict[str, int], int]:
    holder: dict[str, Run] = {}

    def job() -> None:
        holder["run"] = sandbox.run("", command=["python3", "-c", READER, "25"], time_limit_s=90)

    thread = threading.Thread(target=job)
    thread.start()
    try:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            logs = list(tmp_path.glob("*/log.txt"))
            if logs and '"ready"' in logs[0].read_text(errors="replace"):
                break
            time.sleep(0.05)
        noise = sandbox.run(NOISE, time_limit_s=90)
    finally:
        thread.join()
    assert noise.result.exit_code == 0 and "noise done" in noise.log, noise.log
    run = holder["run"]
    assert run.result.exit_code == 0, run.log
    lines = {k: v for line in run.json_lines() for k, v in line.items()}
    assert lines["samples"] > 20
    drift: dict[str, int] = lines["drift"]
    return drift, lines["samples"]


def test_pids_and_file_inode_numbers_are_the_jobs_own(sandbox: Sandbox, tmp_path: Path) -> None:
    drift, samples = _drift(sandbox, tmp_path)
    for key in ("pid", "tmp", "shm", "output"):
        assert drift[key] < _own(samples), (key, drift, samples)
    # The residual, measured (12,767 on the CI VM): well past what the reader made itself. The
    # reader samples for 25 s: at 10 s a loaded CI (three test groups) started the noise job
    # too late to overlap (410).
    assert min(drift["pipe"], drift["socket"]) > 2000, (drift, samples)
