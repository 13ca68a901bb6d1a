"""Cost of screening a job log for a researcher (issue 17, item 5).

Every read of the log by a researcher re-judges the log from its start (so the reader's
offset cannot change a verdict), up to the per-job limit (256 KiB by default). This prints
the time to screen a full 256 KiB window of an ordinary training log and of an adversarial
log (base64 wrapped at 76 columns, hex dumps, disguised names), with a dataset of N
identifiers, and the ratio to a 1 s follow poll.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_log_screen.py
    PYTHONPATH=. .venv/bin/python benchmarks/bench_log_screen.py --identifiers 20000
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import time
from pathlib import Path

from egress_review.logscreen import LogScreen
from tre.policy import load_policy

LIMIT = 256 * 1024


def ordinary() -> bytes:
    lines = [
        f"epoch {i} step {i * 100} loss {1 / (i + 1):.4f} acc 0.91 lr 1e-4 time 12.3s" for i in range(100_000)
    ]
    return ("\n".join(lines) + "\n").encode()[:LIMIT]


def adversarial() -> bytes:
    blob = os.urandom(150_000)
    parts = [base64.encodebytes(blob[:60_000]).decode()]
    for i in range(0, 40_000, 16):
        parts.append(f"{i:08x}: " + " ".join(blob[i + j : i + j + 2].hex() for j in range(0, 16, 2)) + "\n")
    parts.append("C o m p r e s s e d S a m p l e s\n1TC^selpmaSdesserpmoC\n")
    return "".join(parts).encode()[:LIMIT]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--identifiers", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    policy = load_policy("default", Path(__file__).resolve().parents[1] / "policies")
    idents = (
        {"CompressedSamples^CT1", "CompressedSamples", "CT1"}
        | {f"1.2.840.113619.2.55.3.{i}.{i * 7}" for i in range(args.identifiers)}
        | {f"PAT{i:07d}" for i in range(args.identifiers)}
        | {f"19{i % 100:02d}{i % 12 + 1:02d}{i % 28 + 1:02d}" for i in range(args.identifiers)}
    )
    t0 = time.process_time()
    screen = LogScreen.for_policies([policy], idents)
    screen.screen_log(b"warm up\n", final=False)  # builds the lazy indexes (live waits)
    print(f"screen built for {len(idents)} identifiers: CPU {(time.process_time() - t0) * 1000:.0f} ms")
    for name, log in (("ordinary", ordinary()), ("adversarial", adversarial())):
        for final in (True, False):
            times = []
            for _ in range(args.repeat):
                t0 = time.process_time()
                screening = screen.screen_log(log, final=final)
                times.append(time.process_time() - t0)
            withheld = sum(line.withheld for line in screening.lines)
            median = statistics.median(times)
            print(
                f"{name:12s} {'ended' if final else 'running':8s} {len(log) / 1024:.0f} KiB, "
                f"{len(screening.lines)} lines, {withheld} withheld: CPU median {median * 1000:.1f} ms "
                f"({len(log) / median / 1e6:.1f} MB/s; ratio to a 1 s follow poll {median:.3f})"
            )


if __name__ == "__main__":
    main()
