"""How many cores a cohort job could keep busy, moment by moment, on a shared machine (issue 13, ninth round).

Why: the cohort job should keep every core busy from start to end; where it cannot (a
single-threaded start-up, a pool waiting, the last series' write alone) the wall time grows
on a quiet machine. On this shared development machine the other sessions' load hides that:
a thread that wants a core but waits for one looks idle in a CPU-time profile. The kernel's
per-thread ``schedstat`` counts both: time on a core and time waiting in a run queue. Their
sum over the job's threads (its forked children included), per interval, is how many cores
the job *wanted* then; ``max(0, cores - wanted)`` summed over the run is the core-seconds a
quiet machine would leave idle, whatever the load. The job's own timeline
(`tre.kernels.timeline`) splits that idle time into start-up (before the first kernel), the
middle, and the tail (after the last kernel).

    PYTHONPATH=. python benchmarks/cohort_core_demand.py --input COHORT --output OUT [--runs 2]

A profile, not a timed test. Sampling every 50 ms costs well under 1 % of a core.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

# The cohort and recipe are bench_cohort.py's (a sibling: this folder is sys.path[0]).
from bench_cohort import TRE_RECIPE_ARGS, evict

PERIOD_S = 0.05
# Idle is summed per bin of this many seconds, then clipped at 0: each 50 ms sample is noisy
# (a wait is counted when the thread next runs), and clipping every sample counted that noise
# as idle (0.14 of 2 cores for two processes spinning on a loaded machine; 0.00 signed).
BIN_S = 0.5


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except (OSError, ValueError):
                pass
    return out


def _sample(pid: int) -> dict[tuple[int, int], tuple[int, int]]:
    """(run ns, run-queue wait ns) of every thread of ``pid`` and its descendants."""
    got: dict[tuple[int, int], tuple[int, int]] = {}
    for p in _descendants(pid):
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                run, wait, _ = (task / "schedstat").read_text().split()
            except (OSError, ValueError):
                continue
            got[(p, int(task.name))] = (int(run), int(wait))
    return got


def profile(
    cohort: Path, out: Path, timeline: Path, fmt: str, workers: int, cold: bool = True
) -> dict[str, float]:
    """One job; its CPU, its wall time and the core-seconds a quiet machine would leave idle.
    ``cold``: the input is dropped from the page cache first (as bench_cohort.py does)."""
    subprocess.run(["rm", "-rf", str(out)], check=True)
    out.mkdir(parents=True)
    if cold:
        evict(cohort)
    job = [sys.executable, "-m", "tre.kernels.job", "--input", str(cohort), "--output", str(out)]
    job += [*TRE_RECIPE_ARGS, "--format", fmt, "--workers", str(workers), "--timeline", str(timeline)]
    t0 = time.monotonic()
    proc = subprocess.Popen(job, stdout=subprocess.DEVNULL)
    last: dict[tuple[int, int], tuple[int, int]] = {}
    series: list[tuple[float, float, float]] = []  # (t, ran cores, wanted cores)
    prev_t = t0
    while proc.poll() is None:
        time.sleep(PERIOD_S)
        now = time.monotonic()
        cur = _sample(proc.pid)
        ran = wanted = 0.0
        for key, (run, wait) in cur.items():
            r0, w0 = last.get(key, (0, 0))
            ran += run - r0
            wanted += run - r0 + wait - w0
        # Threads that ended between samples are lost: at 50 ms, a sliver of the job.
        last.update(cur)
        dt = (now - prev_t) * 1e9
        series.append((now - t0, ran / dt, wanted / dt))
        prev_t = now
    wall = time.monotonic() - t0
    cores = float(workers or os.cpu_count() or 1)
    marks = _marks(timeline)
    idle = {"start-up": 0.0, "middle": 0.0, "tail": 0.0}
    for start, short in _idle_bins(series, cores):
        mid = start + BIN_S / 2
        phase = "middle"
        if mid < marks["first_kernel"]:
            phase = "start-up"
        elif mid > marks["last_kernel_end"]:
            phase = "tail"
        idle[phase] += short
    cpu = sum(r for r, _ in last.values()) / 1e9
    samples = timeline.with_suffix(".samples.json")
    samples.write_text(json.dumps([[round(v, 3) for v in row] for row in series]))
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "first_kernel_s": marks["first_kernel"],
        "tail_s": wall - marks["last_kernel_end"],
        **{f"idle_{k}_core_s": v for k, v in idle.items()},
        "quiet_wall_estimate_s": (cpu + sum(idle.values())) / cores,
    }


def _idle_bins(series: list[tuple[float, float, float]], cores: float) -> list[tuple[float, float]]:
    """(bin start, idle core-seconds in it) per BIN_S bin of the samples."""
    bins: dict[int, float] = {}
    prev = 0.0
    for t, _ran, wanted in series:
        key = int(t // BIN_S)
        bins[key] = bins.get(key, 0.0) + (cores - wanted) * (t - prev)
        prev = t
    return [(key * BIN_S, max(0.0, short)) for key, short in sorted(bins.items())]


def _marks(timeline: Path) -> dict[str, float]:
    rows = [json.loads(line) for line in timeline.read_text().splitlines() if line.strip()]
    kernels = [r for r in rows if r["stage"] == "kernels"]
    return {
        "first_kernel": min((r["start"] for r in kernels), default=0.0),
        "last_kernel_end": max((r["end"] for r in kernels), default=0.0),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", type=Path, required=True)
    ap.add_argument("--output", type=Path, required=True)
    ap.add_argument("--format", default="nii.gz", choices=["nii.gz", "nii", "zarr"])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--warm-input", action="store_true", help="leave the input in the page cache")
    args = ap.parse_args()
    for i in range(args.runs):
        load = os.getloadavg()[0]
        tl = args.output.parent / f"demand-{i + 1}.jsonl"
        got = profile(args.input, args.output, tl, args.format, args.workers, not args.warm_input)
        got["load_before"] = load
        got["load_after"] = os.getloadavg()[0]
        print(json.dumps({k: round(v, 2) for k, v in got.items()}), flush=True)


if __name__ == "__main__":
    main()
