"""Two source trees' cohort jobs, interleaved A B A B, on a shared machine (issue 13, tenth round).

Why: a change to the job's CPU outside the decoders moves its time by a few percent, less
than the run-to-run spread of a machine shared with other sessions. Interleaving the two
trees' runs, each from a cold input (page cache dropped) and ending with its outputs on the
disk (the remaining fsync counted in the wall time, as in ``bench_cohort.py``), and reporting
CPU seconds beside wall seconds and the load, is what makes such a difference visible.

    PYTHONPATH=. python benchmarks/bench_cohort_ab.py --input COHORT --out /tmp/ab \
        --tree A=/path/to/base --tree B=. [--runs 3] [--format nii.gz]

Prints one line per run and the medians with B/A ratios; a profile, not a timed test.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

# The recipe, the cold-input eviction and the final fsync are bench_cohort.py's (a sibling).
from bench_cohort import TRE_RECIPE_ARGS, evict, flush_tree

# Main-thread waits from the job's timeline (tre.kernels.timeline): time the kernels' thread
# stood still for a write to finish, for a series to load, before the first kernel.
WAITS = ("wait-write", "wait-load", "wait-discover")


def main_thread_waits(timeline: Path) -> dict[str, float]:
    """Seconds the job's main thread spent in each of `WAITS`, and when its first kernel began."""
    got = dict.fromkeys(WAITS, 0.0)
    first_kernel = float("inf")
    for line in timeline.read_text().splitlines():
        span = json.loads(line)
        if span["thread"] == "MainThread" and span["stage"] in got:
            got[span["stage"]] += span["end"] - span["start"]
        if span["stage"] == "kernels":
            first_kernel = min(first_kernel, span["start"])
    got["first-kernel"] = first_kernel
    return got


def one_run(tree: Path, cohort: Path, out: Path, fmt: str, workers: int) -> dict[str, float]:
    """One job of ``tree`` over ``cohort``: wall (fsync of what is left included), CPU, fsync,
    and the main thread's waits."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    evict(cohort)
    timeline = out.with_suffix(".timeline.jsonl")
    cmd = [sys.executable, "-m", "tre.kernels.job", "--input", str(cohort), "--output", str(out)]
    cmd += [*TRE_RECIPE_ARGS, "--format", fmt, "--workers", str(workers), "--timeline", str(timeline)]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True, cwd=tree)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    job_s = time.perf_counter() - t0
    flush_s = flush_tree(out)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    faults = float(after.ru_minflt - before.ru_minflt)
    got = {"wall": job_s + flush_s, "job": job_s, "fsync": flush_s, "cpu": cpu, "faults": faults}
    got["sys"] = after.ru_stime - before.ru_stime
    got["load"] = os.getloadavg()[0]
    return got | main_thread_waits(timeline)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--tree", action="append", required=True, metavar="NAME=PATH")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--format", default="nii.gz", choices=["nii.gz", "nii", "zarr"])
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    trees = {name: Path(path).resolve() for name, path in (t.split("=", 1) for t in args.tree)}
    got: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    first_series = sorted(p for p in args.input.iterdir() if p.is_dir())[0]
    for name, tree in trees.items():  # untimed: each tree's Numba cache compiled or loaded once
        one_run(tree, first_series, args.out / f"warm-{name}", args.format, args.workers)
    for run in range(args.runs):
        for name, tree in trees.items():
            r = one_run(tree, args.input, args.out / name, args.format, args.workers)
            got[name].append(r)
            print(
                f"{name} #{run + 1}: wall {r['wall']:.2f} s (job {r['job']:.2f} + fsync {r['fsync']:.2f}), "
                f"CPU {r['cpu']:.2f} s ({r['sys']:.2f} sys), {r['faults'] / 1e3:.0f}k page faults, "
                f"load {r['load']:.1f}; "
                "main thread waits: " + ", ".join(f"{k} {r[k]:.2f}" for k in (*WAITS, "first-kernel")),
                flush=True,
            )
    first = next(iter(trees))
    base = {k: statistics.median(r[k] for r in got[first]) for k in ("wall", "cpu", "fsync")}
    for name, runs in got.items():
        med = {k: statistics.median(r[k] for r in runs) for k in ("wall", "cpu", "fsync", "faults")}
        print(
            f"{name}: median wall {med['wall']:.2f} s ({med['wall'] / base['wall']:.3f}x {first}), "
            f"CPU {med['cpu']:.2f} s ({med['cpu'] / base['cpu']:.3f}x), final fsync {med['fsync']:.2f} s, "
            f"{med['faults'] / 1e3:.0f}k page faults"
        )


if __name__ == "__main__":
    main()
