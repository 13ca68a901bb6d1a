"""How fast two concurrent local-sandbox jobs can signal through pipe inode numbers.

The residual of round 13 (SECURITY.md): pipes and sockets take their inode numbers from one
counter of the whole kernel (``get_next_ino``), handed to each CPU in batches of 1,024, so
no namespace separates them. Round 14 measures its rate with two real sandbox jobs (host-
toolchain mode, one CPU each, their CPUs drawn at random as in production): a sender that,
in each time slot, makes and closes ``--burst`` pipes for a 1 and nothing for a 0, and a
receiver that, in each slot, makes pipes until it crosses into a new batch of its CPU and
reads how far the kernel's counter moved since its last batch (or, when both jobs share a
CPU, how far its own CPU's counter jumped). Both find the slots from the wall clock, which
every job reads. Prints the bits sent, the bits read, the error rate and bits per second;
asserts nothing (the machine may be shared, and other processes' pipes are noise).

    python benchmarks/bench_pipe_inode_channel.py --bits 64 --slot-ms 100
"""

from __future__ import annotations

import argparse
import json
import secrets
import tempfile
import textwrap
import threading
import time
import uuid
from pathlib import Path

from tre.executors.base import JobSpec, RunControl
from tre.executors.local import LocalExecutor

SENDER = textwrap.dedent(
    """
    import os, sys, time
    start, slot, bits, burst = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    for i, bit in enumerate(bits):
        begin = start + i * slot
        while time.time() < begin + slot * 0.1:
            time.sleep(0.001)
        if bit == "1":
            for _ in range(burst):
                r, w = os.pipe(); os.close(r); os.close(w)
    """
)

RECEIVER = textwrap.dedent(
    """
    import json, os, sys, time
    start, slot, n = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
    def ino():
        r, w = os.pipe(); i = os.fstat(r).st_ino; os.close(r); os.close(w); return i
    def next_batch():
        # Pipes until the numbers stop counting up by one: this CPU's batch of 1,024 ran
        # out (the new batch says where the kernel's shared counter stood), or another job
        # on this CPU took numbers from it meanwhile.
        last = ino()
        for _ in range(1100):
            i = ino()
            if i != last + 1:
                return i
            last = i
        return last
    while time.time() < start - slot:
        time.sleep(0.001)
    base = next_batch()
    seen = []
    for k in range(n):
        end = start + (k + 1) * slot
        while time.time() < end - slot * 0.05:
            time.sleep(0.001)
        now = next_batch()
        seen.append(now - base)
        base = now
    print(json.dumps({"moved": seen}), flush=True)
    """
)


def _spec(tmp: Path, code: str, args: list[str]) -> JobSpec:
    job_id = uuid.uuid4().hex[:12]
    return JobSpec(
        job_id=job_id,
        project_id=f"p-{job_id[:4]}",
        image="tre/python:3.11",
        command=["python", "-c", code, *args],
        datasets=[],
        output_dir=tmp / job_id / "output",
        log_path=tmp / job_id / "log.txt",
        cpu=1.0,
        memory_mb=512,
        time_limit_s=300,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--slot-ms", type=float, default=100.0)
    parser.add_argument("--burst", type=int, default=4096, help="pipes the sender makes for a 1")
    args = parser.parse_args()
    bits = "".join(secrets.choice("01") for _ in range(args.bits))
    slot = args.slot_ms / 1000
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        executor = LocalExecutor(images_dir=tmp / "images", host_toolchain=True)
        start = time.time() + 8.0  # both sandboxes are up by then
        receiver = _spec(tmp, RECEIVER, [str(start), str(slot), str(len(bits))])
        sender = _spec(tmp, SENDER, [str(start), str(slot), bits, str(args.burst)])
        results = {}

        def run(name: str, spec: JobSpec) -> None:
            results[name] = executor.run(spec, RunControl())

        threads = [threading.Thread(target=run, args=(n, s)) for n, s in (("r", receiver), ("s", sender))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        lines = [ln for ln in receiver.log_path.read_text().splitlines() if ln.startswith("{")]
        if not lines:
            print("receiver printed nothing:", results, receiver.log_path.read_text()[-2000:])
            return
        moved = json.loads(lines[-1])["moved"]
    # A 1 moves the counter by at least the burst; a 0 by the receiver's own batch and noise.
    threshold = 1024 + args.burst // 2
    got = "".join("1" if m >= threshold else "0" for m in moved)
    errors = sum(a != b for a, b in zip(bits, got, strict=True))
    print(f"sent     {bits}")
    print(f"received {got}")
    print(f"moved per slot: {moved}")
    print(
        f"{len(bits)} bits in {len(bits) * slot:.1f} s: {1 / slot:.1f} bits/s, "
        f"{errors} errors ({errors / len(bits):.1%})"
    )


if __name__ == "__main__":
    main()
